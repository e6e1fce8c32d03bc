"""The traffic graph in Kiali's JSON shape, from request rates grouped by Istio's labels.

Pure: rows in, a JSON-ready dict out. Mesh traffic is read from the destination's reports
(they know mTLS and the real callee); the source's reports fill in only destinations that
report nothing themselves (no sidecar, outside the mesh), as Kiali does.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trellis.console.health import HealthStatus, http_health, worst
from trellis.console.samples import RateRow, histogram_quantile

UNKNOWN = "unknown"
MUTUAL_TLS = "mutual_tls"
ENDPOINT_LABELS = (
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
)
REQUEST_GROUP = (*ENDPOINT_LABELS, "response_code", "response_flags", "connection_security_policy")
BUCKET_GROUP = (*ENDPOINT_LABELS, "le")
TCP_GROUP = (*ENDPOINT_LABELS, "connection_security_policy")
GATEWAY_WORKLOADS = frozenset({"istio-ingressgateway", "istio-egressgateway"})


class GraphType(enum.StrEnum):
    APP = "app"
    VERSIONED_APP = "versionedApp"
    WORKLOAD = "workload"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class GraphOptions:
    graph_type: GraphType
    namespaces: frozenset[str]
    duration_s: float
    inject_service_nodes: bool = True


@dataclass(frozen=True, slots=True)
class NodeSpec:
    id: str
    node_type: str
    namespace: str
    workload: str = ""
    app: str = ""
    version: str = ""
    service: str = ""

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "nodeType": self.node_type,
            "namespace": self.namespace,
        }
        for key in ("workload", "app", "version", "service"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


UNKNOWN_NODE = NodeSpec("unknown", "unknown", UNKNOWN, workload=UNKNOWN, app=UNKNOWN)


@dataclass
class EdgeTraffic:
    """What flowed over one edge: rates by code and flags, the mTLS share, latency buckets."""

    by_code: dict[str, float] = field(default_factory=dict)
    by_code_flags: dict[str, dict[str, float]] = field(default_factory=dict)
    mtls: float = 0.0
    buckets: dict[str, float] = field(default_factory=dict)
    tcp: float = 0.0  # bytes per second, both directions
    tcp_mtls: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.by_code.values())

    def add_request(self, row: RateRow) -> None:
        code = row.labels.get("response_code") or "0"
        flags = row.labels.get("response_flags") or "-"
        self.by_code[code] = self.by_code.get(code, 0.0) + row.value
        per_flag = self.by_code_flags.setdefault(code, {})
        per_flag[flags] = per_flag.get(flags, 0.0) + row.value
        if row.labels.get("connection_security_policy") == MUTUAL_TLS:
            self.mtls += row.value

    def add_tcp(self, row: RateRow) -> None:
        self.tcp += row.value
        if row.labels.get("connection_security_policy") == MUTUAL_TLS:
            self.tcp_mtls += row.value

    @property
    def active(self) -> bool:
        return self.total > 0 or self.tcp > 0 or bool(self.buckets)

    def add_bucket(self, row: RateRow) -> None:
        le = row.labels.get("le", "+Inf")
        self.buckets[le] = self.buckets.get(le, 0.0) + row.value


# -- nodes --------------------------------------------------------------------------------


def _side(labels: Mapping[str, str], side: str) -> tuple[str, str, str, str]:
    """(workload, namespace, app, version) of the source or destination."""
    ns_key = f"{side}_workload_namespace"
    return (
        labels.get(f"{side}_workload", UNKNOWN) or UNKNOWN,
        labels.get(ns_key, UNKNOWN) or UNKNOWN,
        labels.get(f"{side}_app", UNKNOWN) or UNKNOWN,
        labels.get(f"{side}_version", UNKNOWN) or UNKNOWN,
    )


def workload_node(graph_type: GraphType, wl: str, ns: str, app: str, version: str) -> NodeSpec:
    """The node a workload stands for in this graph type (an unlabelled workload stays a
    workload node in app graphs, as in Kiali)."""
    if wl == UNKNOWN:
        return UNKNOWN_NODE
    if graph_type is GraphType.WORKLOAD or app == UNKNOWN:
        return NodeSpec(
            f"workload_{ns}_{wl}",
            "workload",
            ns,
            workload=wl,
            app=_known(app),
            version=_known(version),
        )
    if graph_type is GraphType.VERSIONED_APP:
        suffix = f"_{version}" if version != UNKNOWN else ""
        return NodeSpec(
            f"app_{ns}_{app}{suffix}", "app", ns, workload=wl, app=app, version=_known(version)
        )
    if graph_type is GraphType.SERVICE and wl not in GATEWAY_WORKLOADS:
        return service_node(app, ns)
    return NodeSpec(f"app_{ns}_{app}", "app", ns, app=app)


def _known(value: str) -> str:
    return "" if value == UNKNOWN else value


def service_node(name: str, ns: str) -> NodeSpec:
    return NodeSpec(f"svc_{ns}_{name}", "service", ns, service=name)


def edge_path(labels: Mapping[str, str], options: GraphOptions) -> list[NodeSpec]:
    """The nodes one row's traffic passes, in order: source, [service], [destination]."""
    gt = options.graph_type
    source = workload_node(gt, *_side(labels, "source"))
    svc_name = labels.get("destination_service_name", UNKNOWN) or UNKNOWN
    svc_ns = labels.get("destination_service_namespace", UNKNOWN) or UNKNOWN
    svc = service_node(svc_name, svc_ns) if svc_name != UNKNOWN else None
    dest_wl = _side(labels, "destination")
    dest = workload_node(gt, *dest_wl) if dest_wl[0] != UNKNOWN else None
    if gt is GraphType.SERVICE:
        return [source, svc] if svc is not None else [source]
    if svc is not None and (options.inject_service_nodes or dest is None):
        return [source, svc] + ([dest] if dest is not None else [])
    return [source] + ([dest] if dest is not None else [])


