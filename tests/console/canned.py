"""Canned console API answers (docs/console-api.md shapes) for the web UI's own tests.

A 50-node mesh: an ingress gateway, an unknown source and 48 services `svc-00`..`svc-47` in a
call tree, with every health colour and a mix of mTLS and plaintext edges.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "shop"
SERVICES = [f"svc-{i:02d}" for i in range(48)]
GRAPH_NODES = len(SERVICES) + 2
HEALTH_BY_INDEX = {3: "Degraded", 7: "Failure", 11: "Degraded"}
NO_TRAFFIC = {47}


def _parent(i: int) -> str:
    """Tree of fan-out 3 under svc-00; svc-00 is called by the gateway."""
    return SERVICES[(i - 1) // 3] if i else "ingress"


def _node_id(name: str, graph_type: str) -> str:
    return f"{graph_type}:{NAMESPACE}:{name}"


def _service_node(i: int, graph_type: str) -> dict[str, Any]:
    name = SERVICES[i]
    data: dict[str, Any] = {"id": _node_id(name, graph_type), "namespace": NAMESPACE}
    if graph_type == "service":
        data |= {"nodeType": "service", "service": name}
    elif graph_type == "workload":
        data |= {"nodeType": "workload", "workload": f"{name}-v1", "app": name, "version": "v1"}
    else:
        data |= {"nodeType": "app", "app": name, "workload": f"{name}-v1"}
        if graph_type == "versionedApp":
            data["version"] = "v1"
    status = "NA" if i in NO_TRAFFIC else HEALTH_BY_INDEX.get(i, "Healthy")
    data |= {"healthStatus": status, "proxySynced": i != 11}
    return {"data": data}


def _edge(source: str, target: str, i: int) -> dict[str, Any]:
    err = {3: "2.5", 7: "15.0", 11: "1.0"}.get(i, "0.0")
    return {
        "data": {
            "id": f"{source}->{target}",
            "source": source,
            "target": target,
            "traffic": {
                "protocol": "http",
                "rates": {"http": f"{10.0 / (i + 1):.2f}", "httpPercentErr": err},
                "responses": {"200": {"flags": {"-": "100.0"}, "hosts": {}}},
            },
            "responseTime": str(5 + i),
            "isMTLS": "0" if i % 5 == 4 else "100",
            "healthStatus": HEALTH_BY_INDEX.get(i, "Healthy"),
        }
    }


def graph(graph_type: str, duration: str) -> dict[str, Any]:
    ingress = {
        "data": {
            "id": "ingress",
            "nodeType": "workload",
            "namespace": "istio-system",
            "workload": "istio-ingressgateway",
            "app": "istio-ingressgateway",
            "isRoot": True,
            "isOutside": True,
            "isGateway": True,
            "healthStatus": "Healthy",
            "proxySynced": True,
        }
    }
    unknown = {
        "data": {
            "id": "unknown",
            "nodeType": "unknown",
            "namespace": "unknown",
            "isRoot": True,
            "healthStatus": "NA",
        }
    }
    nodes = [ingress, unknown] + [_service_node(i, graph_type) for i in range(len(SERVICES))]
    edges = [
        _edge(
            _node_id(_parent(i), graph_type) if i else "ingress",
            _node_id(SERVICES[i], graph_type),
            i,
        )
        for i in range(len(SERVICES))
        if i not in NO_TRAFFIC
    ]
    edges.append(_edge("unknown", _node_id(SERVICES[0], graph_type), 1))
    return {
        "timestamp": 1_764_000_000,
        "duration": int(duration.rstrip("s") or 60),
        "graphType": graph_type,
        "elements": {"nodes": nodes, "edges": edges},
    }


def _health(i: int) -> dict[str, Any]:
    return {"status": HEALTH_BY_INDEX.get(i, "Healthy"), "requests": {}}


def workloads() -> dict[str, Any]:
    return {
        "namespace": {"name": NAMESPACE},
        "workloads": [
            {
                "name": f"{s}-v1",
                "labels": {"app": s, "version": "v1"},
                "app": s,
                "version": "v1",
                "pods": [f"{s}-v1-0"],
                "istioSidecar": True,
                "proxyStatus": "STALE" if i == 11 else "SYNCED",
                "health": _health(i),
            }
            for i, s in enumerate(SERVICES)
        ],
    }


def workload(name: str) -> dict[str, Any]:
    app = name.removesuffix("-v1")
    return {
        "name": name,
        "labels": {"app": app, "version": "v1"},
        "app": app,
        "version": "v1",
        "istioSidecar": True,
        "proxyStatus": "SYNCED",
        "health": {"status": "Healthy"},
        "services": [{"name": app}],
        "pods": [
            {"name": f"{name}-0", "ip": "198.18.0.10", "status": "Running", "proxyStatus": "SYNCED"}
        ],
    }


def services() -> dict[str, Any]:
    return {
        "services": [
            {
                "name": s,
                "namespace": NAMESPACE,
                "ip": f"240.240.0.{i + 1}",
                "ports": [{"name": "http", "port": 9080, "protocol": "HTTP"}],
                "selector": {"app": s},
                "health": _health(i),
            }
            for i, s in enumerate(SERVICES)
        ]
    }


def service(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "ip": "240.240.0.1",
        "ports": [{"name": "http", "port": 9080, "protocol": "HTTP"}],
        "selector": {"app": name},
        "health": {"status": "Healthy"},
        "workloads": [{"name": f"{name}-v1", "proxyStatus": "SYNCED"}],
        "virtualServices": [
            {"kind": "VirtualService", "metadata": {"name": name, "namespace": NAMESPACE}}
        ],
        "destinationRules": [],
    }


def apps() -> dict[str, Any]:
    return {
        "applications": [
            {"name": s, "workloads": [{"name": f"{s}-v1"}], "health": _health(i)}
            for i, s in enumerate(SERVICES)
        ]
    }


def app(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "workloads": [{"name": f"{name}-v1", "proxyStatus": "SYNCED"}],
        "health": {"status": "Healthy"},
    }


def _series(base: float, labels: dict[str, str]) -> dict[str, Any]:
    t0 = 1_764_000_000
    return {
        "labels": labels,
        "datapoints": [[t0 + 15 * k, round(base * (1 + (k % 7) / 10), 3)] for k in range(40)],
    }


def metrics() -> dict[str, Any]:
    return {
        "request_count": [_series(4.0, {})],
        "request_error_count": [_series(0.2, {})],
        "request_duration_millis": [
            _series(b, {"stat": s}) for s, b in (("p50", 5.0), ("p95", 20.0), ("p99", 40.0))
        ],
    }


def config_dump() -> dict[str, Any]:
    return {
        "listeners": [
            {"name": "virtualInbound", "address": "0.0.0.0:15006", "filterChains": 3},
            {"name": "0.0.0.0_9080", "address": "0.0.0.0:9080", "filterChains": 1},
        ],
        "routes": [
            {
                "name": "9080",
                "virtualHosts": [
                    {
                        "name": "svc-01.shop.svc.cluster.local:9080",
                        "domains": ["svc-01"],
                        "routes": 1,
                    }
                ],
            }
        ],
        "clusters": [
            {
                "name": "outbound|9080||svc-01.shop.svc.cluster.local",
                "type": "EDS",
                "endpoints": ["198.18.0.11:9080"],
            }
        ],
    }


def logs(container: str) -> dict[str, Any]:
    return {
        "entries": [
            {"timestamp": f"2026-11-25T10:00:0{i}Z", "message": f"{container} line {i}"}
            for i in range(5)
        ]
    }


def traces(workload_name: str) -> dict[str, Any]:
    spans = [
        {
            "spanID": "a",
            "operationName": "GET /",
            "startTime": 1_000_000,
            "duration": 40_000,
            "processID": "p1",
            "references": [],
        },
        {
            "spanID": "b",
            "operationName": "GET /items",
            "startTime": 1_005_000,
            "duration": 20_000,
            "processID": "p2",
            "references": [{"refType": "CHILD_OF", "spanID": "a"}],
        },
        {
            "spanID": "c",
            "operationName": "GET /price",
            "startTime": 1_026_000,
            "duration": 10_000,
            "processID": "p2",
            "references": [{"refType": "CHILD_OF", "spanID": "a"}],
        },
    ]
    processes = {"p1": {"serviceName": workload_name}, "p2": {"serviceName": "svc-01"}}
    return {"data": [{"traceID": "t1", "spans": spans, "processes": processes}]}
