"""CDS: outbound service clusters (+ DestinationRule subsets), inbound clusters and the
special Passthrough/BlackHole clusters, named as Istio names them (DESIGN §4)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.matcher.v3 import string_pb2

from trellis.api.duration import parse_duration
from trellis.api.networking import ClientTLSMode, ClientTLSSettings, DestinationRule
from trellis.compiler.forward_proxy import build_forward_passthrough_cluster
from trellis.compiler.mtls import apply_client_mtls
from trellis.compiler.protos import ads_config_source, duration, pack, socket_address, struct
from trellis.compiler.resolution import apply_resolution
from trellis.compiler.sidecar_ingress import build_sidecar_ingress_clusters
from trellis.compiler.telemetry import track_request_sizes
from trellis.compiler.tracing import build_tracing_clusters
from trellis.compiler.traffic_policy import (
    HTTP_PROTOCOL_OPTIONS,
    ClusterPolicy,
    apply_load_balancer,
    build_circuit_breakers,
    build_http_protocol_options,
    build_outlier_detection,
    build_tcp_keepalive,
    cluster_policy,
    healthy_panic_threshold,
    with_auto_sni,
)
from trellis.model import names
from trellis.model.names import ClusterName
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Protocol, Service, ServicePort
from trellis.model.snapshot import MeshConfig

_TYPE = cluster_pb2.Cluster.DiscoveryType
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"


def build_clusters(proxy: Proxy, push: PushContext) -> dict[str, cluster_pb2.Cluster]:
    """Every cluster this proxy should have, by name."""
    clusters = [*build_outbound_clusters(proxy, push), *build_special_clusters(proxy, push.mesh)]
    if proxy.type == ProxyType.SIDECAR:
        clusters.extend(build_inbound_clusters(proxy, push))
    return {c.name: c for c in clusters}


def build_outbound_clusters(proxy: Proxy, push: PushContext) -> list[cluster_pb2.Cluster]:
    clusters: list[cluster_pb2.Cluster] = []
    for service in push.outbound_services(proxy):  # exportTo + Sidecar egress scope
        clusters.extend(build_service_clusters(proxy, push, service))
    return clusters


def build_service_clusters(
    proxy: Proxy, push: PushContext, service: Service
) -> list[cluster_pb2.Cluster]:
    """One outbound service's clusters: per port, the default one and one per subset (the
    compile cache keeps them per service: compiler/dependencies.py)."""
    rule = push.destination_rule(service.hostname, proxy.namespace)
    subsets = [""] + ([s.name for s in rule.spec.subsets] if rule else [])
    return [
        build_outbound_cluster(service, port, subset, rule, push.mesh)
        for port in service.ports
        for subset in subsets
    ]


def build_outbound_cluster(
    service: Service,
    port: ServicePort,
    subset: str,
    rule: DestinationRule | None,
    mesh: MeshConfig,
) -> cluster_pb2.Cluster:
    """`outbound|PORT|SUBSET|HOST`: EDS over ADS with the DestinationRule's policy applied."""
    name = ClusterName.outbound(port.port, subset, service.hostname)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=_TYPE.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_config_source(), service_name=name
        ),
        metadata=_istio_metadata(service, subset),
    )
    track_request_sizes(cluster, port.protocol)  # istio_request_bytes / _response_bytes
    policy = cluster_policy(rule, subset, port.port)
    apply_policy(cluster, policy, port.protocol, mesh)
    apply_resolution(cluster, service, port, _subset_labels(rule, subset))
    if not service.mesh_external:
        apply_client_mtls(cluster, policy.tls, mesh.trust_domain)
    return cluster


def _subset_labels(rule: DestinationRule | None, subset: str) -> dict[str, str]:
    found = next((s for s in rule.spec.subsets if s.name == subset), None) if rule else None
    return dict(found.labels) if found else {}


def apply_policy(
    cluster: cluster_pb2.Cluster, policy: ClusterPolicy, protocol: Protocol, mesh: MeshConfig
) -> None:
    """Connection pool, load balancing, outlier detection and TLS of one cluster."""
    pool = policy.connection_pool
    connect = pool.tcp.connect_timeout if pool and pool.tcp else None
    cluster.connect_timeout.CopyFrom(
        duration(parse_duration(connect) if connect else mesh.connect_timeout_s)
    )
    cluster.circuit_breakers.CopyFrom(build_circuit_breakers(pool))
    apply_load_balancer(cluster, policy.load_balancer)
    _set_optional(cluster, "outlier_detection", build_outlier_detection(policy.outlier_detection))
    panic = healthy_panic_threshold(policy.outlier_detection)
    if panic is not None:
        cluster.common_lb_config.healthy_panic_threshold.CopyFrom(panic)
    _set_optional(cluster, "upstream_connection_options", build_tcp_keepalive(pool))
    _set_optional(cluster, "transport_socket", build_upstream_tls(policy.tls))
    options = with_auto_sni(build_http_protocol_options(pool, protocol), policy.tls, protocol)
    if options is not None:
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))


def _set_optional(cluster: cluster_pb2.Cluster, field: str, value: object | None) -> None:
    if value is not None:
        getattr(cluster, field).CopyFrom(value)


def _istio_metadata(service: Service, subset: str) -> base_pb2.Metadata:
    """Istio's `filter_metadata.istio`: which service (and subset) a cluster stands for."""
    values: dict[str, object] = {
        "services": [
            {"host": service.hostname, "name": service.name, "namespace": service.namespace}
        ]
    }
    if subset:
        values["subset"] = subset
    return base_pb2.Metadata(filter_metadata={"istio": struct(values)})


