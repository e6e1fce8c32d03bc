"""The control-plane bench's mesh: N services, each with 3 workloads, a DestinationRule with two
subsets and a 90/10 VirtualService, spread over a few namespaces.

Loaded straight into trellisd's sqlite store (the same rows `trellis apply` and `trellis run`
write) before trellisd starts, so a 5 000-service mesh is ready in seconds instead of 15 000
separate registrations, each of which would rebuild the snapshot.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trellis.api.kinds import parse_resource
from trellis.controlplane.state import VIPS, WORKLOADS
from trellis.model.registry import Workload
from trellis.registry.local import service_key, workload_to_record
from trellis.store.sqlite import SqliteStore

PORT = 9080
REPLICAS = 3  # endpoints per service: two v1, one v2
_POD_NET = ipaddress.IPv4Network("198.18.0.0/15")
_VIP_NET = ipaddress.IPv4Network("240.240.0.0/16")


@dataclass(frozen=True, slots=True)
class MeshShape:
    services: int
    namespaces: int = 5

    def namespace(self, i: int) -> str:
        return f"bench-{i % self.namespaces}"

    def service(self, i: int) -> str:
        return f"svc-{i}"


def _nth_address(network: ipaddress.IPv4Network, n: int) -> str:
    """The n-th usable address, skipping .0 and .255 so none looks like a network/broadcast."""
    offset = (n // 254) * 256 + n % 254 + 1
    return str(network.network_address + offset)


def workload_ip(service: int, replica: int) -> str:
    return _nth_address(_POD_NET, service * REPLICAS + replica + 256)


def workloads(shape: MeshShape, i: int) -> Iterator[Workload]:
    for r in range(REPLICAS):
        yield Workload(
            name=f"{shape.service(i)}-{r}",
            namespace=shape.namespace(i),
            ip=workload_ip(i, r),
            labels={"app": shape.service(i), "version": "v1" if r < REPLICAS - 1 else "v2"},
            ports=(PORT,),
        )


def virtual_service(shape: MeshShape, i: int, v1_weight: int = 90) -> dict[str, Any]:
    name, namespace = shape.service(i), shape.namespace(i)
    route = [
        {"destination": {"host": name, "subset": "v1"}, "weight": v1_weight},
        {"destination": {"host": name, "subset": "v2"}, "weight": 100 - v1_weight},
    ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [name], "http": [{"route": route}]},
    }


def service_docs(shape: MeshShape, i: int) -> list[dict[str, Any]]:
    name, namespace = shape.service(i), shape.namespace(i)
    meta = {"name": name, "namespace": namespace}
    subsets = [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": PORT}]},
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": meta,
            "spec": {"host": name, "subsets": subsets},
        },
        virtual_service(shape, i),
    ]


def populate(db_path: Path, shape: MeshShape) -> None:
    """Write every resource, VIP and workload record of the mesh into a fresh store."""
    store = SqliteStore(db_path)
    try:
        docs = [d for i in range(shape.services) for d in service_docs(shape, i)]
        store.apply([parse_resource(d) for d in docs])
        for i in range(shape.services):
            key = service_key(shape.namespace(i), shape.service(i))
            store.put_record(VIPS, key, {"vip": _nth_address(_VIP_NET, i)})
            for w in workloads(shape, i):
                store.put_record(WORKLOADS, f"{w.namespace}/{w.name}", workload_to_record(w))
    finally:
        store.close()


def yaml_of(doc: dict[str, Any]) -> str:
    """JSON is YAML: what `trellis apply -f -` would send for one document."""
    return json.dumps(doc)


def sidecar_docs(shape: MeshShape) -> list[dict[str, Any]]:
    """One namespace-wide Sidecar per namespace with Istio's usual scope, `./*` plus
    `istio-system/*`: each proxy then gets config for its own namespace's services only."""
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": shape.namespace(n)},
            "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]},
        }
        for n in range(min(shape.namespaces, shape.services))
    ]
