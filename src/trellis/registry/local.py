"""The one-machine registry: services from applied v1 Services, workloads from `trellis run`.

Service VIPs come from 240.240.0.0/16 (DESIGN §7) and are allocated once per service and kept,
so a restarted trellisd hands out the same addresses that hosts files already name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from trellis.api.base import Resource
from trellis.model.registry import Protocol, Service, ServicePort, Workload
from trellis.model.sidecar_scope import EXPORT_TO_ANNOTATION, parse_export_to

VIP_NETWORK = ipaddress.IPv4Network("240.240.0.0/16")


def allocate_vip(key: str, allocated: Mapping[str, str]) -> str:
    """The VIP already held by `key`, else the lowest free address of the VIP range."""
    if key in allocated:
        return allocated[key]
    used = set(allocated.values())
    for host in VIP_NETWORK.hosts():
        if host.packed[-1] in (0, 255) or str(host) in used:
            continue
        return str(host)
    raise RuntimeError("the service VIP range 240.240.0.0/16 is exhausted")


def service_from_resource(resource: Resource, vip: str) -> Service:
    """A registry Service from a core v1 Service resource."""
    spec: Any = getattr(resource, "spec", None)
    ports = tuple(
        ServicePort(
            name=p.name or "",
            port=p.port,
            target_port=p.target_port or p.port,
            protocol=Protocol.from_port(p.name or "", p.app_protocol or ""),
        )
        for p in (spec.ports if spec else [])
    )
    selector = dict(spec.selector or {}) if spec else {}
    return Service(
        name=resource.name,
        namespace=resource.namespace,
        vip=vip,
        ports=ports,
        selector=selector,
        export_to=parse_export_to(resource.metadata.annotations.get(EXPORT_TO_ANNOTATION)),
    )


def services_from_resources(
    resources: Iterable[Resource], vips: Mapping[str, str]
) -> tuple[Service, ...]:
    """Every v1 Service resource as a registry Service; `vips` must hold each one's address."""
    return tuple(
        service_from_resource(r, vips[service_key(r.namespace, r.name)])
        for r in resources
        if r.kind == "Service"
    )


def service_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def workload_to_record(w: Workload, *, netns: str = "") -> dict[str, Any]:
    """The JSON form trellisd persists (and the runtime sends) for one workload."""
    return {
        "name": w.name,
        "namespace": w.namespace,
        "ip": w.ip,
        "labels": dict(w.labels),
        "serviceAccount": w.service_account,
        "hasSidecar": w.has_sidecar,
        "ports": list(w.ports),
        "netns": netns,
    }


def workload_from_record(record: Mapping[str, Any]) -> Workload:
    return Workload(
        name=str(record["name"]),
        namespace=str(record.get("namespace", "default")),
        ip=str(record["ip"]),
        labels={str(k): str(v) for k, v in dict(record.get("labels", {})).items()},
        service_account=str(record.get("serviceAccount", "default")),
        has_sidecar=bool(record.get("hasSidecar", True)),
        ports=tuple(int(p) for p in record.get("ports", [])),
    )


def hosts_entries(services: Sequence[Service], namespace: str) -> list[tuple[str, list[str]]]:
    """/etc/hosts lines for a workload in `namespace`: each VIP with its Kubernetes names."""
    entries = []
    for s in sorted(services, key=lambda s: (s.namespace, s.name)):
        if s.host:  # a ServiceEntry host: its own name, when it has one address (no wildcard)
            if s.vip and "*" not in s.host:
                entries.append((s.vip, [s.host]))
            continue
        names = [s.hostname, f"{s.name}.{s.namespace}.svc", f"{s.name}.{s.namespace}"]
        if s.namespace == namespace:
            names.append(s.name)
        entries.append((s.vip, names))
    return entries
