"""The bounded trace store: complete traces, eviction at the bound, search, dependencies."""

from __future__ import annotations

import pytest
from tests.tracing_payloads import BASE_NS, SpanSpec, chain_trace, otlp_request

from trellis.tracing.model import Process, Span, SpanLog, Tag
from trellis.tracing.otlp_proto import spans_from_request
from trellis.tracing.store import TraceQuery, TraceStore

BASE_US = BASE_NS // 1000


def spans_of(specs: list[SpanSpec]) -> list[Span]:
    return spans_from_request(otlp_request(specs)).spans


def store_with(*traces: list[SpanSpec], max_traces: int = 1000) -> TraceStore:
    store = TraceStore(max_traces=max_traces)
    for specs in traces:
        assert store.add(spans_of(specs)).rejected == 0
    return store


def test_trace_is_complete_when_its_spans_arrive_in_separate_batches() -> None:
    specs = chain_trace(1, ("a", "b", "c"))
    store = TraceStore(max_traces=10)
    for spec in specs:
        store.add(spans_of([spec]))
    trace = store.get(1)
    assert trace is not None
    assert {span.span_id for span in trace.spans} == {spec.span_id for spec in specs}


def test_oldest_traces_are_evicted_at_the_bound_and_the_newest_stay_complete() -> None:
    store = TraceStore(max_traces=100)
    for trace_id in range(1, 151):
        store.add(spans_of(chain_trace(trace_id, ("a", "b", "c"))))
    assert [store.get(t) for t in range(1, 51)] == [None] * 50
    for trace_id in range(51, 151):
        trace = store.get(trace_id)
        assert trace is not None and len(trace.spans) == 3
    stats = store.stats()
    assert (stats.traces, stats.spans, stats.evicted_traces) == (100, 300, 50)
    assert next(iter(store)) == 51


def test_late_spans_of_a_stored_trace_do_not_make_it_newer() -> None:
    """Eviction order is the order traces were first seen, as in Jaeger's memory store."""
    store = TraceStore(max_traces=2)
    first, second = chain_trace(1), chain_trace(2)
    store.add(spans_of(first[:1]))
    store.add(spans_of(second))
    store.add(spans_of(first[1:]))  # trace 1 completed late: still the oldest
    store.add(spans_of(chain_trace(3)))
    assert store.get(1) is None
    assert store.get(2) is not None and store.get(3) is not None


def test_spans_past_the_per_trace_bound_are_refused_and_counted() -> None:
    store = TraceStore(max_traces=10, max_spans_per_trace=2)
    result = store.add(spans_of(chain_trace(7, ("a", "b", "c", "d"))))
    assert (result.accepted, result.rejected) == (2, 2)
    assert store.stats().rejected_spans == 2
    trace = store.get(7)
    assert trace is not None and len(trace.spans) == 2


def test_services_and_operations_forget_what_eviction_removed() -> None:
    store = TraceStore(max_traces=1)
    store.add(spans_of(chain_trace(1, ("old-a", "old-b"))))
    store.add(spans_of(chain_trace(2, ("new",))))
    assert store.services() == ["new"]
    assert store.operations("old-a") == []
    assert [op.name for op in store.operations("new")] == ["GET /new"]


def test_operations_filter_by_span_kind() -> None:
    server = SpanSpec(1, 1, None, "svc", "inbound", kind=2)
    client = SpanSpec(1, 2, 1, "svc", "outbound", kind=3)
    store = store_with([server, client])
    assert [op.name for op in store.operations("svc")] == ["inbound", "outbound"]
    assert [op.name for op in store.operations("svc", "client")] == ["outbound"]
    assert store.operations("svc", "client")[0].span_kind == "client"


def test_search_matches_service_operation_and_tags_on_one_span() -> None:
    store = store_with(
        chain_trace(1, ("front", "back"), status_code="200"),
        chain_trace(2, ("front", "back"), status_code="503"),
    )
    found = store.find(TraceQuery(service="back", tags=(("http.status_code", "503"),)))
    assert [t.trace_id for t in found] == [2]
    assert store.find(TraceQuery(service="back", operation="GET /front")) == []
    assert len(store.find(TraceQuery(service="back", operation="GET /back"))) == 2


def test_search_tags_also_match_process_tags_and_log_fields() -> None:
    store = store_with(chain_trace(1, ("front",)))
    assert store.find(TraceQuery(service="front", tags=(("host.name", "front-host"),)))
    logged = Span(
        trace_id=9,
        span_id=9,
        operation_name="op",
        references=(),
        start_us=BASE_US,
        duration_us=5,
        tags=(),
        logs=(SpanLog(BASE_US, (Tag("event", "retry"), Tag("attempt", 2))),),
        process=Process("logger"),
    )
    store.add([logged])
    assert store.find(TraceQuery(service="logger", tags=(("attempt", "2"),)))


def test_search_filters_by_duration_and_start_time() -> None:
    store = store_with(
        chain_trace(1, ("svc",), duration_ns=50_000_000, start_ns=BASE_NS),
        chain_trace(2, ("svc",), duration_ns=2_000_000_000, start_ns=BASE_NS + 10**9),
    )
    slow = store.find(TraceQuery(service="svc", duration_min_us=1_200_000))
    assert [t.trace_id for t in slow] == [2]
    fast = store.find(TraceQuery(service="svc", duration_max_us=100_000))
    assert [t.trace_id for t in fast] == [1]
    early = store.find(TraceQuery(service="svc", start_max_us=BASE_US + 500_000))
    assert [t.trace_id for t in early] == [1]


def test_search_returns_newest_first_up_to_the_limit() -> None:
    traces = [chain_trace(t, ("svc",), start_ns=BASE_NS + t * 10**9) for t in range(1, 6)]
    store = store_with(*traces)
    found = store.find(TraceQuery(service="svc", limit=3))
    assert [t.trace_id for t in found] == [5, 4, 3]


def test_dependencies_count_calls_between_different_services() -> None:
    store = store_with(
        chain_trace(1, ("front", "back", "db")),
        chain_trace(2, ("front", "back")),
        chain_trace(3, ("solo", "solo")),
    )
    links = store.dependencies(end_us=BASE_US + 10**6, lookback_us=10**7)
    assert [(d.parent, d.child, d.call_count) for d in links] == [
        ("back", "db", 1),
        ("front", "back", 2),
    ]


def test_dependencies_only_count_traces_inside_the_window() -> None:
    store = store_with(chain_trace(1, ("front", "back")))
    assert store.dependencies(end_us=BASE_US - 1, lookback_us=10**6) == []


def test_store_rejects_a_bound_below_one() -> None:
    with pytest.raises(ValueError):
        TraceStore(max_traces=0)
