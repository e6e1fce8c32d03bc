"""RDS for sidecars: route configurations named by port (`9080`); gateways are in gateway.py.

A route configuration holds one virtual host per service on that port (`FQDN:PORT`, with every
name a client may put in Host) and a catch-all for everything else (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from trellis.api.networking import Destination
from trellis.compiler.destinations import RouteScope
from trellis.compiler.http_route import translate_virtual_service
from trellis.compiler.peer_stats import with_peer_header, without_peer_header
from trellis.compiler.protos import duration
from trellis.compiler.retries import build_retry_policy
from trellis.compiler.route_extras import build_hash_policies
from trellis.model import names
from trellis.model.names import ClusterName, RouteConfigName, VirtualHostName
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext
from trellis.model.registry import Service
from trellis.model.snapshot import MeshConfig, OutboundPolicy

# Builds one service's virtual host on one port (the compile cache passes one that reuses them).
HostBuilder = Callable[[Proxy, PushContext, Service, int], rc.VirtualHost]


def build_sidecar_route_configs(
    proxy: Proxy, push: PushContext, build_host: HostBuilder | None = None
) -> dict[str, route_pb2.RouteConfiguration]:
    """Every route configuration a sidecar should have, by name: one per HTTP service port.
    `build_host` makes one service's virtual host (the compile cache passes a caching one)."""
    services = push.outbound_services(proxy)  # exportTo + Sidecar egress scope
    ports = sorted({p.port for s in services for p in s.ports if p.protocol.is_http})
    configs = (build_sidecar_route_config(proxy, push, port, build_host) for port in ports)
    return {config.name: config for config in configs}


def build_sidecar_route_config(
    proxy: Proxy, push: PushContext, port: int, build_host: HostBuilder | None = None
) -> route_pb2.RouteConfiguration:
    build = build_host or build_service_virtual_host
    hosts = [
        build(proxy, push, service, port)
        for service in push.outbound_services(proxy)
        if (p := service.port(port)) is not None and p.protocol.is_http
    ]
    hosts.append(build_catch_all_virtual_host(push.mesh, push.outbound_policy(proxy)))
    return route_configuration(RouteConfigName.sidecar(port), hosts)


def route_configuration(name: str, hosts: Iterable[rc.VirtualHost]) -> route_pb2.RouteConfiguration:
    """Envoy rejects a domain listed twice in one config: the first virtual host keeps it.
    The hosts given are not changed (they may be shared, cached ones): a trimmed one is a copy.
    """
    seen: set[str] = set()
    kept = []
    for host in hosts:
        domains = [d for d in host.domains if d not in seen]
        seen.update(domains)
        if domains and len(domains) < len(host.domains):
            trimmed = rc.VirtualHost()
            trimmed.CopyFrom(host)
            del trimmed.domains[:]
            trimmed.domains.extend(domains)
            kept.append(trimmed)
        elif domains:
            kept.append(host)
    return route_pb2.RouteConfiguration(
        name=name, virtual_hosts=kept, validate_clusters=wrappers_pb2.BoolValue(value=False)
    )


def build_service_virtual_host(
    proxy: Proxy, push: PushContext, service: Service, port: int
) -> rc.VirtualHost:
    host = rc.VirtualHost(
        name=VirtualHostName.build(service.hostname, port),
        domains=service_domains(service, port, proxy.namespace),
        routes=service_routes(proxy, push, service, port),
    )
    # Mesh services learn who called (compiler/peer_stats.py); outside hosts do not.
    return without_peer_header(host) if service.mesh_external else with_peer_header(host)


def service_domains(service: Service, port: int, client_namespace: str) -> list[str]:
    """FQDN, NAME.NS.svc, NAME.NS, the short name (same namespace only) and the VIP, each
    also with `:PORT`. A ServiceEntry host is matched as written (plus its VIP)."""
    if service.host:
        hosts = [service.host, *([service.vip] if service.vip else [])]
        return [d for h in hosts for d in (h, f"{h}:{port}")]
    hosts = [
        service.hostname,
        f"{service.name}.{service.namespace}.svc",
        f"{service.name}.{service.namespace}",
    ]
    if service.namespace == client_namespace:
        hosts.append(service.name)
    if service.vip:
        hosts.append(service.vip)
    return [d for h in hosts for d in (h, f"{h}:{port}")]


def service_routes(proxy: Proxy, push: PushContext, service: Service, port: int) -> list[rc.Route]:
    """The mesh VirtualService's rules for this host, or one route to the service's cluster."""
    vs = push.mesh_virtual_service(service.hostname, proxy.namespace)
    if vs is not None:
        scope = RouteScope(proxy=proxy, push=push, port=port, namespace=vs.namespace)
        routes = translate_virtual_service(scope, vs)
        if routes:
            return routes
    return [build_default_route(proxy, push, service, port)]


def build_default_route(proxy: Proxy, push: PushContext, service: Service, port: int) -> rc.Route:
    """No VirtualService: everything to `outbound|PORT||FQDN` with Istio's default retries."""
    scope = RouteScope(proxy=proxy, push=push, port=port, namespace=service.namespace)
    hashing = build_hash_policies(scope, Destination(host=service.hostname))
    action = rc.RouteAction(
        cluster=ClusterName.outbound(port, "", service.hostname),
        timeout=duration(0),
        hash_policy=hashing,
    )
    retry = build_retry_policy(None, consistent_hash=bool(hashing))
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    return rc.Route(name="default", match=rc.RouteMatch(prefix="/"), route=action)


def build_catch_all_virtual_host(
    mesh: MeshConfig, policy: OutboundPolicy | None = None
) -> rc.VirtualHost:
    """Hosts the mesh does not know: passed through (ALLOW_ANY) or dropped (REGISTRY_ONLY);
    `policy` is the proxy's Sidecar's outboundTrafficPolicy, when it sets one."""
    allow = (policy or mesh.outbound_policy) == OutboundPolicy.ALLOW_ANY
    name = names.ALLOW_ANY_VHOST if allow else names.BLOCK_ALL_VHOST
    route = rc.Route(name=name, match=rc.RouteMatch(prefix="/"))
    if allow:
        route.route.CopyFrom(rc.RouteAction(cluster=names.PASSTHROUGH, timeout=duration(0)))
    else:  # Istio answers blocked HTTP itself: 502, not the 503 an empty BlackHole gives
        route.direct_response.status = 502
    return without_peer_header(rc.VirtualHost(name=name, domains=["*"], routes=[route]))
