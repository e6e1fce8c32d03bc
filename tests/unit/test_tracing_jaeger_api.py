"""Jaeger's query API: parameter parsing and the JSON shape of its answers.

The expected shapes follow Jaeger's HTTP JSON API (jaegertracing.io/docs/latest/apis, and
`model/json` plus `structuredResponse` in Jaeger's query service).
"""

from __future__ import annotations

import pytest
from tests.tracing_payloads import BASE_NS, SpanSpec, otlp_request

from trellis.tracing.jaeger_json import (
    encode_dependencies,
    encode_operations,
    encode_tag,
    encode_trace,
    envelope,
    error_envelope,
)
from trellis.tracing.model import DependencyLink, Operation, Tag, Trace, format_trace_id
from trellis.tracing.otlp_proto import spans_from_request
from trellis.tracing.query import (
    DEFAULT_SEARCH_LOOKBACK_US,
    QueryError,
    parse_dependencies,
    parse_duration_us,
    parse_search,
)

NOW_US = 1_800_000_000_000_000

SPAN_KEYS = {
    "traceID",
    "spanID",
    "operationName",
    "references",
    "startTime",
    "duration",
    "tags",
    "logs",
    "processID",
    "warnings",
}


def two_service_trace() -> Trace:
    specs = [
        SpanSpec(0x1234, 1, None, "productpage", "GET /productpage"),
        SpanSpec(0x1234, 2, 1, "reviews", "GET /reviews", attributes={"http.status_code": 200}),
        SpanSpec(0x1234, 3, 2, "reviews", "GET /ratings", kind=3),
    ]
    return Trace(0x1234, tuple(spans_from_request(otlp_request(specs)).spans))


def test_trace_json_has_jaegers_shape() -> None:
    encoded = encode_trace(two_service_trace())
    assert set(encoded) == {"traceID", "spans", "processes", "warnings"}
    assert encoded["traceID"] == "0000000000001234"
    assert encoded["warnings"] is None
    assert encoded["processes"] == {
        "p1": {
            "serviceName": "productpage",
            "tags": [{"key": "host.name", "type": "string", "value": "productpage-host"}],
        },
        "p2": {
            "serviceName": "reviews",
            "tags": [{"key": "host.name", "type": "string", "value": "reviews-host"}],
        },
    }
    root, child, grandchild = encoded["spans"]
    assert set(root) == SPAN_KEYS
    assert root["references"] == [] and root["logs"] == [] and root["warnings"] is None
    assert (root["processID"], child["processID"], grandchild["processID"]) == ("p1", "p2", "p2")
    assert child["references"] == [
        {"refType": "CHILD_OF", "traceID": "0000000000001234", "spanID": "0000000000000001"}
    ]
    assert child["spanID"] == "0000000000000002"
    assert child["startTime"] == BASE_NS // 1000 and child["duration"] == 1000
    assert {"key": "http.status_code", "type": "int64", "value": 200} in child["tags"]
    assert {"key": "span.kind", "type": "string", "value": "client"} in grandchild["tags"]


def test_trace_ids_render_as_jaeger_does() -> None:
    assert format_trace_id(0xAB) == "00000000000000ab"
    assert format_trace_id(1 << 64) == "00000000000000010000000000000000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", {"type": "string", "value": "s"}),
        (True, {"type": "bool", "value": True}),
        (7, {"type": "int64", "value": 7}),
        (2**53 - 1, {"type": "int64", "value": 2**53 - 1}),
        (2**63 - 1, {"type": "int64", "value": "9223372036854775807"}),  # beyond JS precision
        (-(2**60), {"type": "int64", "value": str(-(2**60))}),
        (1.5, {"type": "float64", "value": 1.5}),
        (b"\x01\x02", {"type": "binary", "value": "AQI="}),
        (float("nan"), {"type": "string", "value": "nan"}),
    ],
)
def test_tag_value_types_are_jaegers(value: object, expected: dict[str, object]) -> None:
    assert encode_tag(Tag("k", value)) == {"key": "k", **expected}  # type: ignore[arg-type]


def test_envelopes_have_jaegers_fields() -> None:
    assert envelope(["a"], total=1) == {
        "data": ["a"],
        "total": 1,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    assert error_envelope(404, "trace not found") == {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": 404, "msg": "trace not found"}],
    }
    assert encode_operations([Operation("GET /", "server")]) == [
        {"name": "GET /", "spanKind": "server"}
    ]
    assert encode_dependencies([DependencyLink("a", "b", 3)]) == [
        {"parent": "a", "child": "b", "callCount": 3}
    ]


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0", 0),
        ("100ms", 100_000),
        ("1.2s", 1_200_000),
        ("1h30m", 5_400_000_000),
        ("250us", 250),
        ("250µs", 250),
        ("1500ns", 2),
        ("2d", 172_800_000_000),
        (".5s", 500_000),
    ],
)
def test_go_durations_parse_to_microseconds(text: str, micros: int) -> None:
    assert parse_duration_us(text) == micros


@pytest.mark.parametrize("text", ["", "5", "1x", "ms", "1s 2s", "-1s"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(QueryError):
        parse_duration_us(text)


def test_search_parameters_become_a_store_query() -> None:
    params = [
        ("service", "reviews"),
        ("operation", "GET /reviews"),
        ("tags", '{"http.status_code":"200"}'),
        ("tag", "error:true"),
        ("minDuration", "1.2s"),
        ("maxDuration", "3s"),
        ("limit", "20"),
        ("lookback", "1h"),
    ]
    query = parse_search(params, now_us=NOW_US).query
    assert query is not None
    assert query.service == "reviews" and query.operation == "GET /reviews"
    assert dict(query.tags) == {"http.status_code": "200", "error": "true"}
    assert (query.duration_min_us, query.duration_max_us) == (1_200_000, 3_000_000)
    assert query.limit == 20
    assert (query.start_min_us, query.start_max_us) == (NOW_US - 3_600_000_000, NOW_US)


def test_search_defaults_are_jaegers() -> None:
    query = parse_search([("service", "s")], now_us=NOW_US).query
    assert query is not None
    assert query.limit == 100
    assert query.start_min_us == NOW_US - DEFAULT_SEARCH_LOOKBACK_US
    explicit = parse_search(
        [("service", "s"), ("start", "5"), ("end", "9"), ("lookback", "1h")], now_us=NOW_US
    ).query
    assert explicit is not None and (explicit.start_min_us, explicit.start_max_us) == (5, 9)


def test_trace_id_parameters_ask_for_those_traces() -> None:
    search = parse_search([("traceID", "ab"), ("traceID", "0000000000000cd")], now_us=NOW_US)
    assert search.query is None and search.trace_ids == (0xAB, 0xCD)


@pytest.mark.parametrize(
    "params",
    [
        [],
        [("service", "s"), ("limit", "many")],
        [("service", "s"), ("tags", "[1]")],
        [("service", "s"), ("tags", "{not json")],
        [("service", "s"), ("tag", "novalue")],
        [("service", "s"), ("minDuration", "2s"), ("maxDuration", "1s")],
        [("traceID", "xyz")],
    ],
)
def test_bad_search_parameters_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(QueryError):
        parse_search(params, now_us=NOW_US)


def test_dependency_parameters_are_milliseconds() -> None:
    assert parse_dependencies([("endTs", "2000"), ("lookback", "500")], now_us=NOW_US) == (
        2_000_000,
        500_000,
    )
    end_us, lookback_us = parse_dependencies([], now_us=NOW_US)
    assert (end_us, lookback_us) == (NOW_US, 24 * 3600 * 1_000_000)
