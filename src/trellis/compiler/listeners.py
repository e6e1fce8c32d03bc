"""LDS for sidecars: capture listeners (15001/15006) and one listener per service port.

With iptables capture every outbound connection lands on `virtualOutbound`, which hands it to
the listener bound to its original destination: `0.0.0.0_PORT` for HTTP (routing by Host via
RDS `PORT`) or `VIP_PORT` for TCP. Inbound connections land on `virtualInbound` and are
matched by destination port. Gateways are in `gateway.py`; sidecars without capture in
`proxy_mode.py`.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import wrappers_pb2

from trellis.api.networking import TCPRoute, VirtualService
from trellis.api.security import PeerAuthenticationMode
from trellis.compiler.destinations import RouteScope, selects_proxy, weighted_clusters
from trellis.compiler.filters import (
    build_http_connection_manager,
    build_tcp_proxy,
    original_dst_listener_filter,
    router_filter,
)
from trellis.compiler.gateway import build_gateway_listeners
from trellis.compiler.inbound_policy import (
    NO_POLICY_FILTERS,
    InboundPolicyFilters,
    build_inbound_policy_filters,
)
from trellis.compiler.mtls import (
    inbound_mode,
    inbound_transports,
    secure_chains,
    server_tls_socket,
    tls_inspector_filter,
    workload_mode,
)
from trellis.compiler.protos import duration, socket_address
from trellis.compiler.retries import inbound_retry_policy
from trellis.compiler.sidecar_ingress import inbound_ports
from trellis.compiler.telemetry import (
    finish_client_listeners,
    finish_inbound_listener,
    finish_uncaptured_listeners,
)
from trellis.compiler.tracing import HcmTracing, hcm_tracing_for
from trellis.model import names
from trellis.model.names import ClusterName, ListenerName, RouteConfigName
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Service, ServicePort
from trellis.model.snapshot import MeshConfig, OutboundPolicy

_OUTBOUND = base_pb2.TrafficDirection.OUTBOUND
_INBOUND = base_pb2.TrafficDirection.INBOUND


def build_listeners(proxy: Proxy, push: PushContext) -> dict[str, listener_pb2.Listener]:
    """Every listener this proxy should have, by name."""
    if proxy.type == ProxyType.ROUTER:
        listeners = build_gateway_listeners(proxy, push)
    elif not proxy.captured:
        from trellis.compiler.proxy_mode import build_proxy_mode_listeners  # imports this module

        listeners = build_proxy_mode_listeners(proxy, push)
    else:
        listeners = [
            build_virtual_outbound(push.mesh, push.outbound_policy(proxy)),
            build_virtual_inbound(proxy, push),
            *build_outbound_listeners(proxy, push),
        ]
        return {listener.name: listener for listener in listeners}
    finish_uncaptured_listeners(listeners, proxy, push)  # Telemetry, per-caller stats
    return {listener.name: listener for listener in listeners}


def build_virtual_outbound(
    mesh: MeshConfig, policy: OutboundPolicy | None = None
) -> listener_pb2.Listener:
    """15001: captured outbound traffic; unknown destinations go by the outbound policy (the
    proxy's Sidecar's, else the mesh's)."""
    allow = (policy or mesh.outbound_policy) == OutboundPolicy.ALLOW_ANY
    fallback = names.PASSTHROUGH if allow else names.BLACKHOLE
    return listener_pb2.Listener(
        name=names.VIRTUAL_OUTBOUND,
        address=socket_address(names.WILDCARD_ADDRESS, names.VIRTUAL_OUTBOUND_PORT),
        use_original_dst=wrappers_pb2.BoolValue(value=True),
        traffic_direction=_OUTBOUND,
        listener_filters=[original_dst_listener_filter()],
        default_filter_chain=listener_components_pb2.FilterChain(
            name=fallback, filters=[build_tcp_proxy(fallback, [(fallback, 100)], mesh)]
        ),
    )


def build_outbound_listeners(proxy: Proxy, push: PushContext) -> list[listener_pb2.Listener]:
    """`0.0.0.0_PORT` per HTTP port, `VIP_PORT` per TCP service port (first one wins a name)."""
    listeners: dict[str, listener_pb2.Listener] = {}
    for service in push.outbound_services(proxy):  # exportTo + Sidecar egress scope
        for port in service.ports:
            listener = _outbound_listener(proxy, push, service, port)
            listeners.setdefault(listener.name, listener)
    finish_client_listeners(listeners.values(), proxy, push)  # Telemetry accessLogging
    return list(listeners.values())


def _outbound_listener(
    proxy: Proxy, push: PushContext, service: Service, port: ServicePort
) -> listener_pb2.Listener:
    if port.protocol.is_http:
        return build_outbound_http_listener(port.port, push.mesh, hcm_tracing_for(proxy, push))
    return build_outbound_tcp_listener(proxy, push, service, port)


def build_outbound_http_listener(
    port: int, mesh: MeshConfig, tracing: HcmTracing | None = None
) -> listener_pb2.Listener:
    manager = build_http_connection_manager(
        names.outbound_stat_prefix(port),
        mesh,
        rds_name=RouteConfigName.sidecar(port),
        tracing=tracing,
    )
    return _outbound_port_listener(
        ListenerName.wildcard(port), names.WILDCARD_ADDRESS, port, manager
    )


def build_outbound_tcp_listener(
    proxy: Proxy, push: PushContext, service: Service, port: ServicePort
) -> listener_pb2.Listener:
    """tcp_proxy to the service's cluster, or to a mesh VirtualService's tcp route for it."""
    default = ClusterName.outbound(port.port, "", service.hostname)
    clusters = tcp_route_clusters(proxy, push, service, port.port) or [(default, 100)]
    address = service.vip or names.WILDCARD_ADDRESS
    proxy_filter = build_tcp_proxy(default, clusters, push.mesh)
    return _outbound_port_listener(
        ListenerName.for_address(address, port.port), address, port.port, proxy_filter
    )


def _outbound_port_listener(
    name: str, address: str, port: int, network_filter: listener_components_pb2.Filter
) -> listener_pb2.Listener:
    """Not bound: reached only through virtualOutbound's hand-off (use_original_dst)."""
    return listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        bind_to_port=wrappers_pb2.BoolValue(value=False),
        traffic_direction=_OUTBOUND,
        filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
    )


