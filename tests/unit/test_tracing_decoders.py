"""OTLP (protobuf and JSON) and Zipkin v2 decoding into Jaeger's span model."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from tests.tracing_payloads import (
    BASE_NS,
    SpanSpec,
    chain_trace,
    otlp_json,
    otlp_request,
    zipkin_spans,
)

from trellis.tracing.model import RefType, Span, SpanDecodeError
from trellis.tracing.otlp_common import NO_SERVICE_NAME
from trellis.tracing.otlp_json import decode_otlp_json
from trellis.tracing.otlp_proto import decode_otlp_protobuf
from trellis.tracing.zipkin import decode_zipkin_v2


def tags_of(span: Span) -> dict[str, object]:
    return {tag.key: tag.value for tag in span.tags}


def rich_request_bytes() -> bytes:
    """A span with every feature: parent, error status, event, link, typed and array values."""
    request = otlp_request(
        [
            SpanSpec(
                trace_id=0xABC,
                span_id=0x2,
                parent_id=0x1,
                service="reviews",
                name="GET /reviews",
                kind=3,
                attributes={"http.status_code": 503, "retry": True, "ratio": 0.5, "v": "x"},
                error=True,
            )
        ]
    )
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.append(
        KeyValue(
            key="list",
            value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])),
        )
    )
    event = span.events.add(time_unix_nano=BASE_NS + 5000, name="retry")
    event.attributes.append(KeyValue(key="attempt", value=AnyValue(int_value=2)))
    span.links.add(trace_id=(0xDEF).to_bytes(16, "big"), span_id=(9).to_bytes(8, "big"))
    span.trace_state = "vendor=1"
    return request.SerializeToString()


def test_otlp_protobuf_span_maps_to_jaeger_model() -> None:
    decoded = decode_otlp_protobuf(rich_request_bytes())
    assert decoded.invalid == 0
    [span] = decoded.spans
    assert (span.trace_id, span.span_id, span.operation_name) == (0xABC, 2, "GET /reviews")
    assert span.start_us == BASE_NS // 1000 and span.duration_us == 1000
    assert span.process.service_name == "reviews"
    assert [(t.key, t.value) for t in span.process.tags] == [("host.name", "reviews-host")]
    refs = [(r.ref_type, r.trace_id, r.span_id) for r in span.references]
    assert refs == [(RefType.CHILD_OF, 0xABC, 1), (RefType.FOLLOWS_FROM, 0xDEF, 9)]
    assert span.parent_span_id == 1
    assert span.span_kind == "client"
    tags = tags_of(span)
    assert tags["http.status_code"] == 503 and tags["retry"] is True and tags["ratio"] == 0.5
    assert tags["list"] == "[1]"
    assert tags["span.kind"] == "client"
    assert tags["otel.status_code"] == "ERROR" and tags["error"] is True
    assert tags["otel.status_description"] == "boom"
    assert tags["otel.scope.name"] == "trellis-test" and tags["otel.scope.version"] == "1.0"
    assert tags["w3c.tracestate"] == "vendor=1"
    [log] = span.logs
    assert log.timestamp_us == BASE_NS // 1000 + 5
    assert [(f.key, f.value) for f in log.fields] == [("event", "retry"), ("attempt", 2)]


def test_otlp_json_decodes_to_the_same_spans_as_protobuf() -> None:
    request = ExportTraceServiceRequest.FromString(rich_request_bytes())
    request.MergeFrom(otlp_request(chain_trace(77, ("a", "b"))))
    from_json = decode_otlp_json(json.dumps(otlp_json(request)).encode())
    from_proto = decode_otlp_protobuf(request.SerializeToString())
    assert from_json.invalid == 0
    assert from_json.spans == from_proto.spans


def test_otlp_json_accepts_enum_names_and_numeric_int64() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": []},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "name": "op",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": 1544712660000000000,
                                "endTimeUnixNano": "1544712661000000000",
                                "status": {"code": "STATUS_CODE_OK"},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    [span] = decode_otlp_json(json.dumps(body).encode()).spans
    assert span.trace_id == 0x5B8EFFF798038103D269B633813FC60C
    assert span.duration_us == 1_000_000
    assert span.span_kind == "server"
    assert span.process.service_name == NO_SERVICE_NAME
    assert tags_of(span)["otel.status_code"] == "OK"


def test_spans_with_invalid_ids_are_counted_not_stored() -> None:
    request = otlp_request(chain_trace(5, ("a", "b")))
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x00" * 16
    decoded = decode_otlp_protobuf(request.SerializeToString())
    assert (len(decoded.spans), decoded.invalid) == (1, 1)
    assert "zeros" in decoded.error
    document = otlp_json(otlp_request(chain_trace(5, ("a",))))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "not-hex"
    assert decode_otlp_json(json.dumps(document).encode()).invalid == 1


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05abc"])
def test_a_body_that_is_not_otlp_protobuf_is_refused(body: bytes) -> None:
    with pytest.raises(SpanDecodeError):
        decode_otlp_protobuf(body)


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"resourceSpans": 3}'])
def test_a_body_that_is_not_otlp_json_is_refused(body: bytes) -> None:
    with pytest.raises(SpanDecodeError):
        decode_otlp_json(body)


def test_zipkin_v2_span_maps_to_jaeger_model() -> None:
    [payload] = zipkin_spans([SpanSpec(0xAB, 2, 1, "productpage", "GET /", kind=3)])
    payload["remoteEndpoint"] = {"serviceName": "reviews", "ipv4": "198.18.0.5", "port": 9080}
    payload["annotations"] = [{"timestamp": 1000, "value": "ws"}]
    payload["tags"] = {"http.status_code": "200"}
    [span] = decode_zipkin_v2(json.dumps([payload]).encode()).spans
    assert (span.trace_id, span.span_id, span.parent_span_id) == (0xAB, 2, 1)
    assert span.process.service_name == "productpage"
    assert [(t.key, t.value) for t in span.process.tags] == [("ip", "127.0.0.1")]
    assert span.span_kind == "client"
    assert tags_of(span) == {
        "http.status_code": "200",
        "span.kind": "client",
        "peer.service": "reviews",
        "peer.ipv4": "198.18.0.5",
        "peer.port": 9080,
    }
    assert [(f.key, f.value) for f in span.logs[0].fields] == [("event", "ws")]
    assert span.start_us == BASE_NS // 1000 and span.duration_us == 1000


def test_zipkin_64_and_128_bit_trace_ids_name_the_same_trace() -> None:
    short = {"traceId": "00000000000000ab", "id": "1", "localEndpoint": {"serviceName": "x"}}
    long = {"traceId": "000000000000000000000000000000ab", "id": "2"}
    spans = decode_zipkin_v2(json.dumps([short, long]).encode()).spans
    assert {span.trace_id for span in spans} == {0xAB}
    assert spans[1].process.service_name == "unknown-service"


def test_zipkin_spans_share_one_process_per_endpoint() -> None:
    spans = decode_zipkin_v2(json.dumps(zipkin_spans(chain_trace(3, ("a", "a")))).encode())
    assert spans.spans[0].process is spans.spans[1].process


def test_zipkin_malformed_spans_are_counted_and_a_non_list_refused() -> None:
    decoded = decode_zipkin_v2(b'[{"traceId": "zz", "id": "1"}, {"id": "1"}]')
    assert (decoded.spans, decoded.invalid) == ([], 2)
    with pytest.raises(SpanDecodeError):
        decode_zipkin_v2(b'{"traceId": "1"}')


def test_repeated_string_tags_are_shared_and_the_sharing_is_bounded() -> None:
    from trellis.tracing import otlp_common

    first = otlp_common.make_tag("http.method", "GET")
    assert otlp_common.make_tag("http.method", "GET") is first
    assert otlp_common.make_tag("flag", True).value is True  # never the int 1's tag
    assert (
        otlp_common.make_tag("flag", 1).value == 1
        and otlp_common.make_tag("flag", 1).value is not True
    )
    for i in range(otlp_common.SHARED_TAGS_LIMIT + 10):
        otlp_common.make_tag("guid:x-request-id", f"id-{i}")
    assert len(otlp_common._SHARED_TAGS) <= otlp_common.SHARED_TAGS_LIMIT
