"""Spans as senders write them (OTLP protobuf, OTLP/JSON, Zipkin v2), built from one spec.

The unit tests, the end-to-end test of `trellis tracing` and their assertions share these, so
one trace can be sent in every format and compared with what the store answers.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

Attr = str | bool | int | float

BASE_NS = 1_700_000_000_000_000_000  # 2023-11-14, a fixed "now" for pure tests
SERVER = 2
CLIENT = 3


@dataclass(frozen=True)
class SpanSpec:
    trace_id: int
    span_id: int
    parent_id: int | None
    service: str
    name: str
    kind: int = SERVER
    start_ns: int = BASE_NS
    duration_ns: int = 1_000_000
    attributes: dict[str, Attr] = field(default_factory=dict)
    error: bool = False


def chain_trace(
    trace_id: int,
    services: tuple[str, ...] = ("frontend", "backend"),
    *,
    start_ns: int = BASE_NS,
    duration_ns: int = 10_000_000,
    status_code: str = "200",
    envoy_like: bool = False,
) -> list[SpanSpec]:
    """A call chain: services[0] calls services[1] calls ... (one server span per service).

    `envoy_like` adds the dozen tags an Envoy sidecar span carries, with per-span values, so
    memory measurements see spans of a realistic size.
    """
    spans = []
    parent: int | None = None
    for index, service in enumerate(services):
        span_id = (trace_id & 0xFFFF_FFFF) * 64 + index + 1
        spans.append(
            SpanSpec(
                trace_id=trace_id,
                span_id=span_id,
                parent_id=parent,
                service=service,
                name=f"GET /{service}",
                start_ns=start_ns + index * 1000,
                duration_ns=max(duration_ns - index * 1000, 1000),
                attributes={
                    "http.status_code": status_code,
                    "http.method": "GET",
                    **(envoy_attributes(service, span_id) if envoy_like else {}),
                },
            )
        )
        parent = span_id
    return spans


def envoy_attributes(service: str, span_id: int) -> dict[str, Attr]:
    return {
        "node_id": f"sidecar~198.18.0.{span_id % 250}~{service}-v1-{span_id:x}.default~default.svc.cluster.local",
        "zone": "local",
        "guid:x-request-id": f"{span_id:032x}-{span_id:08x}",
        "http.url": f"http://{service}.default.svc.cluster.local:9080/{service}/{span_id}",
        "http.protocol": "HTTP/1.1",
        "user_agent": "python-requests/2.32.3",
        "request_size": 0,
        "response_size": 1000 + span_id % 5000,
        "response_flags": "-",
        "upstream_cluster": f"inbound|9080||{service}.default.svc.cluster.local",
        "upstream_cluster.name": f"inbound|9080||{service}.default.svc.cluster.local",
        "peer.address": f"198.18.0.{span_id % 250}",
        "component": "proxy",
    }


def _any_value(value: Attr) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def _otlp_span(spec: SpanSpec) -> OtlpSpan:
    span = OtlpSpan(
        trace_id=spec.trace_id.to_bytes(16, "big"),
        span_id=spec.span_id.to_bytes(8, "big"),
        name=spec.name,
        kind=spec.kind,
        start_time_unix_nano=spec.start_ns,
        end_time_unix_nano=spec.start_ns + spec.duration_ns,
        attributes=[KeyValue(key=k, value=_any_value(v)) for k, v in spec.attributes.items()],
    )
    if spec.parent_id is not None:
        span.parent_span_id = spec.parent_id.to_bytes(8, "big")
    if spec.error:
        span.status.code = 2
        span.status.message = "boom"
    return span


def otlp_request(specs: list[SpanSpec]) -> ExportTraceServiceRequest:
    """One ResourceSpans per service, as each service's SDK would send them (batched)."""
    by_service: dict[str, list[SpanSpec]] = defaultdict(list)
    for spec in specs:
        by_service[spec.service].append(spec)
    request = ExportTraceServiceRequest()
    for service, service_specs in by_service.items():
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(
            KeyValue(key="service.name", value=AnyValue(string_value=service))
        )
        resource_spans.resource.attributes.append(
            KeyValue(key="host.name", value=AnyValue(string_value=f"{service}-host"))
        )
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "trellis-test"
        scope_spans.scope.version = "1.0"
        scope_spans.spans.extend(_otlp_span(spec) for spec in service_specs)
    return request


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON: protobuf's JSON mapping with hex IDs and integer enums (the OTLP spec)."""
    document = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _hex_ids(span)
                for link in span.get("links", []):
                    _hex_ids(link)
    return document


def _hex_ids(item: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in item:
            item[key] = base64.b64decode(item[key]).hex()


def zipkin_spans(specs: list[SpanSpec]) -> list[dict[str, Any]]:
    spans = []
    for spec in specs:
        span: dict[str, Any] = {
            "traceId": f"{spec.trace_id:032x}",
            "id": f"{spec.span_id:016x}",
            "name": spec.name,
            "kind": "SERVER" if spec.kind == SERVER else "CLIENT",
            "timestamp": spec.start_ns // 1000,
            "duration": spec.duration_ns // 1000,
            "localEndpoint": {"serviceName": spec.service, "ipv4": "127.0.0.1"},
            "tags": {k: str(v) for k, v in spec.attributes.items()},
        }
        if spec.parent_id is not None:
            span["parentId"] = f"{spec.parent_id:016x}"
        spans.append(span)
    return spans
