"""Istio config in the console: list and view with validations, and `POST /api/istio/validate`.

Validation is exactly `trellis apply`'s (parse + schema + semantics, subsets that must exist)
followed by `trellis analyze`'s analyzers, all as Istio's analyzer codes: parse and schema
problems are IST0106, a missing subset IST0101, and so on. Nothing here stores anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from trellis.analyze import Message, parse_problem_messages
from trellis.analyze import analyze as run_analyzers
from trellis.api.base import Resource
from trellis.api.kinds import parse_documents
from trellis.errors import ValidationError, ValidationErrors

ResourceKey = tuple[str, str, str]


def check_json(message: Message) -> dict[str, Any]:
    origin = message.origin
    return {
        "code": message.code,
        "severity": message.level.value.lower(),
        "message": message.text,
        "path": message.field,
        "resource": f"{origin.kind} {origin.namespace}/{origin.name}".replace(" /", " "),
    }


def validation_json(messages: Iterable[Message]) -> dict[str, Any]:
    checks = [check_json(m) for m in messages]
    return {"valid": not any(c["severity"] == "error" for c in checks), "checks": checks}


def parse_for_validation(text: str, namespace: str) -> tuple[list[Resource], list[Message]]:
    """The resources in `text`, or (when any document fails to parse) the IST0106 messages."""
    try:
        return parse_documents(text, default_namespace=namespace), []
    except ValidationErrors as e:
        return [], parse_problem_messages(e.errors)
    except ValidationError as e:
        return [], parse_problem_messages([e])


def validate_new(new: Sequence[Resource], stored: Sequence[Resource]) -> list[Message]:
    """Analyzer messages about `new` as if applied over `stored`."""
    merged: dict[ResourceKey, Resource] = {r.key: r for r in stored}
    merged.update((r.key, r) for r in new)
    wanted = {r.key for r in new}
    found = run_analyzers(merged.values(), namespaces={r.namespace for r in new})
    return [m for m in found if (m.origin.kind, m.origin.namespace, m.origin.name) in wanted]


def validate_text(text: str, namespace: str, stored: Sequence[Resource]) -> dict[str, Any]:
    """POST /api/istio/validate's answer."""
    resources, problems = parse_for_validation(text, namespace)
    if problems:
        return validation_json(problems)
    return validation_json(validate_new(resources, stored))


def validations_by_key(resources: Sequence[Resource]) -> dict[ResourceKey, dict[str, Any]]:
    """Each stored resource's validation, from one analyzer run over them all."""
    found = run_analyzers(resources)
    grouped: dict[ResourceKey, list[Message]] = {r.key: [] for r in resources}
    for m in found:
        key = (m.origin.kind, m.origin.namespace, m.origin.name)
        if key in grouped:
            grouped[key].append(m)
    return {k: validation_json(v) for k, v in grouped.items()}


def config_item(resource: Resource, validation: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": resource.kind,
        "apiVersion": resource.api_version,
        "namespace": resource.namespace,
        "name": resource.name,
        "validation": validation,
    }


def resource_view(resource: Resource, validation: dict[str, Any]) -> dict[str, Any]:
    wire = resource.to_wire()
    return {
        "resource": wire,
        "yaml": yaml.safe_dump(wire, sort_keys=False),
        "validation": validation,
    }
