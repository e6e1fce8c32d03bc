"""Traces in Jaeger's query-API JSON (the shape Jaeger's UI and Grafana's datasource read).

Every answer is Jaeger's envelope `{"data", "total", "limit", "offset", "errors"}`; a trace is
`{"traceID", "spans", "processes", "warnings"}` with processes deduplicated per trace as
`p1`, `p2`, ...; times and durations are microseconds; a tag is `{"key", "type", "value"}` with
Jaeger's value types (string, bool, int64, float64, binary). Empty lists are `[]` and absent
warnings/errors `null`, exactly as Jaeger's Go encoder writes them.
https://www.jaegertracing.io/docs/latest/apis/#http-json-internal
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

from trellis.tracing.model import (
    DependencyLink,
    Operation,
    Process,
    Span,
    SpanLog,
    Tag,
    Trace,
    format_span_id,
    format_trace_id,
)

JsonObject = dict[str, Any]
# JavaScript numbers hold integers exactly only up to 2**53 - 1; Jaeger writes larger int64
# tag values as decimal strings (still typed int64) so its UI does not round them.
JS_MAX_SAFE_INTEGER = 2**53 - 1


def envelope(data: Any, *, total: int = 0, errors: list[JsonObject] | None = None) -> JsonObject:
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}


def error_envelope(code: int, message: str) -> JsonObject:
    """Jaeger's error answer: no data, one error with the HTTP status and the reason."""
    return envelope(None, errors=[{"code": code, "msg": message}])


def trace_not_found(trace_id: int) -> JsonObject:
    """The per-ID error `/api/traces?traceID=` reports beside the traces it did find."""
    return {"msg": "trace not found", "traceID": format_trace_id(trace_id)}


def encode_trace(trace: Trace) -> JsonObject:
    process_ids: dict[Process, str] = {}
    spans = [encode_span(span, _process_id(process_ids, span.process)) for span in trace.spans]
    return {
        "traceID": format_trace_id(trace.trace_id),
        "spans": spans,
        "processes": {pid: encode_process(process) for process, pid in process_ids.items()},
        "warnings": None,
    }


def encode_span(span: Span, process_id: str) -> JsonObject:
    return {
        "traceID": format_trace_id(span.trace_id),
        "spanID": format_span_id(span.span_id),
        "operationName": span.operation_name,
        "references": [
            {
                "refType": ref.ref_type.value,
                "traceID": format_trace_id(ref.trace_id),
                "spanID": format_span_id(ref.span_id),
            }
            for ref in span.references
        ],
        "startTime": span.start_us,
        "duration": span.duration_us,
        "tags": encode_tags(span.tags),
        "logs": [encode_log(log) for log in span.logs],
        "processID": process_id,
        "warnings": list(span.warnings) or None,
    }


def encode_process(process: Process) -> JsonObject:
    return {"serviceName": process.service_name, "tags": encode_tags(process.tags)}


def encode_log(log: SpanLog) -> JsonObject:
    return {"timestamp": log.timestamp_us, "fields": encode_tags(log.fields)}


def encode_tags(tags: Iterable[Tag]) -> list[JsonObject]:
    return [encode_tag(tag) for tag in tags]


def encode_tag(tag: Tag) -> JsonObject:
    value = tag.value
    if isinstance(value, bool):
        return {"key": tag.key, "type": "bool", "value": value}
    if isinstance(value, int):
        exact = value if abs(value) <= JS_MAX_SAFE_INTEGER else str(value)
        return {"key": tag.key, "type": "int64", "value": exact}
    if isinstance(value, float):
        if not math.isfinite(value):  # JSON has no NaN/Infinity; Jaeger would fail to encode
            return {"key": tag.key, "type": "string", "value": str(value)}
        return {"key": tag.key, "type": "float64", "value": value}
    if isinstance(value, bytes):
        return {"key": tag.key, "type": "binary", "value": base64.b64encode(value).decode()}
    return {"key": tag.key, "type": "string", "value": value}


def encode_operations(operations: Iterable[Operation]) -> list[JsonObject]:
    return [{"name": op.name, "spanKind": op.span_kind} for op in operations]


def encode_dependencies(links: Iterable[DependencyLink]) -> list[JsonObject]:
    return [
        {"parent": link.parent, "child": link.child, "callCount": link.call_count} for link in links
    ]


def _process_id(process_ids: dict[Process, str], process: Process) -> str:
    pid = process_ids.get(process)
    if pid is None:
        pid = process_ids[process] = f"p{len(process_ids) + 1}"
    return pid
