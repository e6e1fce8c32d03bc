"""Istio's standard metrics from Envoy's native stats (DESIGN.md §6, docs/DECISIONS.md).

Upstream Envoy has no `istio.stats` filter, so the agent rebuilds Istio's metrics at scrape
time from what Envoy counts anyway. Cost grows with clusters and callers, not with requests.

| Istio metric | from Envoy |
| --- | --- |
| istio_requests_total | cluster `upstream_rq_<code>`; server side per caller: inbound virtual clusters `vhost.inbound|http|PORT.vcluster.<peer>.upstream_rq_<code>` |
| istio_request_duration_milliseconds | cluster / virtual cluster `upstream_rq_time` |
| istio_request_bytes, istio_response_bytes | cluster `upstream_rq_body_size`, `upstream_rs_body_size` (track_cluster_stats) |
| istio_tcp_connections_opened_total / _closed_total | TCP cluster `upstream_cx_total` / `upstream_cx_destroy` |
| istio_tcp_received_bytes_total / _sent_bytes_total | TCP cluster `upstream_cx_tx_bytes_total` / `upstream_cx_rx_bytes_total` (request / response direction) |

Pure: Envoy's Prometheus text (admin `/stats/prometheus`), the proxy's `Workload` and the
Telemetry metrics overrides in; exposition text out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from trellis.model.names import ClusterName, Direction
from trellis.telemetry.destinations import DestinationWorkload
from trellis.telemetry.istio_labels import (
    LABEL_NAMES,
    MUTUAL_TLS,
    NO_TLS,
    NOBODY_KNOWN,
    UNKNOWN,
    Workload,
    destination_reported,
    request_labels,
)
from trellis.telemetry.metric_config import NO_OVERRIDES, MetricsConfig
from trellis.telemetry.peer import PLAINTEXT_PEER, PeerIdentity
from trellis.telemetry.prom_text import EnvoySample, parse_envoy_text, sample_line

REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
REQUEST_BYTES = "istio_request_bytes"
RESPONSE_BYTES = "istio_response_bytes"
TCP_SENT = "istio_tcp_sent_bytes_total"
TCP_RECEIVED = "istio_tcp_received_bytes_total"
TCP_OPENED = "istio_tcp_connections_opened_total"
TCP_CLOSED = "istio_tcp_connections_closed_total"

# Prometheus name -> (type, Telemetry API enum), in output order.
FAMILIES: Mapping[str, tuple[str, str]] = {
    REQUESTS_TOTAL: ("counter", "REQUEST_COUNT"),
    REQUEST_DURATION: ("histogram", "REQUEST_DURATION"),
    REQUEST_BYTES: ("histogram", "REQUEST_SIZE"),
    RESPONSE_BYTES: ("histogram", "RESPONSE_SIZE"),
    TCP_OPENED: ("counter", "TCP_OPENED_CONNECTIONS"),
    TCP_CLOSED: ("counter", "TCP_CLOSED_CONNECTIONS"),
    TCP_SENT: ("counter", "TCP_SENT_BYTES"),
    TCP_RECEIVED: ("counter", "TCP_RECEIVED_BYTES"),
}

_CLUSTER = "envoy_cluster_name"
_CODE = "envoy_response_code"
_RQ = "envoy_cluster_upstream_rq"
_VC_RQ = "envoy_vhost_vcluster_upstream_rq"
_VHOST = "envoy_virtual_host"
_VCLUSTER = "envoy_virtual_cluster"
_INBOUND_VHOST = "inbound|http|"
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_CLUSTER_HISTOGRAMS = {
    "envoy_cluster_upstream_rq_time": REQUEST_DURATION,
    "envoy_cluster_upstream_rq_body_size": REQUEST_BYTES,
    "envoy_cluster_upstream_rs_body_size": RESPONSE_BYTES,
}
_SIZE_HISTOGRAM = "envoy_cluster_upstream_rq_body_size"
_TCP_COUNTERS = {
    "envoy_cluster_upstream_cx_total": TCP_OPENED,
    "envoy_cluster_upstream_cx_destroy": TCP_CLOSED,
    "envoy_cluster_upstream_cx_tx_bytes_total": TCP_RECEIVED,
    "envoy_cluster_upstream_cx_rx_bytes_total": TCP_SENT,
}
_VC_TIME = "envoy_vhost_vcluster_upstream_rq_time"

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _Series:
    """Istio series being summed: clusters that differ only in port share Istio's labels."""

    destinations: Mapping[str, DestinationWorkload]
    values: dict[tuple[str, Labels], float] = field(default_factory=lambda: defaultdict(float))

    def behind(self, cluster: ClusterName) -> DestinationWorkload:
        return self.destinations.get(str(cluster), NOBODY_KNOWN)

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        self.values[(name, tuple(labels.items()))] += value


