"""The Kubernetes registry: core v1 Services, Pods and EndpointSlices as registry values.

Pure conversions over the API server's JSON (what the controller's watches deliver).
A Service's VIP is its clusterIP; its endpoints come from the Pods its selector matches
(as workloads, so the compiler's own selector logic applies); a Service without a selector
takes its endpoints from the EndpointSlices labelled with its name, as kube-proxy does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from trellis.model.registry import Endpoint, Protocol, Service, ServicePort, Workload
from trellis.model.sidecar_scope import EXPORT_TO_ANNOTATION, parse_export_to

PROXY_CONTAINER = "istio-proxy"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_GONE_PHASES = {"Succeeded", "Failed"}

KubeObject = Mapping[str, Any]


def _meta(obj: KubeObject) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def object_key(obj: KubeObject) -> str:
    """`namespace/name` (or `name` for cluster-scoped objects)."""
    meta = _meta(obj)
    namespace = meta.get("namespace") or ""
    return f"{namespace}/{meta.get('name', '')}" if namespace else str(meta.get("name", ""))


def service_port(port: Mapping[str, Any]) -> ServicePort:
    """A named targetPort (a container port name) is resolved per workload: fall back to the
    service port, as Istio does when a pod does not declare the name."""
    target = port.get("targetPort", port["port"])
    name = str(port.get("name") or "")
    return ServicePort(
        name=name,
        port=int(port["port"]),
        target_port=int(target) if isinstance(target, int) else int(port["port"]),
        protocol=Protocol.from_port(name, str(port.get("appProtocol") or "")),
    )


def service_from_object(
    obj: KubeObject, slices: Iterable[KubeObject] = (), *, domain: str = "cluster.local"
) -> Service | None:
    """A registry Service from a v1 Service; None for ExternalName services (no VIP, no pods)."""
    spec = obj.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    meta = _meta(obj)
    selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
    ports = tuple(service_port(p) for p in spec.get("ports") or [])
    cluster_ip = str(spec.get("clusterIP") or "")
    annotations = meta.get("annotations") or {}
    return Service(
        name=str(meta["name"]),
        namespace=str(meta.get("namespace") or "default"),
        vip="" if cluster_ip == "None" else cluster_ip,
        ports=ports,
        selector=selector,
        domain=domain,
        static_endpoints=() if selector else slice_endpoints(ports, slices),
        export_to=parse_export_to(annotations.get(EXPORT_TO_ANNOTATION)),
    )


def slice_endpoints(
    ports: tuple[ServicePort, ...], slices: Iterable[KubeObject]
) -> tuple[tuple[int, Endpoint], ...]:
    """Ready addresses of a selector-less Service's EndpointSlices, per service port (by name)."""
    out: list[tuple[int, Endpoint]] = []
    for eps in slices:
        namespace = str(_meta(eps).get("namespace") or "default")
        slice_ports = {str(p.get("name") or ""): int(p["port"]) for p in eps.get("ports") or []}
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            target = str((endpoint.get("targetRef") or {}).get("name") or "")
            for address in endpoint.get("addresses") or []:
                for sp in ports:
                    if sp.name in slice_ports:
                        number = slice_ports[sp.name]
                        ep = Endpoint(str(address), number, {}, target or str(address), namespace)
                        out.append((sp.port, ep))
    return tuple(sorted(out, key=lambda item: (item[0], item[1].address, item[1].port)))


def workload_from_pod(obj: KubeObject) -> Workload | None:
    """A registry Workload from a Pod with an IP; None while it has none, is not ready,
    is terminating or has ended."""
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ip = str(status.get("podIP") or "")
    if not ip or status.get("phase") in _GONE_PHASES or meta.get("deletionTimestamp"):
        return None
    if any(
        c.get("type") == "Ready" and c.get("status") == "False"
        for c in status.get("conditions") or []
    ):
        return None  # not ready: no traffic, as its EndpointSlice entry says ready=false
    containers = spec.get("containers") or []
    return Workload(
        name=str(meta["name"]),
        namespace=str(meta.get("namespace") or "default"),
        ip=ip,
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        service_account=str(spec.get("serviceAccountName") or "default"),
        has_sidecar=any(c.get("name") == PROXY_CONTAINER for c in containers),
        ports=tuple(
            sorted({int(p["containerPort"]) for c in containers for p in c.get("ports") or []})
        ),
    )


def slices_by_service(slices: Iterable[KubeObject]) -> dict[str, list[KubeObject]]:
    """EndpointSlices grouped by `namespace/service` (their kubernetes.io/service-name label)."""
    grouped: dict[str, list[KubeObject]] = {}
    for eps in slices:
        meta = _meta(eps)
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            grouped.setdefault(f"{meta.get('namespace') or 'default'}/{service}", []).append(eps)
    return grouped
