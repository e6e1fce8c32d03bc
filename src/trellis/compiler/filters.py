"""Network and HTTP filter builders shared by sidecar and gateway listeners.

Filter names and order follow Istio (cors, fault, router), so EnvoyFilter-style knowledge
of "what sits where" carries over (istio-notes §1.7).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from trellis.compiler.protos import ads_config_source, pack
from trellis.compiler.telemetry import build_access_logs
from trellis.compiler.tracing import HcmTracing, build_hcm_tracing
from trellis.model.snapshot import MeshConfig

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
ORIGINAL_DST = "envoy.filters.listener.original_dst"
CORS = "envoy.filters.http.cors"
FAULT = "envoy.filters.http.fault"
ROUTER = "envoy.filters.http.router"


def original_dst_listener_filter() -> listener_components_pb2.ListenerFilter:
    """Recovers the pre-iptables destination so capture listeners can hand connections on."""
    return listener_components_pb2.ListenerFilter(
        name=ORIGINAL_DST, typed_config=pack(original_dst_pb2.OriginalDst())
    )


def outbound_http_filters() -> list[hcm.HttpFilter]:
    """cors and fault do nothing unless a route carries their per-route config."""
    return [
        hcm.HttpFilter(name=CORS, typed_config=pack(cors_pb2.Cors())),
        hcm.HttpFilter(name=FAULT, typed_config=pack(fault_pb2.HTTPFault())),
        router_filter(),
    ]


def router_filter() -> hcm.HttpFilter:
    return hcm.HttpFilter(name=ROUTER, typed_config=pack(router_pb2.Router()))


def build_http_connection_manager(
    stat_prefix: str,
    mesh: MeshConfig,
    *,
    rds_name: str | None = None,
    route_config: route_pb2.RouteConfiguration | None = None,
    http_filters: Sequence[hcm.HttpFilter] | None = None,
    use_remote_address: bool = False,
    tracing: HcmTracing | None = None,
) -> listener_components_pb2.Filter:
    """An HCM that takes its routes over RDS (`rds_name`) or inline (`route_config`); traced
    as `tracing` says when the mesh has a trace store."""
    manager = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManager.CodecType.AUTO,
        http_filters=list(http_filters if http_filters is not None else outbound_http_filters()),
        access_log=build_access_logs(mesh),
        normalize_path=wrappers_pb2.BoolValue(value=True),
        generate_request_id=wrappers_pb2.BoolValue(value=True),
        use_remote_address=wrappers_pb2.BoolValue(value=use_remote_address),
        upgrade_configs=[hcm.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )
    if tracing is not None:
        manager.tracing.CopyFrom(build_hcm_tracing(tracing))
    if rds_name is not None:
        manager.rds.CopyFrom(hcm.Rds(config_source=ads_config_source(), route_config_name=rds_name))
    elif route_config is not None:
        manager.route_config.CopyFrom(route_config)
    return listener_components_pb2.Filter(name=HTTP_CONNECTION_MANAGER, typed_config=pack(manager))


def build_tcp_proxy(
    stat_prefix: str, clusters: Sequence[tuple[str, int]], mesh: MeshConfig
) -> listener_components_pb2.Filter:
    """tcp_proxy to one cluster, or weighted across several (VirtualService tcp routes)."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, access_log=build_access_logs(mesh))
    if len(clusters) == 1:
        proxy.cluster = clusters[0][0]
    else:
        weight = tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight
        proxy.weighted_clusters.clusters.extend(weight(name=n, weight=w) for n, w in clusters)
    return listener_components_pb2.Filter(name=TCP_PROXY, typed_config=pack(proxy))