def translate(
    workload: Workload,
    samples: Iterable[EnvoySample],
    config: MetricsConfig = NO_OVERRIDES,
    destinations: Mapping[str, DestinationWorkload] | None = None,
) -> str:
    """Istio's standard metrics as Prometheus text, with the Telemetry overrides applied;
    `destinations`: per outbound cluster, who answers behind it (telemetry/destinations.py)."""
    envoy = list(samples)
    series = _Series(destinations or {})
    by_peer = _ports_counted_by_peer(envoy)
    tcp = _tcp_clusters(envoy)
    for sample in envoy:
        if sample.name.startswith("envoy_vhost_vcluster_"):
            _translate_virtual_cluster(workload, sample, series)
            continue
        cluster = _service_cluster(sample)
        if cluster is None:
            continue
        if sample.labels[_CLUSTER] in tcp:
            _translate_tcp(workload, cluster, sample, series)
        else:
            counted = cluster.direction is Direction.INBOUND and cluster.port in by_peer
            _translate_http(workload, cluster, sample, series, per_peer=counted)
    return render(series.values, config)


def _translate_http(
    workload: Workload,
    cluster: ClusterName,
    sample: EnvoySample,
    series: _Series,
    *,
    per_peer: bool,
) -> None:
    """`per_peer`: the inbound port's requests and durations come from its virtual clusters,
    which know the caller; the cluster's own copies would count them twice."""
    labels = request_labels(workload, cluster, series.behind(cluster))
    if sample.name == _RQ and sample.labels.get(_CODE, "").isdigit():
        if not per_peer:
            series.add(
                REQUESTS_TOTAL, {**labels, "response_code": sample.labels[_CODE]}, sample.value
            )
        return
    base, suffix = _histogram_part(sample.name)
    family = _CLUSTER_HISTOGRAMS.get(base)
    if family is None or (per_peer and family == REQUEST_DURATION):
        return
    series.add(family + suffix, _with_le(labels, sample, suffix), sample.value)


def _translate_tcp(
    workload: Workload, cluster: ClusterName, sample: EnvoySample, series: _Series
) -> None:
    family = _TCP_COUNTERS.get(sample.name)
    if family is None:
        return
    labels = request_labels(workload, cluster, series.behind(cluster))
    labels["request_protocol"] = "tcp"
    del labels["response_code"]  # Istio's TCP metrics have none
    series.add(family, labels, sample.value)


def _translate_virtual_cluster(workload: Workload, sample: EnvoySample, series: _Series) -> None:
    """Server side, per caller: the virtual cluster names the peer (or `other`/`plaintext`)."""
    if not sample.labels.get(_VHOST, "").startswith(_INBOUND_VHOST):
        return
    caller = sample.labels.get(_VCLUSTER, "")
    peer = PeerIdentity.parse(caller)
    security = NO_TLS if caller == PLAINTEXT_PEER else MUTUAL_TLS
    labels = destination_reported(workload, peer=peer, security=security)
    if sample.name == _VC_RQ and sample.labels.get(_CODE, "").isdigit():
        series.add(REQUESTS_TOTAL, {**labels, "response_code": sample.labels[_CODE]}, sample.value)
        return
    base, suffix = _histogram_part(sample.name)
    if base == _VC_TIME:
        series.add(REQUEST_DURATION + suffix, _with_le(labels, sample, suffix), sample.value)


