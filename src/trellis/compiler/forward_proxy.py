"""Passthrough without capture: Envoy's dynamic forward proxy (`--capture=proxy`, DESIGN §7).

With iptables capture, PassthroughCluster is ORIGINAL_DST: it connects wherever the app's
connection was going. A request that reached the sidecar as the app's HTTP proxy has no
original destination (it would be the proxy itself), so there PassthroughCluster resolves the
request's Host instead. The HTTP filter and the cluster must name the same DNS cache.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import dynamic_forward_proxy_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from trellis.compiler.protos import duration, pack
from trellis.compiler.traffic_policy import build_circuit_breakers
from trellis.model import names
from trellis.model.snapshot import MeshConfig

DYNAMIC_FORWARD_PROXY_FILTER = "envoy.filters.http.dynamic_forward_proxy"
DYNAMIC_FORWARD_PROXY_CLUSTER = "envoy.clusters.dynamic_forward_proxy"
DNS_CACHE = "dynamic_forward_proxy_cache_config"


def dns_cache_config() -> dns_cache_pb2.DnsCacheConfig:
    return dns_cache_pb2.DnsCacheConfig(
        name=DNS_CACHE, dns_lookup_family=cluster_pb2.Cluster.DnsLookupFamily.V4_ONLY
    )


def dynamic_forward_proxy_filter() -> hcm.HttpFilter:
    """Resolves the Host of requests routed to a dynamic forward proxy cluster; others pass."""
    config = dynamic_forward_proxy_pb2.FilterConfig(dns_cache_config=dns_cache_config())
    return hcm.HttpFilter(name=DYNAMIC_FORWARD_PROXY_FILTER, typed_config=pack(config))


def build_forward_passthrough_cluster(mesh: MeshConfig) -> cluster_pb2.Cluster:
    """PassthroughCluster for proxy mode: to the host the request names, not the socket's."""
    config = dfp_cluster_pb2.ClusterConfig(dns_cache_config=dns_cache_config())
    return cluster_pb2.Cluster(
        name=names.PASSTHROUGH,
        cluster_type=cluster_pb2.Cluster.CustomClusterType(
            name=DYNAMIC_FORWARD_PROXY_CLUSTER, typed_config=pack(config)
        ),
        lb_policy=cluster_pb2.Cluster.LbPolicy.CLUSTER_PROVIDED,
        connect_timeout=duration(mesh.connect_timeout_s),
        circuit_breakers=build_circuit_breakers(None),
    )
