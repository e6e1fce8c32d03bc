"""Istio's standard request metrics from Envoy's native cluster stats (DESIGN.md §6).

Upstream Envoy has no `istio.stats` filter, so the agent rebuilds `istio_requests_total` and
`istio_request_duration_milliseconds` at scrape time: the cluster name says where a request went
(`outbound|PORT|SUBSET|HOST` -> reporter "source", `inbound|PORT||` -> reporter "destination",
model/names.py) and the agent knows its own workload. Cost grows with clusters, not requests.

Pure: Envoy's Prometheus text (admin `/stats/prometheus`) and a `Workload` in, exposition text
out. What cannot be known per request is `unknown`, as Istio reports for non-mesh peers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from trellis.model.names import ClusterName, Direction

UNKNOWN = "unknown"
REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"

# The order Istio's labels appear in; every sample carries all of them.
LABEL_NAMES = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
)

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_RQ = "envoy_cluster_upstream_rq"
_RQ_TIME = "envoy_cluster_upstream_rq_time"
_CLUSTER = "envoy_cluster_name"
_CODE = "envoy_response_code"


@dataclass(frozen=True, slots=True)
class Workload:
    """The proxy's own workload: what the agent knows without asking anyone."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    trust_domain: str = "cluster.local"

    @property
    def principal(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def app(self) -> str:
        return self.labels.get("app") or UNKNOWN

    @property
    def version(self) -> str:
        return self.labels.get("version") or UNKNOWN

    @property
    def service_host(self) -> str:
        """The service that selects this workload, taken from its `app` label (Istio's
        canonical service) in its own namespace; the agent is told no service names."""
        app = self.labels.get("app")
        return f"{app}.{self.namespace}.svc.{self.trust_domain}" if app else UNKNOWN


@dataclass(frozen=True, slots=True)
class EnvoySample:
    """One line of Envoy's Prometheus output."""

    name: str
    labels: Mapping[str, str]
    value: float


def parse_envoy_text(text: str) -> Iterator[EnvoySample]:
    """The samples of a Prometheus text exposition; comments and malformed lines are skipped."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line.strip())
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        pairs = {k: _unescape(v) for k, v in _LABEL.findall(labels or "")}
        yield EnvoySample(name, pairs, number)


def request_labels(workload: Workload, cluster: ClusterName) -> dict[str, str]:
    """Istio's labels (minus response_code) for requests through one service cluster."""
    if cluster.direction is Direction.OUTBOUND:
        name, _, rest = cluster.host.partition(".")
        namespace = rest.split(".", 1)[0] if rest else UNKNOWN
        return _labels(
            reporter="source",
            source=workload,
            destination_workload=UNKNOWN,
            destination_namespace=namespace if rest else UNKNOWN,
            destination_principal=UNKNOWN,
            destination_app=UNKNOWN,
            destination_version=cluster.subset or UNKNOWN,
            destination_service=cluster.host,
            destination_service_name=name or UNKNOWN,
        )
    service = workload.service_host
    return _labels(
        reporter="destination",
        source=None,
        destination_workload=workload.name,
        destination_namespace=workload.namespace,
        destination_principal=workload.principal,
        destination_app=workload.app,
        destination_version=workload.version,
        destination_service=service,
        destination_service_name=service.split(".", 1)[0] if service != UNKNOWN else UNKNOWN,
    )


def _labels(
    *,
    reporter: str,
    source: Workload | None,
    destination_workload: str,
    destination_namespace: str,
    destination_principal: str,
    destination_app: str,
    destination_version: str,
    destination_service: str,
    destination_service_name: str,
) -> dict[str, str]:
    service_namespace = destination_namespace if destination_service != UNKNOWN else UNKNOWN
    return {
        "reporter": reporter,
        "source_workload": source.name if source else UNKNOWN,
        "source_workload_namespace": source.namespace if source else UNKNOWN,
        "source_principal": source.principal if source else UNKNOWN,
        "source_app": source.app if source else UNKNOWN,
        "source_version": source.version if source else UNKNOWN,
        "destination_workload": destination_workload,
        "destination_workload_namespace": destination_namespace,
        "destination_principal": destination_principal,
        "destination_app": destination_app,
        "destination_version": destination_version,
        "destination_service": destination_service,
        "destination_service_name": destination_service_name,
        "destination_service_namespace": service_namespace,
        "request_protocol": "http",
        "response_code": UNKNOWN,
        "response_flags": "-",
        "connection_security_policy": UNKNOWN,
    }


def translate(workload: Workload, samples: Iterable[EnvoySample]) -> str:
    """Istio's request metrics as Prometheus text, from Envoy's per-cluster stats.

    Counters come from `upstream_rq_<code>`; the duration histogram from `upstream_rq_time`,
    which Envoy keeps per cluster, not per code, so its response_code is `unknown`. Clusters
    that differ only in port share Istio's labels, so their values are summed.
    """
    series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in samples:
        cluster = _service_cluster(sample)
        if cluster is None:
            continue
        labels = request_labels(workload, cluster)
        if sample.name == _RQ and sample.labels.get(_CODE, "").isdigit():
            labels["response_code"] = sample.labels[_CODE]
            name = REQUESTS_TOTAL
        elif sample.name in (_RQ_TIME + "_bucket", _RQ_TIME + "_sum", _RQ_TIME + "_count"):
            name = REQUEST_DURATION + sample.name.removeprefix(_RQ_TIME)
            if name.endswith("_bucket"):
                labels["le"] = sample.labels.get("le", "+Inf")
        else:
            continue
        key = (name, tuple(labels.items()))
        series[key] = series.get(key, 0.0) + sample.value
    used = {pairs for (name, pairs), value in series.items() if _is_used(name, value)}
    out = [f"# TYPE {REQUESTS_TOTAL} counter"]
    out += [_line(n, dict(ls), v) for (n, ls), v in series.items() if n == REQUESTS_TOTAL]
    out.append(f"# TYPE {REQUEST_DURATION} histogram")
    for (name, pairs), value in series.items():
        if name != REQUESTS_TOTAL and _without_le(pairs) in used:
            out.append(_line(name, dict(pairs), value))
    return "\n".join(out) + "\n"


def _is_used(name: str, value: float) -> bool:
    """A histogram is shown once it has observations (TCP clusters never get any)."""
    return name == REQUEST_DURATION + "_count" and value > 0


def _without_le(labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(pair for pair in labels if pair[0] != "le")


def _service_cluster(sample: EnvoySample) -> ClusterName | None:
    name = sample.labels.get(_CLUSTER)
    if name is None or not sample.name.startswith(_RQ):
        return None
    try:
        return ClusterName.parse(name)
    except ValueError:
        return None  # xds-grpc, PassthroughCluster, BlackHoleCluster...


def _line(name: str, labels: Mapping[str, str], value: float) -> str:
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    number = str(int(value)) if value.is_integer() else repr(value)
    return f"{name}{{{body}}} {number}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
