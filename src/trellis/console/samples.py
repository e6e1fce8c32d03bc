"""The embedded data source's memory: successive scrapes of every proxy, and rates from them.

Counters only ever grow (until the proxy restarts), so a rate over a window is the increase
between the newest scrape and the one a window earlier, divided by the time between them — the
same arithmetic as PromQL's rate(), without its extrapolation. The ring keeps every scrape for
ten minutes and one a minute for an hour: enough for 1m/5m/1h windows in bounded memory.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from trellis.telemetry.prom_text import parse_envoy_text

REQUESTS = "istio_requests_total"
DURATION_BUCKET = "istio_request_duration_milliseconds_bucket"
TCP_SENT = "istio_tcp_sent_bytes_total"
TCP_RECEIVED = "istio_tcp_received_bytes_total"
KEPT_METRICS = frozenset({REQUESTS, DURATION_BUCKET, TCP_SENT, TCP_RECEIVED})
_KEPT_PREFIXES = tuple(KEPT_METRICS)
# The labels the graph and the charts group by; the rest (principals, FQDNs) only multiply
# series. `le` keeps histogram buckets apart.
KEPT_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_app",
    "source_version",
    "destination_service_name",
    "destination_service_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_app",
    "destination_version",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
    "le",
)
NAME = "__name__"
PROXY = "__proxy__"

SeriesKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Scrape:
    """Every kept series of every proxy at one moment (unix seconds), indexed by metric so a
    query reads only its metric's series."""

    at: float
    values: Mapping[SeriesKey, float]
    by_metric: Mapping[str, Mapping[SeriesKey, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, dict[SeriesKey, float]] = {}
        for key, value in self.values.items():
            index.setdefault(key[0][1] if key and key[0][0] == NAME else "", {})[key] = value
        object.__setattr__(self, "by_metric", index)


@dataclass(frozen=True, slots=True)
class RateRow:
    """One group's per-second rate (or, for buckets, per-second bucket increase)."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """A chart line: a group's labels and [unix_s, value] points."""

    labels: Mapping[str, str]
    datapoints: Sequence[tuple[float, float]]


def proxy_series(proxy: str, text: str) -> dict[SeriesKey, float]:
    """The kept series of one proxy's /stats/prometheus text, reduced to KEPT_LABELS."""
    values: dict[SeriesKey, float] = {}
    # Envoy's own stats are most of the text: skip them before the regex does.
    ours = "\n".join(line for line in text.splitlines() if line.startswith(_KEPT_PREFIXES))
    for sample in parse_envoy_text(ours):
        if sample.name not in KEPT_METRICS:
            continue
        kept = tuple((k, sample.labels[k]) for k in KEPT_LABELS if k in sample.labels)
        key = ((NAME, sample.name), (PROXY, proxy), *kept)
        values[key] = values.get(key, 0.0) + sample.value
    return values


def increase(
    old: Mapping[SeriesKey, float], new: Mapping[SeriesKey, float]
) -> dict[SeriesKey, float]:
    """Per series, how much each counter grew; a counter that went down was reset (its proxy
    restarted) and counts from zero; one that is new was born inside the window."""
    out: dict[SeriesKey, float] = {}
    for key, value in new.items():
        before = old.get(key)
        out[key] = value if before is None or value < before else value - before
    return out


@dataclass
class Selection:
    """One query's `metric{match}` and grouping, remembering each series' verdict and group so
    a chart's many steps decide every series once."""

    metric: str
    match: Mapping[str, str]
    group_by: Sequence[str]
    _groups: dict[SeriesKey, tuple[str, ...] | None] = field(default_factory=dict)

    def group_of(self, key: SeriesKey) -> tuple[str, ...] | None:
        """The series' group values, or None when it does not match."""
        if key not in self._groups:
            labels = dict(key)
            hit = labels.get(NAME) == self.metric and all(
                labels.get(k) == v for k, v in self.match.items()
            )
            self._groups[key] = tuple(labels.get(g, "") for g in self.group_by) if hit else None
        return self._groups[key]


@dataclass
class SampleRing:
    """Bounded history of scrapes: fine-grained recently, coarse further back."""

    fine_span: float = 600.0
    coarse_step: float = 60.0
    coarse_span: float = 3900.0
    _fine: deque[Scrape] = field(default_factory=deque)
    _coarse: deque[Scrape] = field(default_factory=deque)

    def add(self, scrape: Scrape) -> None:
        self._fine.append(scrape)
        while self._fine and self._fine[0].at < scrape.at - self.fine_span:
            self._fine.popleft()
        if not self._coarse or scrape.at - self._coarse[-1].at >= self.coarse_step:
            self._coarse.append(scrape)
        while self._coarse and self._coarse[0].at < scrape.at - self.coarse_span:
            self._coarse.popleft()

    def __len__(self) -> int:
        return len(self._fine)

    def latest(self) -> Scrape | None:
        return self._fine[-1] if self._fine else None

    def at_or_before(self, t: float) -> Scrape | None:
        """The newest scrape taken at or before `t`, from the fine ring when it reaches back
        that far, else the coarse one."""
        for ring in (self._fine, self._coarse):
            if ring and ring[0].at <= t:
                times = [s.at for s in ring]
                return ring[bisect.bisect_right(times, t) - 1]
        return None

    def oldest(self) -> Scrape | None:
        candidates = [r[0] for r in (self._fine, self._coarse) if r]
        return min(candidates, key=lambda s: s.at, default=None)

    def window(self, end: float, window: float) -> tuple[Scrape, Scrape] | None:
        """The two scrapes a rate over (end - window, end] compares; with less history than
        the window, the oldest scrape kept. None when there are not two distinct scrapes."""
        new = self.at_or_before(end)
        if new is None:
            return None
        old = self.at_or_before(end - window) or self.oldest()
        if old is None or old.at >= new.at:
            return None
        return old, new


def rates(
    ring: SampleRing,
    metric: str,
    *,
    window: float,
    end: float,
    group_by: Sequence[str],
    match: Mapping[str, str],
    selection: Selection | None = None,
) -> list[RateRow]:
    """sum(rate(metric{match}[window])) by (group_by), evaluated at `end`; pass one
    `selection` to many calls of the same query (a chart's steps)."""
    pair = ring.window(end, window)
    if pair is None:
        return []
    old, new = pair
    sel = selection or Selection(metric, match, group_by)
    before = old.by_metric.get(metric, {})
    scale = 1.0 / (new.at - old.at)
    groups: dict[tuple[str, ...], float] = {}
    for key, value in new.by_metric.get(metric, {}).items():
        group = sel.group_of(key)
        if group is None:
            continue
        prior = before.get(key)
        grown = value if prior is None or value < prior else value - prior
        groups[group] = groups.get(group, 0.0) + grown
    return [RateRow(dict(zip(group_by, g, strict=True)), v * scale) for g, v in groups.items()]


def histogram_quantile(q: float, buckets: Iterable[tuple[str, float]]) -> float | None:
    """PromQL's histogram_quantile over cumulative (le, count) pairs: linear interpolation
    inside the bucket the rank falls in; None without observations."""
    ordered = sorted(((_le(le), count) for le, count in buckets), key=lambda b: b[0])
    merged: list[tuple[float, float]] = []
    for le, count in ordered:
        if merged and merged[-1][0] == le:
            merged[-1] = (le, merged[-1][1] + count)
        else:
            merged.append((le, count))
    if not merged or merged[-1][1] <= 0:
        return None
    rank = q * merged[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for le, count in merged:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)
