"""RDS for sidecars: route configurations named by port (`9080`); gateways are in gateway.py.

A route configuration holds one virtual host per service on that port (`FQDN:PORT`, with every
name a client may put in Host) and a catch-all for everything else (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from trellis.api.networking import Destination
from trellis.compiler.destinations import RouteScope
from trellis.compiler.http_route import translate_virtual_service
from trellis.compiler.protos import duration
from trellis.compiler.retries import build_retry_policy
from trellis.compiler.route_extras import build_hash_policies
from trellis.model import names
from trellis.model.names import ClusterName, RouteConfigName, VirtualHostName
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext
from trellis.model.registry import Service
from trellis.model.snapshot import MeshConfig, OutboundPolicy


def build_sidecar_route_configs(
    proxy: Proxy, push: PushContext
) -> dict[str, route_pb2.RouteConfiguration]:
    """Every route configuration a sidecar should have, by name: one per HTTP service port."""
    ports = sorted({p.port for s in push.services for p in s.ports if p.protocol.is_http})
    configs = (build_sidecar_route_config(proxy, push, port) for port in ports)
    return {config.name: config for config in configs}


def build_sidecar_route_config(
    proxy: Proxy, push: PushContext, port: int
) -> route_pb2.RouteConfiguration:
    hosts = [
        build_service_virtual_host(proxy, push, service, port)
        for service in push.services
        if (p := service.port(port)) is not None and p.protocol.is_http
    ]
    hosts.append(build_catch_all_virtual_host(push.mesh))
    return route_configuration(RouteConfigName.sidecar(port), hosts)


def route_configuration(name: str, hosts: Iterable[rc.VirtualHost]) -> route_pb2.RouteConfiguration:
    """Envoy rejects a domain listed twice in one config: the first virtual host keeps it."""
    seen: set[str] = set()
    kept = []
    for host in hosts:
        domains = [d for d in host.domains if d not in seen]
        seen.update(domains)
        if domains:
            del host.domains[:]
            host.domains.extend(domains)
            kept.append(host)
    return route_pb2.RouteConfiguration(
        name=name, virtual_hosts=kept, validate_clusters=wrappers_pb2.BoolValue(value=False)
    )


def build_service_virtual_host(
    proxy: Proxy, push: PushContext, service: Service, port: int
) -> rc.VirtualHost:
    return rc.VirtualHost(
        name=VirtualHostName.build(service.hostname, port),
        domains=service_domains(service, port, proxy.namespace),
        routes=service_routes(proxy, push, service, port),
    )


def service_domains(service: Service, port: int, client_namespace: str) -> list[str]:
    """FQDN, NAME.NS.svc, NAME.NS, the short name (same namespace only) and the VIP, each
    also with `:PORT`."""
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


def build_catch_all_virtual_host(mesh: MeshConfig) -> rc.VirtualHost:
    """Hosts the mesh does not know: passed through (ALLOW_ANY) or dropped (REGISTRY_ONLY)."""
    allow = mesh.outbound_policy == OutboundPolicy.ALLOW_ANY
    name = names.ALLOW_ANY_VHOST if allow else names.BLOCK_ALL_VHOST
    cluster = names.PASSTHROUGH if allow else names.BLACKHOLE
    route = rc.Route(
        name=name,
        match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(cluster=cluster, timeout=duration(0)),
    )
    return rc.VirtualHost(name=name, domains=["*"], routes=[route])