# -- rows ---------------------------------------------------------------------------------


def chosen_rows(rows: Iterable[RateRow]) -> list[RateRow]:
    """Destination reports, plus source reports for services no destination reports on."""
    rows = list(rows)
    reported = {_service_key(r) for r in rows if r.labels.get("reporter") == "destination"}
    return [
        r
        for r in rows
        if r.labels.get("reporter") == "destination"
        or (r.labels.get("reporter") == "source" and _service_key(r) not in reported)
    ]


def _service_key(row: RateRow) -> tuple[str, str]:
    return (
        row.labels.get("destination_service_namespace", ""),
        row.labels.get("destination_service_name", ""),
    )


def _in_scope(labels: Mapping[str, str], namespaces: Collection[str]) -> bool:
    return any(
        labels.get(k) in namespaces
        for k in (
            "source_workload_namespace",
            "destination_service_namespace",
            "destination_workload_namespace",
        )
    )


# -- assembly -----------------------------------------------------------------------------


@dataclass
class _Builder:
    options: GraphOptions
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    edges: dict[tuple[str, str], EdgeTraffic] = field(default_factory=dict)

    def edges_of(self, row: RateRow) -> list[EdgeTraffic]:
        if not _in_scope(row.labels, self.options.namespaces):
            return []
        path = [n for n in edge_path(row.labels, self.options)]
        for node in path:
            self.nodes.setdefault(node.id, node)
        return [
            self.edges.setdefault((a.id, b.id), EdgeTraffic())
            for a, b in itertools.pairwise(path)
            if a.id != b.id
        ]


