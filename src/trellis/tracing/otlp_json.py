"""OTLP/JSON (`application/json` on 4318) -> spans.

OTLP's JSON is protobuf's JSON mapping with the spec's exceptions: trace and span IDs are hex
strings (not base64), enums are integers, 64-bit integers may be strings or numbers. Reading it
directly (instead of through `json_format` after rewriting the IDs) is simpler and several times
faster. https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from trellis.tracing.model import (
    RefType,
    SpanDecodeError,
    SpanLog,
    SpanRef,
    Tag,
    TagValue,
    parse_span_id,
    parse_trace_id,
)
from trellis.tracing.otlp_common import (
    SPAN_KIND_NAMES,
    STATUS_CODE_NAMES,
    DecodedSpans,
    OtlpSpanParts,
    build_span,
    event_log,
    make_tag,
    process_from_resource,
    scope_tags,
)

_SPAN_ERRORS = (SpanDecodeError, KeyError, TypeError, ValueError, AttributeError)


def decode_otlp_json(body: bytes) -> DecodedSpans:
    """Decode an ExportTraceServiceRequest in JSON; malformed spans are counted, not fatal."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise SpanDecodeError(f"body is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise SpanDecodeError("OTLP/JSON body must be an object with resourceSpans")
    decoded = DecodedSpans()
    try:
        for resource_spans in document.get("resourceSpans") or []:
            _decode_resource_spans(resource_spans, decoded)
    except _SPAN_ERRORS as e:
        raise SpanDecodeError(f"malformed OTLP/JSON: {e!r}") from None
    return decoded


def _decode_resource_spans(resource_spans: dict[str, Any], decoded: DecodedSpans) -> None:
    resource = resource_spans.get("resource") or {}
    process = process_from_resource(_tags(resource.get("attributes")))
    # `instrumentationLibrarySpans` is the pre-1.0 name some old exporters still send.
    scopes = resource_spans.get("scopeSpans") or resource_spans.get("instrumentationLibrarySpans")
    for scope_spans in scopes or []:
        scope_info = scope_spans.get("scope") or scope_spans.get("instrumentationLibrary") or {}
        scope = scope_tags(str(scope_info.get("name", "")), str(scope_info.get("version", "")))
        for span in scope_spans.get("spans") or []:
            try:
                parts = _span_parts(span)
            except _SPAN_ERRORS as e:
                decoded.reject(f"invalid span: {e}")
                continue
            decoded.spans.append(build_span(parts, process=process, scope=scope))


def _span_parts(span: dict[str, Any]) -> OtlpSpanParts:
    trace_id = parse_trace_id(span["traceId"])
    parent = span.get("parentSpanId")
    status = span.get("status") or {}
    return OtlpSpanParts(
        trace_id=trace_id,
        span_id=parse_span_id(span["spanId"]),
        parent_span_id=parse_span_id(parent) if parent else None,
        name=str(span.get("name", "")),
        kind=_enum(span.get("kind", 0), SPAN_KIND_NAMES),
        start_ns=int(span.get("startTimeUnixNano", 0)),
        end_ns=int(span.get("endTimeUnixNano", 0)),
        attributes=_tags(span.get("attributes")),
        events=tuple(_event(event) for event in span.get("events") or []),
        links=tuple(ref for ref in map(_link, span.get("links") or []) if ref is not None),
        status_code=_enum(status.get("code", 0), STATUS_CODE_NAMES),
        status_message=str(status.get("message", "")),
        trace_state=str(span.get("traceState", "")),
    )


def _enum(value: Any, names: dict[str, int]) -> int:
    """The spec says integers; accept the enum's names too, as protobuf's own parser does."""
    if isinstance(value, str) and not value.isdigit():
        return names[value]
    return int(value)


def _event(event: dict[str, Any]) -> SpanLog:
    time_ns = int(event.get("timeUnixNano", 0))
    return event_log(time_ns, str(event.get("name", "")), _tags(event.get("attributes")))


def _link(link: dict[str, Any]) -> SpanRef | None:
    """A link with a malformed ID is dropped; the span itself is still good."""
    try:
        return SpanRef(
            RefType.FOLLOWS_FROM, parse_trace_id(link["traceId"]), parse_span_id(link["spanId"])
        )
    except _SPAN_ERRORS:
        return None


def _tags(attributes: Any) -> tuple[Tag, ...]:
    tags = []
    for kv in attributes or []:
        value = _tag_value(kv.get("value") or {})
        if value is not None:
            tags.append(make_tag(str(kv["key"]), value))
    return tuple(tags)


def _tag_value(value: dict[str, Any]) -> TagValue | None:
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "bytesValue" in value:
        return _base64(value["bytesValue"])
    if "arrayValue" in value or "kvlistValue" in value:
        return json.dumps(_plain(value), separators=(",", ":"))
    return None


def _plain(value: dict[str, Any]) -> Any:
    if "arrayValue" in value:
        return [_plain(item) for item in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        items = (value["kvlistValue"] or {}).get("values") or []
        return {str(kv["key"]): _plain(kv.get("value") or {}) for kv in items}
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return _tag_value(value)


def _base64(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except binascii.Error:
        raise SpanDecodeError("bytesValue is not base64") from None
