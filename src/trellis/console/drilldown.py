"""Detail pages' data: request/error/latency series, Envoy config summaries, logs, traces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trellis.console.metrics_source import MetricsSource, RateQuery
from trellis.console.samples import DURATION_BUCKET, REQUESTS, Series, histogram_quantile

QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
MAX_TAIL_LINES = 5000


def entity_match(kind: str, namespace: str, name: str, direction: str) -> dict[str, str]:
    """Label selector for one workload/service/app's inbound or outbound requests."""
    if direction == "outbound":
        side = {"workloads": "source_workload", "apps": "source_app"}.get(kind, "source_app")
        return {"reporter": "source", side: name, "source_workload_namespace": namespace}
    side = {
        "workloads": "destination_workload",
        "apps": "destination_app",
        "services": "destination_service_name",
    }[kind]
    ns_key = (
        "destination_service_namespace" if kind == "services" else "destination_workload_namespace"
    )
    return {"reporter": "destination", side: name, ns_key: namespace}


def _series_json(series: Sequence[Series], extra: Mapping[str, str] | None = None) -> list[Any]:
    return [
        {
            "labels": {**s.labels, **(extra or {})},
            "datapoints": [[round(t, 3), v] for t, v in s.datapoints],
        }
        for s in series
    ]


async def metrics(
    source: MetricsSource,
    match: Mapping[str, str],
    *,
    start: float,
    end: float,
    step: float,
    window: float,
) -> dict[str, Any]:
    """Kiali's metrics answer: request_count, request_error_count, request_duration_millis."""
    count = RateQuery(REQUESTS, window, ("response_code",), match)
    by_code = await source.rate_series(count, start=start, end=end, step=step)
    total = _sum_series(by_code)
    errors = _sum_series([s for s in by_code if s.labels.get("response_code", "")[:1] in "45"])
    buckets = RateQuery(DURATION_BUCKET, window, ("le",), match)
    bucket_series = await source.rate_series(buckets, start=start, end=end, step=step)
    return {
        "request_count": _series_json(total),
        "request_error_count": _series_json(errors),
        "request_duration_millis": _quantile_series(bucket_series),
    }


def _sum_series(series: Sequence[Series]) -> list[Series]:
    if not series:
        return []
    points: dict[float, float] = {}
    for s in series:
        for t, v in s.datapoints:
            points[t] = points.get(t, 0.0) + v
    return [Series({}, sorted(points.items()))]


def _quantile_series(buckets: Sequence[Series]) -> list[Any]:
    by_time: dict[float, list[tuple[str, float]]] = {}
    for s in buckets:
        for t, v in s.datapoints:
            by_time.setdefault(t, []).append((s.labels.get("le", "+Inf"), v))
    out: list[Any] = []
    for stat, q in QUANTILES:
        points = [
            (t, value)
            for t, pairs in sorted(by_time.items())
            if (value := histogram_quantile(q, pairs)) is not None
        ]
        if points:
            out += _series_json([Series({}, points)], {"stat": stat})
    return out


# -- Envoy config ---------------------------------------------------------------------------


def listener_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    addr = item.get("address", {}).get("socketAddress", {})
    return {
        "name": item.get("name", ""),
        "address": f"{addr.get('address', '')}:{addr.get('portValue', '')}",
        "filterChains": len(item.get("filterChains", [])),
    }


def route_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": item.get("name", ""),
        "virtualHosts": [
            {
                "name": v.get("name", ""),
                "domains": list(v.get("domains", [])),
                "routes": len(v.get("routes", [])),
            }
            for v in item.get("virtualHosts", [])
        ],
    }


def cluster_summary(item: Mapping[str, Any], endpoints: Mapping[str, list[str]]) -> dict[str, Any]:
    name = str(item.get("name", ""))
    return {"name": name, "type": item.get("type", "EDS"), "endpoints": endpoints.get(name, [])}


def endpoint_addresses(items: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        addrs = []
        for group in item.get("endpoints", []):
            for lb in group.get("lbEndpoints", []):
                sock = lb.get("endpoint", {}).get("address", {}).get("socketAddress", {})
                addrs.append(f"{sock.get('address', '')}:{sock.get('portValue', '')}")
        out[str(item.get("clusterName", ""))] = addrs
    return out


# -- logs -----------------------------------------------------------------------------------


def log_path(workload_dir: Path, container: str) -> Path:
    """`trellis logs` reads the same files: app.log, or envoy.log for the proxy."""
    return workload_dir / ("envoy.log" if container == "proxy" else "app.log")


def tail(path: Path, lines: int) -> dict[str, Any]:
    """The last `lines` lines, read from the end so a big log costs little."""
    lines = max(1, min(lines, MAX_TAIL_LINES))
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - lines * 512))
            text = f.read().decode(errors="replace")
    except OSError:
        return {"entries": []}
    chosen = text.splitlines()[-lines:]
    return {"entries": [_entry(line) for line in chosen]}


def _entry(line: str) -> dict[str, Any]:
    """Envoy's access log starts `[2024-01-09T15:35:47.283Z] ...`: lift the timestamp."""
    if line.startswith("[") and "]" in line[:40]:
        stamp, _, rest = line[1:].partition("]")
        if stamp[:4].isdigit():
            return {"timestamp": stamp, "message": rest.strip()}
    return {"message": line}