def _ports_counted_by_peer(samples: list[EnvoySample]) -> set[int]:
    """Inbound ports whose route has per-caller virtual clusters (compiler/peer_stats.py)."""
    ports: set[int] = set()
    for sample in samples:
        vhost = sample.labels.get(_VHOST, "")
        if sample.name == _VC_RQ and vhost.startswith(_INBOUND_VHOST):
            port = vhost.removeprefix(_INBOUND_VHOST)
            if port.isdigit():
                ports.add(int(port))
    return ports


def _tcp_clusters(samples: list[EnvoySample]) -> set[str]:
    """Clusters only a tcp_proxy used: connections, but no per-code responses and none of the
    size histograms the compiler turns on for HTTP ports (compiler/telemetry.py). Envoy's TCP
    pool counts `upstream_rq_total` per connection too, so that one cannot tell them apart."""
    http: set[str] = set()
    connected: set[str] = set()
    for sample in samples:
        name = sample.labels.get(_CLUSTER)
        if name is None:
            continue
        answered = sample.name == _RQ and sample.value > 0  # per response code: a router's
        if answered or sample.name.startswith(_SIZE_HISTOGRAM):
            http.add(name)
        elif sample.name == "envoy_cluster_upstream_cx_total" and sample.value > 0:
            connected.add(name)
    return connected - http


def render(values: Mapping[tuple[str, Labels], float], config: MetricsConfig = NO_OVERRIDES) -> str:
    """Exposition text: per family a TYPE line and its series, after the overrides (a disabled
    metric is left out; a removed or set label may merge series, whose values are summed).
    A histogram series appears once it has observations."""
    families: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
    for (name, pairs), value in values.items():
        family = _family(name)
        labels = dict(pairs)
        reporter = labels.get("reporter", "")
        enum = FAMILIES[family][1]
        if not config.enabled(enum, reporter):
            continue
        le = labels.pop("le", None)
        labels = config.relabel(enum, reporter, labels)
        if le is not None:
            labels["le"] = le
        families[name][tuple(labels.items())] += value
    out: list[str] = []
    for family, (kind, enum) in FAMILIES.items():
        if not (config.enabled(enum, "source") or config.enabled(enum, "destination")):
            continue
        out.append(f"# TYPE {family} {kind}")
        if kind == "counter":
            out += [sample_line(family, dict(ls), v) for ls, v in families[family].items()]
        else:
            out += _histogram_lines(family, families)
    return "\n".join(out) + "\n"


def _histogram_lines(family: str, families: Mapping[str, Mapping[Labels, float]]) -> list[str]:
    used = {ls for ls, v in families.get(family + "_count", {}).items() if v > 0}
    lines = []
    for suffix in _HISTOGRAM_SUFFIXES:
        for labels, value in families.get(family + suffix, {}).items():
            if tuple(p for p in labels if p[0] != "le") in used:
                lines.append(sample_line(family + suffix, dict(labels), value))
    return lines


def _family(name: str) -> str:
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in FAMILIES:
            return name.removesuffix(suffix)
    return name


def _histogram_part(name: str) -> tuple[str, str]:
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix), suffix
    return name, ""


def _with_le(labels: Mapping[str, str], sample: EnvoySample, suffix: str) -> dict[str, str]:
    if suffix != "_bucket":
        return dict(labels)
    return {**labels, "le": sample.labels.get("le", "+Inf")}


def clusters_with_traffic(samples: Iterable[EnvoySample]) -> set[str]:
    """Outbound service clusters that counted anything: the ones worth naming a destination."""
    return {
        str(cluster)
        for sample in samples
        if sample.value > 0
        and (cluster := _service_cluster(sample)) is not None
        and cluster.direction is Direction.OUTBOUND
    }


def _service_cluster(sample: EnvoySample) -> ClusterName | None:
    name = sample.labels.get(_CLUSTER)
    if name is None or not sample.name.startswith("envoy_cluster_upstream_"):
        return None
    try:
        return ClusterName.parse(name)
    except ValueError:
        return None  # xds-grpc, PassthroughCluster, BlackHoleCluster...


__all__ = [
    "FAMILIES",
    "LABEL_NAMES",
    "REQUESTS_TOTAL",
    "REQUEST_DURATION",
    "UNKNOWN",
    "EnvoySample",
    "Workload",
    "clusters_with_traffic",
    "parse_envoy_text",
    "render",
    "request_labels",
    "translate",
]