# --- upstream TLS ---------------------------------------------------------------------------


def build_upstream_tls(tls: ClientTLSSettings | None) -> base_pb2.TransportSocket | None:
    """DestinationRule tls SIMPLE/MUTUAL with files; DISABLE stays plaintext. ISTIO_MUTUAL and
    auto mTLS (unset) are mtls.apply_client_mtls's. TODO: `credentialName` (SDS from a Secret).
    """
    if tls is None or tls.mode not in (ClientTLSMode.SIMPLE, ClientTLSMode.MUTUAL):
        return None
    context = tls_pb2.UpstreamTlsContext(sni=tls.sni or "")
    common = context.common_tls_context
    if tls.mode == ClientTLSMode.MUTUAL and tls.client_certificate and tls.private_key:
        common.tls_certificates.append(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=tls.client_certificate),
                private_key=base_pb2.DataSource(filename=tls.private_key),
            )
        )
    if tls.ca_certificates and not tls.insecure_skip_verify:
        common.validation_context.CopyFrom(_validation_context(tls))
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def _validation_context(tls: ClientTLSSettings) -> common_pb2.CertificateValidationContext:
    context = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(filename=tls.ca_certificates or "")
    )
    if tls.ca_crl:
        context.crl.filename = tls.ca_crl
    for san in tls.subject_alt_names:
        san_type = (
            common_pb2.SubjectAltNameMatcher.SanType.URI
            if san.startswith("spiffe://")
            else common_pb2.SubjectAltNameMatcher.SanType.DNS
        )
        context.match_typed_subject_alt_names.append(
            common_pb2.SubjectAltNameMatcher(
                san_type=san_type, matcher=string_pb2.StringMatcher(exact=san)
            )
        )
    return context


# --- inbound and special clusters -----------------------------------------------------------


def build_inbound_clusters(proxy: Proxy, push: PushContext) -> list[cluster_pb2.Cluster]:
    """`inbound|TARGETPORT||` -> the app (on 127.0.0.1 in a pod, on its private loopback
    address without capture), one per port of a service selecting us; a Sidecar's ingress
    listeners replace those ports (sidecar_ingress.py)."""
    if proxy.captured and (ingress := push.sidecar_scope(proxy).ingress):
        return build_sidecar_ingress_clusters(proxy, push, ingress)
    clusters: dict[str, cluster_pb2.Cluster] = {}
    for service in push.services_selecting(proxy):
        for port in service.ports:
            name = ClusterName.inbound(port.target_port)
            if name not in clusters:
                clusters[name] = build_inbound_cluster(
                    service, port, push.mesh, app_host=proxy.app_host
                )
    return list(clusters.values())


def build_inbound_cluster(
    service: Service, port: ServicePort, mesh: MeshConfig, *, app_host: str = names.LOCALHOST
) -> cluster_pb2.Cluster:
    name = ClusterName.inbound(port.target_port)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=_TYPE.STATIC,
        connect_timeout=duration(mesh.connect_timeout_s),
        load_assignment=_static_assignment(name, app_host, port.target_port),
        circuit_breakers=build_circuit_breakers(None),
        metadata=_istio_metadata(service, ""),
    )
    track_request_sizes(cluster, port.protocol)  # istio_request_bytes / _response_bytes
    options = build_http_protocol_options(None, port.protocol)
    if options is not None:
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return cluster


def _static_assignment(name: str, address: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(address, port))
    )
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
    )


def build_special_clusters(proxy: Proxy, mesh: MeshConfig) -> list[cluster_pb2.Cluster]:
    """BlackHole (drop), Passthrough (to the original destination) and, for sidecars,
    InboundPassthrough (unknown inbound ports straight to the app). Without capture there is
    no original destination: Passthrough goes by the request's Host, and nothing is inbound
    passthrough."""
    if not proxy.captured:
        return [
            build_blackhole_cluster(mesh),
            build_forward_passthrough_cluster(mesh),
            *build_tracing_clusters(mesh),
        ]
    clusters = [build_blackhole_cluster(mesh), build_passthrough_cluster(names.PASSTHROUGH, mesh)]
    if proxy.type == ProxyType.SIDECAR:
        inbound = build_passthrough_cluster(names.INBOUND_PASSTHROUGH, mesh)
        inbound.upstream_bind_config.CopyFrom(
            address_pb2.BindConfig(
                source_address=address_pb2.SocketAddress(
                    address=names.INBOUND_PASSTHROUGH_BIND, port_value=0
                )
            )
        )
        clusters.append(inbound)
    return clusters + build_tracing_clusters(mesh)


def build_blackhole_cluster(mesh: MeshConfig) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=names.BLACKHOLE, type=_TYPE.STATIC, connect_timeout=duration(mesh.connect_timeout_s)
    )


def build_passthrough_cluster(name: str, mesh: MeshConfig) -> cluster_pb2.Cluster:
    """ORIGINAL_DST: connect wherever the captured connection was going, same HTTP protocol."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=_TYPE.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.LbPolicy.CLUSTER_PROVIDED,
        connect_timeout=duration(mesh.connect_timeout_s),
        circuit_breakers=build_circuit_breakers(None),
    )
    options = hpo.HttpProtocolOptions()
    options.use_downstream_protocol_config.http_protocol_options.SetInParent()
    options.use_downstream_protocol_config.http2_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return cluster
