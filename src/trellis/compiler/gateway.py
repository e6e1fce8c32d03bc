"""Gateways (proxy type router): listeners and `http.N` route configs from Gateway servers.

A server's port number may be the gateway Service's port, which is translated to its
targetPort (istio-notes §1.3): the listener binds `0.0.0.0_TARGETPORT`, and servers whose
ports land on the same target port share one listener and one route configuration.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from trellis.api.networking import Gateway, Server, VirtualService
from trellis.compiler.destinations import RouteScope
from trellis.compiler.filters import build_http_connection_manager, outbound_http_filters
from trellis.compiler.http_route import translate_virtual_service
from trellis.compiler.inbound_policy import build_inbound_policy_filters
from trellis.compiler.peer_stats import with_peer_header
from trellis.compiler.protos import socket_address
from trellis.compiler.routes import route_configuration
from trellis.compiler.tracing import hcm_tracing_for
from trellis.model import names
from trellis.model.names import ListenerName, RouteConfigName, VirtualHostName
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext, host_matches

_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})


@dataclass(frozen=True, slots=True)
class GatewayServer:
    gateway: Gateway
    server: Server
    number: int  # the port number the Gateway resource wrote

    @property
    def key(self) -> str:
        return f"{self.gateway.namespace}/{self.gateway.name}"


def http_servers_by_target_port(proxy: Proxy, push: PushContext) -> dict[int, list[GatewayServer]]:
    """Plain-HTTP servers of every Gateway selecting this proxy, grouped by listening port.

    TODO(gateway-tls): HTTPS/TLS servers (and httpsRedirect) are skipped until SDS exists;
    TCP servers are skipped too.
    """
    service = push.gateway_service(proxy)
    groups: defaultdict[int, list[GatewayServer]] = defaultdict(list)
    for gateway in push.gateways_for(proxy):
        for server in gateway.spec.servers:
            port = server.port
            if port is None or port.number is None or server.tls is not None:
                continue
            if (port.protocol or "").upper() not in _HTTP_PROTOCOLS:
                continue
            service_port = service.port(port.number) if service else None
            target = service_port.target_port if service_port else port.number
            groups[target].append(GatewayServer(gateway, server, port.number))
    return dict(sorted(groups.items()))


def _route_name(servers: list[GatewayServer]) -> str:
    return RouteConfigName.for_gateway(min(s.number for s in servers))


def build_gateway_listeners(proxy: Proxy, push: PushContext) -> list[listener_pb2.Listener]:
    listeners = []
    # AuthorizationPolicy/RequestAuthentication selecting the gateway (e.g. ipBlocks at ingress).
    security = build_inbound_policy_filters(proxy, push).http
    for target, servers in http_servers_by_target_port(proxy, push).items():
        manager = build_http_connection_manager(
            names.outbound_stat_prefix(target),
            push.mesh,
            rds_name=_route_name(servers),
            use_remote_address=True,
            http_filters=[*security, *outbound_http_filters()],
            tracing=hcm_tracing_for(proxy, push),
        )
        listeners.append(
            listener_pb2.Listener(
                name=ListenerName.wildcard(target),
                address=socket_address(names.WILDCARD_ADDRESS, target),
                bind_to_port=wrappers_pb2.BoolValue(value=True),
                traffic_direction=base_pb2.TrafficDirection.OUTBOUND,
                filter_chains=[listener_components_pb2.FilterChain(filters=[manager])],
            )
        )
    return listeners


def build_gateway_route_configs(
    proxy: Proxy, push: PushContext
) -> dict[str, route_pb2.RouteConfiguration]:
    configs = {}
    for servers in http_servers_by_target_port(proxy, push).values():
        name = _route_name(servers)
        configs[name] = route_configuration(name, build_gateway_virtual_hosts(proxy, push, servers))
    return configs


def build_gateway_virtual_hosts(
    proxy: Proxy, push: PushContext, servers: list[GatewayServer]
) -> list[rc.VirtualHost]:
    """One virtual host per host; rules of every VirtualService on that host, in order."""
    routes: dict[str, list[rc.Route]] = {}
    ports: dict[str, set[int]] = defaultdict(set)
    done: set[tuple[str, str, str]] = set()
    for entry in servers:
        for vs in push.virtual_services_for(entry.key, entry.gateway.namespace):
            for host in _exposed_hosts(push, vs, entry):
                ports[host].add(entry.number)
                if (vs.namespace, vs.name, host) in done:
                    continue
                done.add((vs.namespace, vs.name, host))
                scope = RouteScope(
                    proxy=proxy,
                    push=push,
                    port=entry.number,
                    gateway=entry.key,
                    namespace=vs.namespace,
                )
                routes.setdefault(host, []).extend(translate_virtual_service(scope, vs))
    return [_virtual_host(host, sorted(ports[host]), r) for host, r in routes.items()]


def _virtual_host(host: str, ports: list[int], routes: list[rc.Route]) -> rc.VirtualHost:
    domains = ["*"] if host == "*" else [host, *(f"{host}:{p}" for p in ports)]
    return with_peer_header(  # the gateway, not the outside client, is the mesh caller
        rc.VirtualHost(name=VirtualHostName.build(host, ports[0]), domains=domains, routes=routes)
    )


def _exposed_hosts(push: PushContext, vs: VirtualService, entry: GatewayServer) -> list[str]:
    """VirtualService hosts this server exposes; the narrower of the two names is used."""
    exposed: dict[str, None] = {}
    for raw in vs.spec.hosts:
        host = push.resolve_host(raw, vs.namespace)
        for server_host in _server_hosts(entry, vs.namespace):
            if host_matches(server_host, host):
                exposed[host] = None
            elif host_matches(host, server_host):
                exposed[server_host] = None
    return list(exposed)


def _server_hosts(entry: GatewayServer, vs_namespace: str) -> list[str]:
    """Server hosts `[ns/]host` that admit VirtualServices from `vs_namespace`."""
    hosts = []
    for item in entry.server.hosts:
        namespace, _, host = item.rpartition("/")
        if (
            namespace in ("", "*")
            or namespace == vs_namespace
            or (namespace == "." and vs_namespace == entry.gateway.namespace)
        ):
            hosts.append(host)
    return hosts
