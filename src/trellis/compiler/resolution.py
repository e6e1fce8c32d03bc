"""How an outbound cluster finds its endpoints, by the service's resolution (ServiceEntry).

v1 Services and ServiceEntry STATIC use EDS (the default in clusters.py). ServiceEntry DNS is a
STRICT_DNS cluster on the endpoints' addresses, or on the host itself when it lists none;
DNS_ROUND_ROBIN is LOGICAL_DNS (one name, Envoy keeps one connection target); NONE is
ORIGINAL_DST: the sidecar forwards to wherever the app's connection was going.
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.cluster.v3 import cluster_pb2

from trellis.compiler.endpoints import build_load_assignment
from trellis.compiler.protos import duration
from trellis.model.push_context import labels_match
from trellis.model.registry import Endpoint, Resolution, Service, ServicePort

_TYPE = cluster_pb2.Cluster.DiscoveryType
_DNS_TYPES = {Resolution.DNS: _TYPE.STRICT_DNS, Resolution.DNS_ROUND_ROBIN: _TYPE.LOGICAL_DNS}
# Istio's MeshConfig dnsRefreshRate default; Envoy's own default would be 5 s.
DNS_REFRESH_S = 60.0


def apply_resolution(
    cluster: cluster_pb2.Cluster,
    service: Service,
    port: ServicePort,
    subset_labels: Mapping[str, str],
) -> None:
    """Turn an EDS cluster into the DNS or ORIGINAL_DST cluster the resolution asks for."""
    if service.resolution is Resolution.PASSTHROUGH:
        cluster.ClearField("eds_cluster_config")
        cluster.ClearField("lb_config")
        cluster.type = _TYPE.ORIGINAL_DST
        cluster.lb_policy = cluster_pb2.Cluster.LbPolicy.CLUSTER_PROVIDED
        return
    dns_type = _DNS_TYPES.get(service.resolution)
    if dns_type is None:
        return
    endpoints = dns_endpoints(service, port, subset_labels)
    if dns_type == _TYPE.LOGICAL_DNS:
        endpoints = endpoints[:1]  # Envoy allows exactly one address in a LOGICAL_DNS cluster
    cluster.ClearField("eds_cluster_config")
    cluster.type = dns_type
    cluster.dns_lookup_family = cluster_pb2.Cluster.DnsLookupFamily.V4_ONLY
    cluster.respect_dns_ttl = True
    cluster.dns_refresh_rate.CopyFrom(duration(DNS_REFRESH_S))
    cluster.load_assignment.CopyFrom(build_load_assignment(cluster.name, endpoints))


def dns_endpoints(
    service: Service, port: ServicePort, subset_labels: Mapping[str, str]
) -> list[Endpoint]:
    """The entry's endpoints on this port (a subset's by label), else the host itself."""
    listed = [e for number, e in service.static_endpoints if number == port.port]
    if not listed:
        return [_host_endpoint(service, port)]
    return [e for e in listed if not subset_labels or labels_match(subset_labels, e.labels)]


def _host_endpoint(service: Service, port: ServicePort) -> Endpoint:
    return Endpoint(
        address=service.hostname,
        port=port.target_port,
        labels={},
        workload=service.hostname,
        namespace=service.namespace,
        has_sidecar=False,
    )
