"""The bounded in-memory trace store: no I/O, no clock, no locks (one event loop owns it).

Bounded like Jaeger's memory store (`--memory.max-traces`): traces are kept in the order their
first span arrived and the oldest is evicted when a new trace would exceed `max_traces`. A span
that arrives for an evicted trace starts that trace anew, as in Jaeger. One runaway trace cannot
take all memory either: spans past `max_spans_per_trace` are refused and counted, and the ingest
endpoints report them back as rejected (OTLP partial success), so a sender is never told a span
was stored that was not.

The services/operations index counts the spans that reference each (service, operation, kind),
so evicting a trace also forgets names no stored span uses any more: the index stays bounded too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from trellis.tracing.model import (
    DependencyLink,
    Operation,
    Span,
    Trace,
    tag_value_text,
)

DEFAULT_MAX_TRACES = 10_000
DEFAULT_MAX_SPANS_PER_TRACE = 10_000
DEFAULT_QUERY_LIMIT = 100  # Jaeger's default for /api/traces

_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """A trace search: a trace matches when one of its spans matches every condition."""

    service: str
    operation: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    start_min_us: int | None = None
    start_max_us: int | None = None
    duration_min_us: int | None = None
    duration_max_us: int | None = None
    limit: int = DEFAULT_QUERY_LIMIT


@dataclass(frozen=True, slots=True)
class AddResult:
    accepted: int
    rejected: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    traces: int
    spans: int
    evicted_traces: int
    rejected_spans: int


class _StoredTrace:
    """A trace being filled: spans in arrival order (mutable, never handed out)."""

    __slots__ = ("spans",)

    def __init__(self) -> None:
        self.spans: list[Span] = []


class TraceStore:
    def __init__(
        self,
        *,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE,
    ) -> None:
        if max_traces < 1 or max_spans_per_trace < 1:
            raise ValueError("max_traces and max_spans_per_trace must be at least 1")
        self.max_traces = max_traces
        self.max_spans_per_trace = max_spans_per_trace
        self._traces: OrderedDict[int, _StoredTrace] = OrderedDict()
        self._operations: dict[tuple[str, str, str], int] = {}
        self._services: dict[str, int] = {}
        self._span_count = 0
        self._evicted = 0
        self._rejected = 0

    # -- writing -----------------------------------------------------------------------------

    def add(self, spans: Iterable[Span]) -> AddResult:
        """Store spans; returns how many were stored and how many refused (trace full)."""
        accepted = rejected = 0
        for span in spans:
            if self._add_one(span):
                accepted += 1
            else:
                rejected += 1
        self._rejected += rejected
        return AddResult(accepted=accepted, rejected=rejected)

    def _add_one(self, span: Span) -> bool:
        stored = self._traces.get(span.trace_id)
        if stored is None:
            if len(self._traces) >= self.max_traces:
                self._evict_oldest()
            stored = self._traces[span.trace_id] = _StoredTrace()
        elif len(stored.spans) >= self.max_spans_per_trace:
            return False
        stored.spans.append(span)
        self._span_count += 1
        self._index(span, +1)
        return True

    def _evict_oldest(self) -> None:
        _, stored = self._traces.popitem(last=False)
        for span in stored.spans:
            self._index(span, -1)
        self._span_count -= len(stored.spans)
        self._evicted += 1

    def _index(self, span: Span, delta: int) -> None:
        service = span.process.service_name
        _bump(self._services, service, delta)
        _bump(self._operations, (service, span.operation_name, span.span_kind), delta)

    # -- reading -----------------------------------------------------------------------------

    def get(self, trace_id: int) -> Trace | None:
        stored = self._traces.get(trace_id)
        return None if stored is None else Trace(trace_id, tuple(stored.spans))

    def services(self) -> list[str]:
        return sorted(self._services)

    def operations(self, service: str, span_kind: str = "") -> list[Operation]:
        """Operations of `service`, of one span kind or (`""`) of all kinds."""
        found = {
            Operation(name, kind)
            for (svc, name, kind) in self._operations
            if svc == service and (not span_kind or kind == span_kind)
        }
        return sorted(found, key=lambda op: (op.name, op.span_kind))

    def find(self, query: TraceQuery) -> list[Trace]:
        """Matching traces, most recently started first, at most `query.limit` (<= 0: all)."""
        matches = [
            Trace(trace_id, tuple(stored.spans))
            for trace_id, stored in self._traces.items()
            if any(_span_matches(span, query) for span in stored.spans)
        ]
        matches.sort(key=_trace_start_us, reverse=True)
        return matches[: query.limit] if query.limit > 0 else matches

    def dependencies(self, *, end_us: int, lookback_us: int) -> list[DependencyLink]:
        """Service-to-service call counts from parent/child spans of different services."""
        counts: dict[tuple[str, str], int] = {}
        start_us = end_us - lookback_us
        for stored in self._traces.values():
            if any(start_us <= span.start_us <= end_us for span in stored.spans):
                for pair in _service_edges(stored.spans):
                    counts[pair] = counts.get(pair, 0) + 1
        return [DependencyLink(p, c, n) for (p, c), n in sorted(counts.items())]

    def stats(self) -> StoreStats:
        return StoreStats(
            traces=len(self._traces),
            spans=self._span_count,
            evicted_traces=self._evicted,
            rejected_spans=self._rejected,
        )

    def __iter__(self) -> Iterator[int]:
        """Trace IDs, oldest first (the eviction order)."""
        return iter(list(self._traces))


def _bump(counts: dict[_K, int], key: _K, delta: int) -> None:
    value = counts.get(key, 0) + delta
    if value > 0:
        counts[key] = value
    else:
        counts.pop(key, None)


def _trace_start_us(trace: Trace) -> int:
    return min(span.start_us for span in trace.spans)


def _span_matches(span: Span, query: TraceQuery) -> bool:
    if span.process.service_name != query.service:
        return False
    if query.operation and span.operation_name != query.operation:
        return False
    if not _within(span.start_us, query.start_min_us, query.start_max_us):
        return False
    if not _within(span.duration_us, query.duration_min_us, query.duration_max_us):
        return False
    return all(_has_tag(span, key, value) for key, value in query.tags)


def _within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _has_tag(span: Span, key: str, value: str) -> bool:
    """Jaeger's memory store looks in span tags, process tags and log fields alike."""
    candidates = [*span.tags, *span.process.tags]
    for log in span.logs:
        candidates.extend(log.fields)
    return any(tag.key == key and tag_value_text(tag.value) == value for tag in candidates)


def _service_edges(spans: list[Span]) -> Iterator[tuple[str, str]]:
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        parent_id = span.parent_span_id
        parent = by_id.get(parent_id) if parent_id is not None else None
        if parent is not None:
            parent_service = parent.process.service_name
            child_service = span.process.service_name
            if parent_service != child_service:
                yield parent_service, child_service
