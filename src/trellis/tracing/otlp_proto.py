"""OTLP protobuf (`application/x-protobuf` on 4318, and the gRPC service on 4317) -> spans."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from trellis.tracing.model import (
    RefType,
    SpanDecodeError,
    SpanLog,
    SpanRef,
    Tag,
    TagValue,
    span_id_from_bytes,
    trace_id_from_bytes,
)
from trellis.tracing.otlp_common import (
    DecodedSpans,
    OtlpSpanParts,
    build_span,
    event_log,
    make_tag,
    process_from_resource,
    scope_tags,
)


def decode_otlp_protobuf(body: bytes) -> DecodedSpans:
    """Decode an ExportTraceServiceRequest; a body that is not one raises SpanDecodeError."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as e:
        raise SpanDecodeError(f"not an OTLP ExportTraceServiceRequest: {e}") from None
    return spans_from_request(request)


def spans_from_request(request: ExportTraceServiceRequest) -> DecodedSpans:
    decoded = DecodedSpans()
    for resource_spans in request.resource_spans:
        process = process_from_resource(_tags(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_tags(scope_spans.scope.name, scope_spans.scope.version)
            for span in scope_spans.spans:
                try:
                    parts = _span_parts(span)
                except SpanDecodeError as e:
                    decoded.reject(str(e))
                    continue
                decoded.spans.append(build_span(parts, process=process, scope=scope))
    return decoded


def _span_parts(span: OtlpSpan) -> OtlpSpanParts:
    trace_id = trace_id_from_bytes(span.trace_id)
    return OtlpSpanParts(
        trace_id=trace_id,
        span_id=span_id_from_bytes(span.span_id),
        parent_span_id=span_id_from_bytes(span.parent_span_id) if span.parent_span_id else None,
        name=span.name,
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        attributes=_tags(span.attributes),
        events=tuple(_event(event) for event in span.events),
        links=tuple(ref for ref in map(_link, span.links) if ref is not None),
        status_code=span.status.code,
        status_message=span.status.message,
        trace_state=span.trace_state,
    )


def _event(event: OtlpSpan.Event) -> SpanLog:
    return event_log(event.time_unix_nano, event.name, _tags(event.attributes))


def _link(link: OtlpSpan.Link) -> SpanRef | None:
    """A link with a malformed ID is dropped; the span itself is still good."""
    try:
        trace_id = trace_id_from_bytes(link.trace_id)
        span_id = span_id_from_bytes(link.span_id)
    except SpanDecodeError:
        return None
    return SpanRef(RefType.FOLLOWS_FROM, trace_id, span_id)


def _tags(attributes: Any) -> tuple[Tag, ...]:
    # The hot loop of ingest (a sidecar span has ~15 attributes): strings, the common case,
    # take the shortest path.
    tags = []
    for kv in attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            tags.append(make_tag(kv.key, value.string_value))
        elif kind is not None:
            tags.append(make_tag(kv.key, _typed_value(value, kind)))
    return tuple(tags)


def _typed_value(value: AnyValue, kind: str) -> TagValue:
    """Scalars keep their type; arrays and maps become JSON text, as Jaeger shows them."""
    if kind in ("array_value", "kvlist_value"):
        return json.dumps(_plain(value), separators=(",", ":"))
    result: TagValue = getattr(value, kind)
    return result


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None if kind is None else getattr(value, kind)
