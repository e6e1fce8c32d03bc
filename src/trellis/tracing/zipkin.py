"""Zipkin v2 JSON (`POST /api/v2/spans` on 9411) -> spans.

Envoy's Zipkin tracer and many older clients speak it. Mapping, as Jaeger's Zipkin ingest does:
`localEndpoint.serviceName` is the process (its address a process tag `ip`), `kind` becomes the
`span.kind` tag, the remote endpoint becomes `peer.*` tags, annotations become logs with an
`event` field, `parentId` a CHILD_OF reference. https://zipkin.io/zipkin-api/#/default/post_spans
"""

from __future__ import annotations

import json
from typing import Any

from trellis.tracing.model import (
    Process,
    RefType,
    Span,
    SpanDecodeError,
    SpanLog,
    SpanRef,
    Tag,
    parse_span_id,
    parse_trace_id,
)
from trellis.tracing.otlp_common import DecodedSpans, make_tag

UNKNOWN_SERVICE = "unknown-service"
_KINDS = {"CLIENT": "client", "SERVER": "server", "PRODUCER": "producer", "CONSUMER": "consumer"}
_SPAN_ERRORS = (SpanDecodeError, KeyError, TypeError, ValueError, AttributeError)


def decode_zipkin_v2(body: bytes) -> DecodedSpans:
    """Decode a JSON list of Zipkin v2 spans; malformed spans are counted, not fatal."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise SpanDecodeError(f"body is not JSON: {e}") from None
    if not isinstance(document, list):
        raise SpanDecodeError("a Zipkin v2 body must be a JSON list of spans")
    decoded = DecodedSpans()
    processes: dict[Process, Process] = {}
    for item in document:
        try:
            decoded.spans.append(_span(item, processes))
        except _SPAN_ERRORS as e:
            decoded.reject(f"invalid Zipkin span: {e!r}")
    return decoded


def _span(item: dict[str, Any], processes: dict[Process, Process]) -> Span:
    trace_id = parse_trace_id(str(item["traceId"]))
    parent = item.get("parentId")
    kind = _KINDS.get(str(item.get("kind", "")).upper(), "")
    references = (
        (SpanRef(RefType.CHILD_OF, trace_id, parse_span_id(str(parent))),) if parent else ()
    )
    tags = [make_tag(str(k), str(v)) for k, v in (item.get("tags") or {}).items()]
    if kind:
        tags.append(make_tag("span.kind", kind))
    tags.extend(_endpoint_tags(item.get("remoteEndpoint"), "peer."))
    return Span(
        trace_id=trace_id,
        span_id=parse_span_id(str(item["id"])),
        operation_name=str(item.get("name") or ""),
        references=references,
        start_us=int(item.get("timestamp") or 0),
        duration_us=int(item.get("duration") or 0),
        tags=tuple(tags),
        logs=tuple(_annotation(a) for a in item.get("annotations") or []),
        process=_process(item.get("localEndpoint"), processes),
        span_kind=kind,
    )


def _process(endpoint: dict[str, Any] | None, processes: dict[Process, Process]) -> Process:
    """One Process object per distinct endpoint in a payload keeps a full store smaller."""
    endpoint = endpoint or {}
    service = str(endpoint.get("serviceName") or UNKNOWN_SERVICE)
    tags = []
    address = endpoint.get("ipv4") or endpoint.get("ipv6")
    if address:
        tags.append(make_tag("ip", str(address)))
    process = Process(service_name=service, tags=tuple(tags))
    return processes.setdefault(process, process)


def _endpoint_tags(endpoint: dict[str, Any] | None, prefix: str) -> list[Tag]:
    if not endpoint:
        return []
    tags = []
    if endpoint.get("serviceName"):
        tags.append(make_tag(prefix + "service", str(endpoint["serviceName"])))
    for field in ("ipv4", "ipv6"):
        if endpoint.get(field):
            tags.append(make_tag(prefix + field, str(endpoint[field])))
    if endpoint.get("port"):
        tags.append(make_tag(prefix + "port", int(endpoint["port"])))
    return tags


def _annotation(annotation: dict[str, Any]) -> SpanLog:
    return SpanLog(
        timestamp_us=int(annotation["timestamp"]),
        fields=(make_tag("event", str(annotation.get("value", ""))),),
    )
