"""Inbound ports of a captured sidecar, with a Sidecar resource's `ingress` listeners.

Without a Sidecar (or one without `ingress`) the inbound ports are the ports of the services
that select the workload. With `ingress`, exactly its ports are inbound ports (as in Istio),
and each forwards to its `defaultEndpoint` instead of the service's targetPort on loopback:
`127.0.0.1:PORT` is the app's loopback address, `0.0.0.0:PORT` the pod's own address. Entries
with a unix socket endpoint are skipped (model/sidecar_scope.ingress_port); `bind`,
`captureMode`, `tls` and `connectionPool` of an ingress listener are not applied yet.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2

from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext
from trellis.model.registry import Service, ServicePort
from trellis.model.sidecar_scope import IngressPort


def inbound_ports(proxy: Proxy, push: PushContext) -> list[ServicePort]:
    """The ports the inbound listener has a chain for (first one wins a target port)."""
    ingress = push.sidecar_scope(proxy).ingress if proxy.captured else ()
    if ingress:
        return [entry.port for entry in ingress]
    return [port for service in push.services_selecting(proxy) for port in service.ports]


def build_sidecar_ingress_clusters(
    proxy: Proxy, push: PushContext, ingress: Iterable[IngressPort]
) -> list[cluster_pb2.Cluster]:
    """`inbound|PORT||` -> defaultEndpoint, one per ingress listener port."""
    from trellis.compiler.clusters import build_inbound_cluster  # clusters imports this module

    clusters: dict[str, cluster_pb2.Cluster] = {}
    for entry in ingress:
        service = _service_for(proxy, push, entry.port.port)
        cluster = build_inbound_cluster(service, entry.port, push.mesh, app_host=entry.host)
        for locality in cluster.load_assignment.endpoints:
            for lb_endpoint in locality.lb_endpoints:
                lb_endpoint.endpoint.address.socket_address.port_value = entry.app_port
        clusters.setdefault(cluster.name, cluster)
    return list(clusters.values())


def _service_for(proxy: Proxy, push: PushContext, port: int) -> Service:
    """The selecting service that names this port (for the cluster's istio metadata), else
    the first selecting one, else a stand-in named after the workload's app."""
    selecting = push.services_selecting(proxy)
    for service in selecting:
        if any(p.target_port == port or p.port == port for p in service.ports):
            return service
    if selecting:
        return selecting[0]
    return Service(
        name=proxy.labels.get("app", proxy.name), namespace=proxy.namespace, vip="", ports=()
    )