def tcp_route_clusters(
    proxy: Proxy, push: PushContext, service: Service, port: int
) -> list[tuple[str, int]] | None:
    """The first tcp rule of the host's mesh VirtualService that applies on this port."""
    vs = push.mesh_virtual_service(service.hostname, proxy.namespace)
    if vs is None:
        return None
    scope = RouteScope(proxy=proxy, push=push, port=port, namespace=vs.namespace)
    rule = next((r for r in vs.spec.tcp if _tcp_rule_applies(scope, vs, r)), None)
    if rule is None or not rule.route:
        return None
    return weighted_clusters(scope, [(r.destination, r.weight) for r in rule.route]) or None


def _tcp_rule_applies(scope: RouteScope, vs: VirtualService, rule: TCPRoute) -> bool:
    if not rule.match:
        return True
    return any(
        selects_proxy(
            scope,
            source_labels=m.source_labels,
            source_namespace=m.source_namespace,
            gateways=m.gateways,
            port=m.port,
        )
        for m in rule.match
    )


# --- inbound ------------------------------------------------------------------------------


def build_virtual_inbound(proxy: Proxy, push: PushContext) -> listener_pb2.Listener:
    """15006: filter chains per inbound port (one per mTLS variant), the rest straight to the
    app (passthrough)."""
    chains: dict[int, list[listener_components_pb2.FilterChain]] = {}
    for port in inbound_ports(proxy, push):
        if port.target_port not in chains:
            chains[port.target_port] = build_inbound_port_chains(proxy, push, port)
    ordered = [chain for p in sorted(chains) for chain in chains[p]]
    passthrough = build_tcp_proxy(
        names.INBOUND_PASSTHROUGH, [(names.INBOUND_PASSTHROUGH, 100)], push.mesh
    )
    listener = listener_pb2.Listener(
        name=names.VIRTUAL_INBOUND,
        address=socket_address(names.WILDCARD_ADDRESS, names.VIRTUAL_INBOUND_PORT),
        traffic_direction=_INBOUND,
        listener_filters=[original_dst_listener_filter()],
        filter_chains=ordered,
        default_filter_chain=build_passthrough_chain(proxy, push, passthrough),
    )
    add_tls_inspector(listener)
    finish_inbound_listener(listener, proxy, push)  # per-caller stats, Telemetry
    return listener


