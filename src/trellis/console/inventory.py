"""Workloads, services and apps in Kiali's list/detail shapes, with health from request rates.

Pure: trellisd's records, the runtime's processes, stored resources and rate rows in; JSON out.
On the local runtime a workload has exactly one instance, shown as its one pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trellis.console.health import http_health
from trellis.console.samples import RateRow

HEALTH_GROUP = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service_name",
    "destination_service_namespace",
    "destination_app",
    "response_code",
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one API call needs about the mesh, fetched once."""

    workloads: Sequence[Mapping[str, Any]]  # trellisd records
    running: Mapping[tuple[str, str], Mapping[str, Any]]  # runtime processes
    services: Sequence[Mapping[str, Any]]  # stored Service resources (wire form)
    proxy_status: Mapping[tuple[str, str], str]
    rates: Sequence[RateRow]  # istio_requests_total grouped by HEALTH_GROUP

    def namespaces(self) -> list[str]:
        found = {str(w["namespace"]) for w in self.workloads}
        found |= {_meta(s)[1] for s in self.services}
        return sorted(found)


def _meta(resource: Mapping[str, Any]) -> tuple[str, str]:
    meta = resource.get("metadata", {})
    return str(meta.get("name", "")), str(meta.get("namespace", "default"))


def _codes(rows: Iterable[RateRow]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        code = r.labels.get("response_code") or "0"
        out[code] = out.get(code, 0.0) + r.value
    return out


def _requests(inbound: list[RateRow], outbound: list[RateRow]) -> dict[str, Any]:
    inb, outb = _codes(inbound), _codes(outbound)
    return {
        "status": http_health(inb or outb).value,
        "requests": {"inbound": {"http": inb}, "outbound": {"http": outb}},
    }


def workload_health(snap: Snapshot, namespace: str, name: str) -> dict[str, Any]:
    inbound = [
        r
        for r in snap.rates
        if r.labels.get("reporter") == "destination"
        and r.labels.get("destination_workload") == name
        and r.labels.get("destination_workload_namespace") == namespace
    ]
    outbound = [
        r
        for r in snap.rates
        if r.labels.get("reporter") == "source"
        and r.labels.get("source_workload") == name
        and r.labels.get("source_workload_namespace") == namespace
    ]
    return _requests(inbound, outbound)


def service_health(snap: Snapshot, namespace: str, name: str) -> dict[str, Any]:
    inbound = [
        r
        for r in snap.rates
        if r.labels.get("reporter") == "destination"
        and r.labels.get("destination_service_name") == name
        and r.labels.get("destination_service_namespace") == namespace
    ]
    return _requests(inbound, [])


def pod(snap: Snapshot, record: Mapping[str, Any]) -> dict[str, Any]:
    key = (str(record["namespace"]), str(record["name"]))
    proc = snap.running.get(key)
    status = "Unknown" if proc is None else ("Running" if proc.get("alive") else "Restarting")
    return {
        "name": record["name"],
        "namespace": record["namespace"],
        "ip": record.get("ip", ""),
        "status": status,
        "restarts": proc.get("restarts", 0) if proc else 0,
        "proxyStatus": snap.proxy_status.get(key, "NOT CONNECTED"),
        "labels": dict(record.get("labels", {})),
    }


def workload_item(snap: Snapshot, record: Mapping[str, Any]) -> dict[str, Any]:
    labels = dict(record.get("labels", {}))
    ns, name = str(record["namespace"]), str(record["name"])
    return {
        "name": name,
        "namespace": ns,
        "labels": labels,
        "app": labels.get("app", ""),
        "version": labels.get("version", ""),
        "pods": [pod(snap, record)],
        "istioSidecar": bool(record.get("hasSidecar", True)),
        "proxyStatus": snap.proxy_status.get((ns, name), "NOT CONNECTED"),
        "health": workload_health(snap, ns, name),
    }


def workloads_in(snap: Snapshot, namespace: str) -> list[Mapping[str, Any]]:
    return sorted(
        (w for w in snap.workloads if w["namespace"] == namespace), key=lambda w: str(w["name"])
    )


def workload_list(snap: Snapshot, namespace: str) -> dict[str, Any]:
    return {
        "namespace": {"name": namespace},
        "workloads": [workload_item(snap, w) for w in workloads_in(snap, namespace)],
    }


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_item(snap: Snapshot, service: Mapping[str, Any]) -> dict[str, Any]:
    name, ns = _meta(service)
    spec = service.get("spec", {})
    return {
        "name": name,
        "namespace": ns,
        "ip": spec.get("clusterIP", ""),
        "ports": list(spec.get("ports", [])),
        "selector": dict(spec.get("selector", {})),
        "health": service_health(snap, ns, name),
    }


def services_in(snap: Snapshot, namespace: str) -> list[Mapping[str, Any]]:
    return sorted((s for s in snap.services if _meta(s)[1] == namespace), key=lambda s: _meta(s)[0])


def service_workloads(snap: Snapshot, service: Mapping[str, Any]) -> list[dict[str, Any]]:
    selector = dict(service.get("spec", {}).get("selector", {}))
    _, ns = _meta(service)
    return [
        workload_item(snap, w)
        for w in workloads_in(snap, ns)
        if selects(selector, dict(w.get("labels", {})))
    ]


def app_names(snap: Snapshot, namespace: str) -> list[str]:
    return sorted(
        {str(w.get("labels", {}).get("app")) for w in workloads_in(snap, namespace)} - {"None", ""}
    )


def app_item(snap: Snapshot, namespace: str, app: str) -> dict[str, Any]:
    members = [w for w in workloads_in(snap, namespace) if w.get("labels", {}).get("app") == app]
    inbound = [
        r
        for r in snap.rates
        if r.labels.get("reporter") == "destination"
        and r.labels.get("destination_app") == app
        and r.labels.get("destination_workload_namespace") == namespace
    ]
    return {
        "name": app,
        "namespace": namespace,
        "workloads": [workload_item(snap, w) for w in members],
        "health": _requests(inbound, []),
    }


def refers_to_service(resource: Mapping[str, Any], name: str, namespace: str) -> bool:
    """A VirtualService or DestinationRule about this service (short name or FQDN)."""
    spec = resource.get("spec", {})
    hosts = list(spec.get("hosts", [])) + ([spec["host"]] if "host" in spec else [])
    _, res_ns = _meta(resource)
    fqdn = f"{name}.{namespace}.svc.cluster.local"
    short_ok = res_ns == namespace
    return any(h == fqdn or h == f"{name}.{namespace}" or (short_ok and h == name) for h in hosts)
