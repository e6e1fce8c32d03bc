"""Where the console's numbers come from: its own scrape of the proxies, or a Prometheus.

Both answer the same two questions — rates now, and rates over time for charts — grouped by
Istio's labels, so the graph and the charts do not know which one they talk to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from trellis.console.samples import (
    RateRow,
    SampleRing,
    Scrape,
    Selection,
    Series,
    SeriesKey,
    proxy_series,
    rates,
)

log = logging.getLogger("trellis.console")
DEFAULT_SCRAPE_INTERVAL_S = 5.0
MAX_MISSED_SCRAPES = 3  # a proxy's last values stand in this long, so a blip is not a spike


@dataclass(frozen=True, slots=True)
class RateQuery:
    """sum(rate(metric{match}[window])) by (group_by), at `end` (None: now)."""

    metric: str
    window: float
    group_by: tuple[str, ...]
    match: Mapping[str, str] = field(default_factory=dict)
    end: float | None = None


class MetricsSource(Protocol):
    @property
    def description(self) -> str:
        """Where the numbers come from, for /api/status."""
        ...

    async def rates(self, query: RateQuery) -> list[RateRow]: ...

    async def rate_series(
        self, query: RateQuery, *, start: float, end: float, step: float
    ) -> list[Series]: ...


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One proxy's stats endpoint (HOST:PORT), named `namespace/name`."""

    namespace: str
    name: str
    address: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


TargetSource = Callable[[], Awaitable[list[ScrapeTarget]]]


class EmbeddedSource:
    """Scrapes every proxy's :15090/stats/prometheus itself and computes rates from the ring."""

    def __init__(
        self,
        targets: TargetSource,
        *,
        interval: float = DEFAULT_SCRAPE_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ring = SampleRing()
        self._targets = targets
        self._interval = interval
        self._clock = clock
        self._last: dict[str, tuple[int, dict[SeriesKey, float]]] = {}

    @property
    def description(self) -> str:
        return "embedded scrape"

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3.0)) as session:
            while True:
                try:
                    await self.scrape_once(session)
                except Exception as e:
                    log.warning("event=scrape-failed error=%s", e)
                await asyncio.sleep(self._interval)

    async def scrape_once(self, session: aiohttp.ClientSession) -> None:
        targets = await self._targets()
        texts = await asyncio.gather(*(_fetch(session, t) for t in targets))
        values: dict[SeriesKey, float] = {}
        seen: dict[str, tuple[int, dict[SeriesKey, float]]] = {}
        for target, text in zip(targets, texts, strict=True):
            missed, series = self._last.get(target.key, (0, {}))
            if text is not None:
                missed, series = 0, proxy_series(target.key, text)
            else:
                missed += 1
            if missed <= MAX_MISSED_SCRAPES:
                seen[target.key] = (missed, series)
                values.update(series)
        self._last = seen
        self.ring.add(Scrape(self._clock(), values))

    async def rates(self, query: RateQuery) -> list[RateRow]:
        end = query.end if query.end is not None else self._clock()
        return rates(
            self.ring,
            query.metric,
            window=query.window,
            end=end,
            group_by=query.group_by,
            match=query.match,
        )

    async def rate_series(
        self, query: RateQuery, *, start: float, end: float, step: float
    ) -> list[Series]:
        points: dict[tuple[str, ...], list[tuple[float, float]]] = {}
        labels_of: dict[tuple[str, ...], Mapping[str, str]] = {}
        selection = Selection(query.metric, query.match, query.group_by)
        t = start
        while t <= end:
            for row in rates(
                self.ring,
                query.metric,
                window=query.window,
                end=t,
                group_by=query.group_by,
                match=query.match,
                selection=selection,
            ):
                group = tuple(row.labels.get(g, "") for g in query.group_by)
                labels_of[group] = row.labels
                points.setdefault(group, []).append((t, row.value))
            t += step
        return [Series(labels_of[g], p) for g, p in points.items()]


async def _fetch(session: aiohttp.ClientSession, target: ScrapeTarget) -> str | None:
    try:
        async with session.get(f"http://{target.address}/stats/prometheus") as response:
            return await response.text() if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


def promql(query: RateQuery) -> str:
    """The PromQL a Prometheus answers the same question with."""
    selector = ",".join(f'{k}="{_quote(v)}"' for k, v in sorted(query.match.items()))
    inner = f"rate({query.metric}{{{selector}}}[{int(max(query.window, 1))}s])"
    return f"sum({inner}) by ({','.join(query.group_by)})"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class PrometheusSource:
    """Reads the same numbers from Prometheus (`--prometheus-url`, or `trellis up --prometheus`)."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url.rstrip("/")
        self._clock = clock

    @property
    def description(self) -> str:
        return self.url

    async def _get(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=10.0)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url + path, params=params) as response,
        ):
            body = await response.json(content_type=None)
        if not isinstance(body, dict) or body.get("status") != "success":
            raise RuntimeError(f"Prometheus refused the query: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def rates(self, query: RateQuery) -> list[RateRow]:
        end = query.end if query.end is not None else self._clock()
        result = await self._get("/api/v1/query", {"query": promql(query), "time": str(end)})
        return [RateRow(_labels(r, query.group_by), float(r["value"][1])) for r in result]

    async def rate_series(
        self, query: RateQuery, *, start: float, end: float, step: float
    ) -> list[Series]:
        params = {"query": promql(query), "start": str(start), "end": str(end), "step": str(step)}
        result = await self._get("/api/v1/query_range", params)
        return [
            Series(_labels(r, query.group_by), [(float(t), float(v)) for t, v in r["values"]])
            for r in result
        ]


def _labels(result: Mapping[str, Any], group_by: Sequence[str]) -> dict[str, str]:
    metric = result.get("metric", {})
    return {g: str(metric.get(g, "")) for g in group_by}
