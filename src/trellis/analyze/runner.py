"""Run every analyzer over one set of resources and keep the messages for the namespaces asked.

As `istioctl analyze`, the whole mesh is analysed (a reference may cross namespaces) and only
messages about resources in the selected namespaces are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from trellis.analyze.context import AnalysisContext
from trellis.analyze.gateways import analyze_gateways
from trellis.analyze.messages import SCHEMA_VALIDATION_ERROR, Message, Origin
from trellis.analyze.references import analyze_references
from trellis.analyze.resources import analyze_resources
from trellis.analyze.virtual_services import analyze_virtual_services
from trellis.api.base import Resource
from trellis.errors import ValidationError
from trellis.model.registry import Service as RegistryService

Analyzer = Callable[[AnalysisContext], Iterator[Message]]

ANALYZERS: tuple[Analyzer, ...] = (
    analyze_resources,
    analyze_references,
    analyze_virtual_services,
    analyze_gateways,
)


def analyze(
    resources: Iterable[Resource],
    services: Sequence[RegistryService] = (),
    *,
    namespaces: Iterable[str] | None = None,
    references: Mapping[tuple[str, str, str], str] | None = None,
) -> list[Message]:
    """Every message about resources in `namespaces` (None: all), most severe first.

    `references` maps a resource key (kind, namespace, name) to where it was read from (a file
    name), reported as the message's `reference`.
    """
    ctx = AnalysisContext.build(resources, services, references=references)
    wanted = None if namespaces is None else set(namespaces)
    found: dict[tuple[str, str, str, str, str, str], Message] = {}
    for analyzer in ANALYZERS:
        for message in analyzer(ctx):
            if wanted is None or message.origin.namespace in wanted:
                found.setdefault((message.code, *_identity(message)), message)
    return sorted(found.values(), key=lambda m: m.sort_key)


def parse_problem_messages(
    errors: Iterable[ValidationError], *, reference: str = ""
) -> list[Message]:
    """IST0106 for documents that did not even parse (bad YAML, unknown kind, schema)."""
    return [
        Message(
            SCHEMA_VALIDATION_ERROR,
            Origin(
                error.kind or "document",
                error.namespace,
                error.name or (f"#{error.document}" if error.document else ""),
                reference,
            ),
            "Schema validation error: "
            + (f"{error.field}: {error.reason}" if error.field else error.reason),
            error.field,
        )
        for error in errors
    ]


def _identity(message: Message) -> tuple[str, str, str, str, str]:
    o = message.origin
    return (o.kind, o.namespace, o.name, message.field, message.text)