def build_passthrough_chain(
    proxy: Proxy, push: PushContext, passthrough: listener_components_pb2.Filter
) -> listener_components_pb2.FilterChain:
    """Ports no Service names go straight to the app; under a workload-wide STRICT
    PeerAuthentication they too demand mTLS, as in Istio (a plaintext peer fails the handshake).
    """
    chain = listener_components_pb2.FilterChain(
        name=names.INBOUND_PASSTHROUGH, filters=[passthrough]
    )
    if workload_mode(proxy, push) is PeerAuthenticationMode.STRICT:
        chain.transport_socket.CopyFrom(server_tls_socket(push.mesh.trust_domain))
    return chain


def build_inbound_port_chains(
    proxy: Proxy, push: PushContext, port: ServicePort
) -> list[listener_components_pb2.FilterChain]:
    """The seam between filters and transport: `build_inbound_chain` decides the network and
    HTTP filters (authorization and JWT filters go there), mtls.py how the chain is matched
    and secured under the port's PeerAuthentication mode."""
    mode = inbound_mode(proxy, push, port.target_port)
    policy = build_inbound_policy_filters(proxy, push)
    tracing = hcm_tracing_for(proxy, push, server=True)
    chain = build_inbound_chain(port, push.mesh, policy, tracing)
    return secure_chains(chain, inbound_transports(mode, push.mesh.trust_domain))


def add_tls_inspector(listener: listener_pb2.Listener) -> None:
    """Inbound chains match on TLS vs plaintext, which only the tls_inspector can tell. It is
    there whatever the mTLS mode, so a mode change never replaces the whole listener.

    A server-speaks-first protocol sends nothing for the inspector to read: continue after its
    timeout instead of closing the connection (as Istio does).
    """
    listener.listener_filters.append(tls_inspector_filter())
    listener.continue_on_listener_filters_timeout = True


def build_inbound_chain(
    port: ServicePort,
    mesh: MeshConfig,
    policy: InboundPolicyFilters = NO_POLICY_FILTERS,
    tracing: HcmTracing | None = None,
) -> listener_components_pb2.FilterChain:
    cluster = ClusterName.inbound(port.target_port)
    prefix = names.inbound_stat_prefix(port.target_port)
    if port.protocol.is_http:
        network_filter = build_http_connection_manager(
            prefix,
            mesh,
            route_config=build_inbound_route_config(cluster),
            http_filters=[*policy.http, router_filter()],
            tracing=tracing,
        )
        filters = [network_filter]
    else:
        filters = [*policy.tcp, build_tcp_proxy(cluster, [(cluster, 100)], mesh)]
    return listener_components_pb2.FilterChain(
        name=prefix,
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=wrappers_pb2.UInt32Value(value=port.target_port)
        ),
        filters=filters,
    )


def build_inbound_route_config(cluster: str) -> route_pb2.RouteConfiguration:
    """Everything arriving on an inbound port goes to the app; Istio retries resets only."""
    route = route_components_pb2.Route(
        name="default",
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(
            cluster=cluster, timeout=duration(0), retry_policy=inbound_retry_policy()
        ),
    )
    host = route_components_pb2.VirtualHost(
        name=f"inbound|http|{ClusterName.parse(cluster).port}", domains=["*"], routes=[route]
    )
    return route_pb2.RouteConfiguration(
        name=cluster, virtual_hosts=[host], validate_clusters=wrappers_pb2.BoolValue(value=False)
    )
