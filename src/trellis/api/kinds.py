"""The kinds Trellis serves, and turning user YAML into typed resources.

`parse_documents` is what `trellis apply -f` calls: every document is checked and all problems
are reported together (schema only; semantics are in trellis.api.validation).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from trellis.api.base import Resource
from trellis.api.core import Service
from trellis.api.field_errors import from_pydantic
from trellis.api.networking import (
    DestinationRule,
    Gateway,
    ServiceEntry,
    Sidecar,
    VirtualService,
    WorkloadEntry,
    WorkloadGroup,
)
from trellis.api.security import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
from trellis.api.telemetry import Telemetry
from trellis.errors import TrellisError, ValidationError, ValidationErrors

ALL_KINDS: tuple[type[Resource], ...] = (
    VirtualService,
    DestinationRule,
    Gateway,
    ServiceEntry,
    WorkloadEntry,
    Sidecar,
    WorkloadGroup,
    Service,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    Telemetry,
)
KINDS: dict[str, type[Resource]] = {cls.KIND: cls for cls in ALL_KINDS}

_WORDS: dict[str, type[Resource]] = {
    "vs": VirtualService,
    "dr": DestinationRule,
    "gw": Gateway,
    "se": ServiceEntry,
    "we": WorkloadEntry,
    "wg": WorkloadGroup,
    "svc": Service,
    "serviceentries": ServiceEntry,
    "workloadentries": WorkloadEntry,
    "pa": PeerAuthentication,
    "ra": RequestAuthentication,
    "ap": AuthorizationPolicy,
    "authorizationpolicies": AuthorizationPolicy,
    "telemetries": Telemetry,
}
for _cls in ALL_KINDS:
    _WORDS[_cls.KIND.lower()] = _cls
    _WORDS.setdefault(_cls.KIND.lower() + "s", _cls)

# Kubernetes object names: a DNS-1123 subdomain; namespaces: a DNS-1123 label.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def api_versions(cls: type[Resource]) -> tuple[str, ...]:
    """The apiVersion strings a kind accepts, e.g. networking.istio.io/v1."""
    return tuple(f"{cls.GROUP}/{v}" if cls.GROUP else v for v in cls.VERSIONS)


def supported_kinds() -> str:
    return ", ".join(KINDS)


def resolve_kind(word: str) -> type[Resource]:
    """The kind a CLI word names (vs, virtualservices, DestinationRule, svc, ...)."""
    cls = _WORDS.get(word.strip().lower())
    if cls is None:
        raise TrellisError(f"unknown resource type {word!r}; supported kinds: {supported_kinds()}")
    return cls


@dataclass(frozen=True, slots=True)
class _Where:
    """Which document and resource a problem belongs to."""

    kind: str
    namespace: str
    name: str
    document: int

    def error(self, reason: str, field: str) -> ValidationError:
        return ValidationError(
            reason,
            kind=_printable(self.kind),
            namespace=_printable(self.namespace),
            name=_printable(self.name),
            field=field,
            document=self.document,
        )


def _printable(text: str) -> str:
    """`text` escaped if it holds a newline or other control character: errors are one line."""
    return text if text.isprintable() else repr(text)[1:-1]


def parse_resource(doc: dict[str, Any], *, document: int = 0) -> Resource:
    """One typed resource from one parsed YAML/JSON object; raises ValidationError(s)."""
    if not isinstance(doc, dict):
        got = type(doc).__name__
        raise ValidationError(
            f"expected a mapping with apiVersion, kind, metadata and spec, got {got}",
            document=document,
        )
    name, namespace = _identity(doc)
    cls = _kind_of(doc, _Where("", namespace, name, document))
    where = _Where(cls.KIND, namespace, name, document)
    _check_api_version(cls, doc, where)
    _check_name(where)
    _check_namespace(where)
    body = {k: v for k, v in doc.items() if k != "status"}  # status is not user config
    try:
        return cls.model_validate(body)
    except pydantic.ValidationError as exc:
        errors = from_pydantic(
            exc, kind=cls.KIND, namespace=namespace, name=name, document=document
        )
        raise ValidationErrors(errors) from None


def _kind_of(doc: dict[str, Any], where: _Where) -> type[Resource]:
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        raise where.error(f"kind is missing; set it to one of {supported_kinds()}", "kind")
    cls = KINDS.get(kind)
    if cls is None:
        unknown = _Where(kind, where.namespace, where.name, where.document)
        raise unknown.error(f"unknown kind {kind!r}; supported kinds: {supported_kinds()}", "kind")
    return cls


def _identity(doc: dict[str, Any]) -> tuple[str, str]:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return "", ""
    name, namespace = meta.get("name"), meta.get("namespace")
    return (
        name if isinstance(name, str) else "",
        namespace if isinstance(namespace, str) else "",
    )


def _check_api_version(cls: type[Resource], doc: dict[str, Any], where: _Where) -> None:
    version = doc.get("apiVersion")
    accepted = api_versions(cls)
    if version not in accepted:
        reason = (
            f"apiVersion {version!r} is not served for {cls.KIND}; use one of {', '.join(accepted)}"
        )
        raise where.error(reason, "apiVersion")


def _check_name(where: _Where) -> None:
    if not where.name:
        raise where.error("metadata.name is required; give the resource a name", "metadata.name")
    if len(where.name) > 253 or not _NAME.fullmatch(where.name):
        reason = f"name {where.name!r} is not valid; use lowercase letters, digits, '-' and '.'"
        raise where.error(reason, "metadata.name")


def _check_namespace(where: _Where) -> None:
    """Namespaces are DNS-1123 labels, as in Kubernetes; they end up in Envoy names and paths."""
    namespace = where.namespace
    if namespace and (len(namespace) > 63 or not _NAMESPACE.fullmatch(namespace)):
        reason = f"namespace {namespace!r} is not valid; use lowercase letters, digits and '-'"
        raise where.error(reason, "metadata.namespace")


def parse_documents(text: str, *, default_namespace: str = "default") -> list[Resource]:
    """Every resource in a multi-document YAML text; raises ValidationErrors listing all problems.

    Empty documents are skipped, `kind: List` is unwrapped, and a resource without
    metadata.namespace gets `default_namespace`.
    """
    resources: list[Resource] = []
    problems: list[ValidationError] = []
    for index, doc in _load_all(text, problems):
        for item in _unwrap_list(doc):
            try:
                resources.append(
                    parse_resource(_with_namespace(item, default_namespace), document=index)
                )
            except ValidationErrors as exc:
                problems.extend(exc.errors)
            except ValidationError as exc:
                problems.append(exc)
    if problems:
        raise ValidationErrors(problems)
    return resources


def _load_all(text: str, problems: list[ValidationError]) -> Iterator[tuple[int, Any]]:
    """(1-based document index, object) for each non-empty document; YAML errors go to problems."""
    index = 1
    try:
        # The reader rejects non-printable characters (NUL, lone surrogates) right here.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        problems.append(_yaml_problem(exc, index))
        return
    index = 0
    try:
        while True:
            index += 1  # counted before scanning, so a syntax error names its own document
            if not loader.check_node():
                break
            node = loader.get_node()
            data = _construct(loader, node) if node is not None else None
            if data is not None:
                yield index, data
    except yaml.YAMLError as exc:
        problems.append(_yaml_problem(exc, index))
    except RecursionError:
        # PyYAML composes and constructs recursively; no Istio resource nests this deep.
        reason = "YAML nests too deeply (hundreds of levels); no Istio resource needs that"
        problems.append(ValidationError(reason, document=index))
    finally:
        loader.dispose()


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The document's object; a value its explicit tag cannot read becomes a YAML error."""
    try:
        return loader.construct_document(node)
    except (yaml.YAMLError, RecursionError):
        raise
    except Exception as exc:  # PyYAML's tag constructors: `!!int ''` IndexError, and so on
        detail = " ".join(str(exc).split())
        reason = f"a value cannot be read as its tag says ({type(exc).__name__}: {detail})"
        mark = node.start_mark
        raise yaml.constructor.ConstructorError(problem=reason, problem_mark=mark) from exc


def _yaml_problem(exc: yaml.YAMLError, index: int) -> ValidationError:
    if isinstance(exc, yaml.reader.ReaderError):  # no mark; str(exc) spans two lines
        return ValidationError(
            f"malformed YAML: character #x{exc.character:04x} at position {exc.position} is not"
            " allowed (YAML text must be printable); remove it",
            document=index,
        )
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return ValidationError(f"malformed YAML{where}: {problem}; fix the YAML syntax", document=index)


def _unwrap_list(doc: Any) -> list[Any]:
    if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        return [item for item in doc["items"] if item is not None]
    return [doc]


def _with_namespace(doc: Any, default_namespace: str) -> Any:
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        return doc
    meta = doc["metadata"]
    if meta.get("namespace"):
        return doc
    return {**doc, "metadata": {**meta, "namespace": default_namespace}}
