"""The compiler: proxy + PushContext in, Envoy protos out. Pure: no I/O, no clocks (DESIGN §3).

`compile_resources` is what the xDS server asks per type; `compile_all` is for goldens,
`trellis explain` and consistency checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from trellis.compiler.clusters import build_clusters
from trellis.compiler.endpoints import build_endpoints
from trellis.compiler.gateway import build_gateway_route_configs
from trellis.compiler.listeners import build_listeners
from trellis.compiler.proxy_mode import build_proxy_mode_route_configs
from trellis.compiler.routes import build_sidecar_route_configs
from trellis.model import xds_types
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Everything one proxy gets, by resource name per type."""

    clusters: dict[str, cluster_pb2.Cluster]
    endpoints: dict[str, endpoint_pb2.ClusterLoadAssignment]
    listeners: dict[str, listener_pb2.Listener]
    routes: dict[str, route_pb2.RouteConfiguration]

    def by_type(self, type_url: str) -> dict[str, Message]:
        table: dict[str, dict[str, Message]] = {
            xds_types.CLUSTER: dict(self.clusters),
            xds_types.ENDPOINT: dict(self.endpoints),
            xds_types.LISTENER: dict(self.listeners),
            xds_types.ROUTE: dict(self.routes),
            xds_types.SECRET: {},
        }
        return table[type_url]


def build_route_configs(proxy: Proxy, push: PushContext) -> dict[str, route_pb2.RouteConfiguration]:
    if proxy.type == ProxyType.ROUTER:
        return build_gateway_route_configs(proxy, push)
    if not proxy.captured:
        return build_proxy_mode_route_configs(proxy, push)
    return build_sidecar_route_configs(proxy, push)


def _no_secrets(proxy: Proxy, push: PushContext) -> dict[str, Message]:
    # TODO(sds): workload certificates (`default`, `ROOTCA`) come with the CA.
    return {}


_GENERATORS: dict[str, Callable[[Proxy, PushContext], dict[str, Message]]] = {
    xds_types.CLUSTER: build_clusters,
    xds_types.ENDPOINT: build_endpoints,
    xds_types.LISTENER: build_listeners,
    xds_types.ROUTE: build_route_configs,
    xds_types.SECRET: _no_secrets,
}


def compile_resources(proxy: Proxy, push: PushContext, type_url: str) -> dict[str, Message]:
    """Every resource of `type_url` this proxy should have, by name (ValueError if unknown)."""
    generator = _GENERATORS.get(type_url)
    if generator is None:
        raise ValueError(f"no generator for xDS type {type_url!r}")
    return generator(proxy, push)


def compile_all(proxy: Proxy, push: PushContext) -> ProxyConfig:
    return ProxyConfig(
        clusters=build_clusters(proxy, push),
        endpoints=build_endpoints(proxy, push),
        listeners=build_listeners(proxy, push),
        routes=build_route_configs(proxy, push),
    )


__all__ = ["ProxyConfig", "compile_all", "compile_resources"]