def build_graph(
    requests: Iterable[RateRow],
    buckets: Iterable[RateRow],
    options: GraphOptions,
    *,
    proxy_status: Mapping[tuple[str, str], str],
    timestamp: float,
    tcp: Iterable[RateRow] = (),
) -> dict[str, Any]:
    """Kiali's graph JSON. `requests` grouped by REQUEST_GROUP, `buckets` by BUCKET_GROUP;
    `tcp` byte rates by TCP_GROUP; `proxy_status` maps (namespace, workload) to
    SYNCED/STALE/NACK/NOT CONNECTED."""
    builder = _Builder(options)
    for row in chosen_rows(requests):
        for edge in builder.edges_of(row):
            edge.add_request(row)
    for row in chosen_rows(buckets):
        for edge in builder.edges_of(row):
            edge.add_bucket(row)
    for row in chosen_rows(tcp):
        for edge in builder.edges_of(row):
            edge.add_tcp(row)
    edges = {k: v for k, v in builder.edges.items() if v.active}
    return {
        "timestamp": int(timestamp),
        "duration": int(options.duration_s),
        "graphType": options.graph_type.value,
        "elements": {
            "nodes": [
                {"data": _node_data(n, edges, options, proxy_status)}
                for n in sorted(builder.nodes.values(), key=lambda n: n.id)
            ],
            "edges": [{"data": edge_data(src, dst, t)} for (src, dst), t in sorted(edges.items())],
        },
    }


def edge_data(source: str, target: str, traffic: EdgeTraffic) -> dict[str, Any]:
    if traffic.total <= 0 and traffic.tcp > 0:
        return tcp_edge_data(source, target, traffic)
    total = traffic.total
    health = http_health(traffic.by_code)
    data: dict[str, Any] = {
        "id": f"{source}->{target}",
        "source": source,
        "target": target,
        "traffic": {
            "protocol": "http",
            "rates": {"http": f"{total:.2f}", "httpPercentErr": f"{_error_percent(traffic):.1f}"},
            "responses": _responses(traffic),
        },
        "isMTLS": f"{(100.0 * traffic.mtls / total) if total > 0 else 0.0:.0f}",
        "healthStatus": health.value,
    }
    p95 = histogram_quantile(0.95, traffic.buckets.items())
    if p95 is not None:
        data["responseTime"] = f"{p95:.0f}"
    return data


def tcp_edge_data(source: str, target: str, traffic: EdgeTraffic) -> dict[str, Any]:
    """A TCP edge: bytes per second, the mTLS share; no health (Kiali has none for TCP)."""
    return {
        "id": f"{source}->{target}",
        "source": source,
        "target": target,
        "traffic": {"protocol": "tcp", "rates": {"tcp": f"{traffic.tcp:.2f}"}, "responses": {}},
        "isMTLS": f"{100.0 * traffic.tcp_mtls / traffic.tcp:.0f}",
        "healthStatus": HealthStatus.NA.value,
    }


def _error_percent(traffic: EdgeTraffic) -> float:
    total = traffic.total
    errors = sum(v for code, v in traffic.by_code.items() if code[:1] in ("4", "5", "0"))
    return 100.0 * errors / total if total > 0 else 0.0


def _responses(traffic: EdgeTraffic) -> dict[str, Any]:
    total = traffic.total or 1.0
    return {
        code: {"flags": {f: f"{100.0 * v / total:.1f}" for f, v in flags.items()}, "hosts": {}}
        for code, flags in sorted(traffic.by_code_flags.items())
    }


def _node_data(
    node: NodeSpec,
    edges: Mapping[tuple[str, str], EdgeTraffic],
    options: GraphOptions,
    proxy_status: Mapping[tuple[str, str], str],
) -> dict[str, Any]:
    data = node.data()
    inbound = [t for (_, dst), t in edges.items() if dst == node.id]
    outbound = [t for (src, _), t in edges.items() if src == node.id]
    data["healthStatus"] = _node_health(inbound or outbound).value
    if not inbound:
        data["isRoot"] = True
    if node.namespace not in options.namespaces and node is not UNKNOWN_NODE:
        data["isOutside"] = True
    if node.workload in GATEWAY_WORKLOADS:
        data["isGateway"] = True
    if node.workload and node.workload != UNKNOWN:
        status = proxy_status.get((node.namespace, node.workload), "NOT CONNECTED")
        data["proxyStatus"] = status
        data["proxySynced"] = status == "SYNCED"
    return data


def _node_health(traffic: Sequence[EdgeTraffic]) -> HealthStatus:
    merged: dict[str, float] = {}
    for t in traffic:
        for code, v in t.by_code.items():
            merged[code] = merged.get(code, 0.0) + v
    return worst([http_health(merged)])
