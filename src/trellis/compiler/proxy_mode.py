"""LDS and RDS for a sidecar without traffic capture (INTERCEPTION_MODE NONE, DESIGN §7).

Without iptables nothing is handed to the sidecar: it binds the pod's address itself. Inbound,
one listener `POD_IP_PORT` per service port that selects the workload, in front of the app that
listens on its private address. Outbound, one HTTP listener `POD_IP_15001` that the app uses as
its HTTP_PROXY; its route configuration `proxy` holds the virtual hosts of every mesh HTTP
service on every port (the same ones the per-port configs of a captured sidecar hold), so a
request is routed by its `Host: NAME:PORT`.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from trellis.compiler.filters import build_http_connection_manager, outbound_http_filters
from trellis.compiler.forward_proxy import dynamic_forward_proxy_filter
from trellis.compiler.listeners import add_tls_inspector, build_inbound_port_chains
from trellis.compiler.protos import socket_address
from trellis.compiler.routes import (
    build_catch_all_virtual_host,
    build_service_virtual_host,
    route_configuration,
)
from trellis.compiler.tracing import hcm_tracing_for
from trellis.model import names
from trellis.model.names import ListenerName
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext
from trellis.model.registry import Service
from trellis.model.snapshot import OutboundPolicy

# A client sends `Host: NAME` without a port only for port 80 (RFC 9110 §7.2).
_DEFAULT_HTTP_PORT = 80


def build_proxy_mode_listeners(proxy: Proxy, push: PushContext) -> list[listener_pb2.Listener]:
    return [*build_bound_inbound_listeners(proxy, push), build_http_proxy_listener(proxy, push)]


def build_bound_inbound_listeners(proxy: Proxy, push: PushContext) -> list[listener_pb2.Listener]:
    """`POD_IP_PORT` per target port of the services selecting the proxy (first one wins)."""
    listeners: dict[int, listener_pb2.Listener] = {}
    for service in push.services_selecting(proxy):
        for port in service.ports:
            if port.target_port not in listeners:
                chains = build_inbound_port_chains(proxy, push, port)
                for chain in chains:  # the bound address says which port it is
                    chain.filter_chain_match.ClearField("destination_port")
                    if chain.filter_chain_match.ByteSize() == 0:
                        chain.ClearField("filter_chain_match")
                listener = listeners[port.target_port] = listener_pb2.Listener(
                    name=ListenerName.for_address(proxy.ip, port.target_port),
                    address=socket_address(proxy.ip, port.target_port),
                    traffic_direction=base_pb2.TrafficDirection.INBOUND,
                    filter_chains=chains,
                )
                add_tls_inspector(listener)
    return [listeners[p] for p in sorted(listeners)]


def build_http_proxy_listener(proxy: Proxy, push: PushContext) -> listener_pb2.Listener:
    """`POD_IP_15001`: the app's HTTP_PROXY (absolute-form requests, routed by Host)."""
    filters = outbound_http_filters()
    if push.outbound_policy(proxy) == OutboundPolicy.ALLOW_ANY:
        filters.insert(len(filters) - 1, dynamic_forward_proxy_filter())  # before the router
    manager = build_http_connection_manager(
        names.outbound_stat_prefix(names.HTTP_PROXY_PORT),
        push.mesh,
        rds_name=names.HTTP_PROXY_ROUTE,
        http_filters=filters,
        tracing=hcm_tracing_for(proxy, push),
    )
    return listener_pb2.Listener(
        name=ListenerName.for_address(proxy.ip, names.HTTP_PROXY_PORT),
        address=socket_address(proxy.ip, names.HTTP_PROXY_PORT),
        traffic_direction=base_pb2.TrafficDirection.OUTBOUND,
        filter_chains=[listener_components_pb2.FilterChain(filters=[manager])],
    )


def build_proxy_mode_route_configs(
    proxy: Proxy, push: PushContext
) -> dict[str, route_pb2.RouteConfiguration]:
    """The one route configuration `proxy`: every HTTP service port, then the catch-all."""
    services = push.outbound_services(proxy)  # exportTo + Sidecar egress scope
    ports = sorted({p.port for s in services for p in s.ports if p.protocol.is_http})
    hosts = [
        _proxy_virtual_host(proxy, push, service, port)
        for port in ports
        for service in services
        if (p := service.port(port)) is not None and p.protocol.is_http
    ]
    hosts.append(build_catch_all_virtual_host(push.mesh, push.outbound_policy(proxy)))
    config = route_configuration(names.HTTP_PROXY_ROUTE, hosts)
    return {config.name: config}


def _proxy_virtual_host(
    proxy: Proxy, push: PushContext, service: Service, port: int
) -> rc.VirtualHost:
    """The captured sidecar's virtual host, with domains narrowed to this port: one config
    serves all ports, so `Host: reviews` alone may only mean port 80."""
    host = build_service_virtual_host(proxy, push, service, port)
    suffix = f":{port}"
    domains = [d for d in host.domains if d.endswith(suffix) or port == _DEFAULT_HTTP_PORT]
    del host.domains[:]
    host.domains.extend(domains)
    return host
