"""From VirtualService destinations to cluster names, and which rules apply to a proxy.

Shared by HTTP routes and TCP listeners so both resolve hosts, ports and selectors the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trellis.api.networking import Destination
from trellis.model.names import ClusterName
from trellis.model.proxy import Proxy
from trellis.model.push_context import MESH_GATEWAY, PushContext, gateway_key, labels_match


@dataclass(frozen=True, slots=True)
class RouteScope:
    """Where rules are being compiled: for which proxy, on which port, through which gateway.

    `gateway` is `mesh` for sidecars or `ns/name` of the Gateway for routers; `namespace` is
    that of the VirtualService being translated (short hosts resolve against it).
    """

    proxy: Proxy
    push: PushContext
    port: int
    gateway: str = MESH_GATEWAY
    namespace: str = "default"


def destination_cluster(scope: RouteScope, destination: Destination) -> str:
    """`outbound|PORT|SUBSET|FQDN` for a destination written in the scope's VirtualService.

    The port is the destination's, else the service's only port, else the listener's port.
    """
    host = scope.push.resolve_host(destination.host, scope.namespace)
    port = destination.port_number or _default_port(scope, host)
    return ClusterName.outbound(port, destination.subset or "", host)


def _default_port(scope: RouteScope, host: str) -> int:
    service = scope.push.service(host)
    if service is not None and len(service.ports) == 1:
        return service.ports[0].port
    return scope.port


def weighted_clusters(
    scope: RouteScope, routes: Sequence[tuple[Destination, int | None]]
) -> list[tuple[str, int]]:
    """(cluster, weight) pairs; one destination takes everything, 0-weight entries are dropped."""
    if len(routes) == 1:
        return [(destination_cluster(scope, routes[0][0]), 100)]
    chosen = [(destination_cluster(scope, d), w or 0) for d, w in routes]
    return [(name, weight) for name, weight in chosen if weight > 0]


def selects_proxy(
    scope: RouteScope,
    *,
    source_labels: Mapping[str, str],
    source_namespace: str | None,
    gateways: Sequence[str],
    port: int | None,
) -> bool:
    """Whether one match block applies here at all (these are selectors, not request matches).

    sourceLabels/sourceNamespace pick the client proxies; a block's own `gateways` overrides
    the VirtualService's; `port` must be the port being compiled.
    """
    if port is not None and port != scope.port:
        return False
    if gateways and scope.gateway not in {gateway_key(g, scope.namespace) for g in gateways}:
        return False
    if source_namespace is not None and source_namespace != scope.proxy.namespace:
        return False
    return not source_labels or labels_match(source_labels, scope.proxy.labels)
