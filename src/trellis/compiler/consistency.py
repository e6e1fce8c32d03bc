"""Does a compiled ProxyConfig hang together? (go-control-plane's Snapshot.Consistent idea)

Every RDS name a listener uses must exist, every cluster a route or tcp_proxy names must exist,
and every EDS cluster must have its ClusterLoadAssignment. Otherwise Envoy waits or 503s.
"""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from trellis.compiler import ProxyConfig


def check_consistency(cfg: ProxyConfig) -> list[str]:
    """Human-readable problems; an empty list means the config is self-consistent."""
    problems: list[str] = []
    for listener in cfg.listeners.values():
        problems.extend(_check_listener(cfg, listener))
    for config in cfg.routes.values():
        problems.extend(_check_route_config(cfg, config, f"route config {config.name!r}"))
    for cluster in cfg.clusters.values():
        problems.extend(_check_cluster(cfg, cluster))
    return problems


def _check_listener(cfg: ProxyConfig, listener: listener_pb2.Listener) -> Iterator[str]:
    where = f"listener {listener.name!r}"
    for network_filter in _filters(listener):
        manager = hcm.HttpConnectionManager()
        proxy = tcp_proxy_pb2.TcpProxy()
        if network_filter.typed_config.Unpack(manager):
            yield from _check_manager(cfg, manager, where)
        elif network_filter.typed_config.Unpack(proxy):
            for cluster in _tcp_proxy_clusters(proxy):
                yield from _missing_cluster(cfg, cluster, where)


def _filters(listener: listener_pb2.Listener) -> Iterator[listener_components_pb2.Filter]:
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        yield from chain.filters


def _check_manager(
    cfg: ProxyConfig, manager: hcm.HttpConnectionManager, where: str
) -> Iterator[str]:
    if manager.HasField("rds"):
        name = manager.rds.route_config_name
        if name not in cfg.routes:
            yield f"{where} uses route config {name!r}, which does not exist"
    elif manager.HasField("route_config"):
        yield from _check_route_config(cfg, manager.route_config, f"{where} inline routes")


def _tcp_proxy_clusters(proxy: tcp_proxy_pb2.TcpProxy) -> list[str]:
    if proxy.HasField("weighted_clusters"):
        return [c.name for c in proxy.weighted_clusters.clusters]
    return [proxy.cluster]


def _check_route_config(
    cfg: ProxyConfig, config: route_pb2.RouteConfiguration, where: str
) -> Iterator[str]:
    for host in config.virtual_hosts:
        for route in host.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            names = [action.cluster] if action.cluster else []
            names += [c.name for c in action.weighted_clusters.clusters]
            names += [m.cluster for m in action.request_mirror_policies]
            for name in names:
                yield from _missing_cluster(cfg, name, f"{where} vhost {host.name!r}")


def _missing_cluster(cfg: ProxyConfig, name: str, where: str) -> Iterator[str]:
    if name not in cfg.clusters:
        yield f"{where} sends to cluster {name!r}, which does not exist"


def _check_cluster(cfg: ProxyConfig, cluster: cluster_pb2.Cluster) -> Iterator[str]:
    if cluster.type != cluster_pb2.Cluster.DiscoveryType.EDS:
        return
    name = cluster.eds_cluster_config.service_name or cluster.name
    if name not in cfg.endpoints:
        yield f"EDS cluster {cluster.name!r} has no ClusterLoadAssignment {name!r}"
