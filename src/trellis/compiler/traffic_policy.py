"""DestinationRule trafficPolicy -> Envoy cluster settings (istio-notes §1.2).

Merging follows Istio's MergeTrafficPolicy: the top-level policy, then its portLevelSettings for
this port (which replace all four blocks at once), then each block the subset sets, then the
subset's own portLevelSettings. Every `build_*` returns None when the block does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.v3 import percent_pb2

from trellis.api.duration import parse_duration
from trellis.api.networking import (
    ClientTLSMode,
    ClientTLSSettings,
    ConnectionPoolSettings,
    DestinationRule,
    H2UpgradePolicy,
    HTTPSettings,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    SimpleLB,
    TCPSettings,
    TrafficPolicy,
)
from trellis.compiler.protos import duration_of, uint32
from trellis.model.registry import Protocol

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_MAX_U32 = 2**32 - 1
_LB = cluster_pb2.Cluster.LbPolicy
_ORIGINATING = (ClientTLSMode.SIMPLE, ClientTLSMode.MUTUAL)
_SIMPLE_LB = {
    SimpleLB.ROUND_ROBIN: _LB.ROUND_ROBIN,
    SimpleLB.RANDOM: _LB.RANDOM,
    SimpleLB.LEAST_REQUEST: _LB.LEAST_REQUEST,
    SimpleLB.LEAST_CONN: _LB.LEAST_REQUEST,
    SimpleLB.UNSPECIFIED: _LB.LEAST_REQUEST,
}


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    """The four blocks that decide one cluster's settings, after Istio's merge rules."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


def cluster_policy(rule: DestinationRule | None, subset: str, port: int) -> ClusterPolicy:
    """The effective policy for `outbound|port|subset|host` under `rule`."""
    result = ClusterPolicy()
    if rule is None:
        return result
    chosen = rule.spec.subset(subset) if subset else None
    for policy in (rule.spec.traffic_policy, chosen.traffic_policy if chosen else None):
        if policy is not None:
            result = _overlay_port(_overlay(result, policy), policy, port)
    return result


def _overlay(base: ClusterPolicy, policy: TrafficPolicy) -> ClusterPolicy:
    """Each block the policy sets replaces the base's block of the same name, whole."""
    return ClusterPolicy(
        load_balancer=policy.load_balancer or base.load_balancer,
        connection_pool=policy.connection_pool or base.connection_pool,
        outlier_detection=policy.outlier_detection or base.outlier_detection,
        tls=policy.tls or base.tls,
    )


def _overlay_port(base: ClusterPolicy, policy: TrafficPolicy, port: int) -> ClusterPolicy:
    """Port-level settings replace all four blocks; what they omit falls back to defaults."""
    match = _port_settings(policy, port)
    if match is None:
        return base
    return ClusterPolicy(
        match.load_balancer, match.connection_pool, match.outlier_detection, match.tls
    )


def _port_settings(policy: TrafficPolicy, port: int) -> PortTrafficPolicy | None:
    return next(
        (p for p in policy.port_level_settings if p.port is not None and p.port.number == port),
        None,
    )


# --- load balancing -------------------------------------------------------------------------


def apply_load_balancer(cluster: cluster_pb2.Cluster, lb: LoadBalancerSettings | None) -> None:
    """lb_policy plus the ring/maglev config; PASSTHROUGH turns the cluster into ORIGINAL_DST."""
    cluster.lb_policy = _LB.LEAST_REQUEST
    if lb is None:
        return
    if lb.consistent_hash is not None:
        _apply_consistent_hash(cluster, lb)
    elif lb.simple == SimpleLB.PASSTHROUGH:
        cluster.ClearField("eds_cluster_config")
        cluster.type = cluster_pb2.Cluster.DiscoveryType.ORIGINAL_DST
        cluster.lb_policy = _LB.CLUSTER_PROVIDED
    elif lb.simple is not None:
        cluster.lb_policy = _SIMPLE_LB[lb.simple]
    _apply_warmup(cluster, lb)
    locality = lb.locality_lb_setting
    if locality is not None and locality.enabled is not False and locality.distribute:
        # EDS then carries per-locality weights (compiler/locality.py); Envoy honours them
        # only with locality-weighted load balancing on.
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()


def _apply_warmup(cluster: cluster_pb2.Cluster, lb: LoadBalancerSettings) -> None:
    """`warmupDurationSecs` / `warmup`: Envoy's slow start, which only the round-robin and
    least-request balancers have (Istio ignores it for the others)."""
    window = lb.warmup.duration if lb.warmup else lb.warmup_duration_secs
    if window is None:
        return
    if cluster.lb_policy == _LB.ROUND_ROBIN:
        slow_start = cluster.round_robin_lb_config.slow_start_config
    elif cluster.lb_policy == _LB.LEAST_REQUEST:
        slow_start = cluster.least_request_lb_config.slow_start_config
    else:
        return
    slow_start.slow_start_window.CopyFrom(duration_of(window))
    if lb.warmup is not None and lb.warmup.minimum_percent is not None:
        slow_start.min_weight_percent.value = lb.warmup.minimum_percent
    if lb.warmup is not None and lb.warmup.aggression is not None:
        slow_start.aggression.default_value = lb.warmup.aggression
        slow_start.aggression.runtime_key = "upstream.slow_start.aggression"


def _apply_consistent_hash(cluster: cluster_pb2.Cluster, lb: LoadBalancerSettings) -> None:
    hashing = lb.consistent_hash
    assert hashing is not None
    if hashing.maglev is not None:
        cluster.lb_policy = _LB.MAGLEV
        if hashing.maglev.table_size is not None:
            cluster.maglev_lb_config.table_size.value = hashing.maglev.table_size
        return
    cluster.lb_policy = _LB.RING_HASH
    ring = hashing.ring_hash.minimum_ring_size if hashing.ring_hash else hashing.minimum_ring_size
    cluster.ring_hash_lb_config.minimum_ring_size.value = ring or 1024


# --- connection pool ------------------------------------------------------------------------


def build_circuit_breakers(
    pool: ConnectionPoolSettings | None,
) -> circuit_breaker_pb2.CircuitBreakers:
    """Istio's thresholds: unlimited unless the connection pool says otherwise."""
    tcp = pool.tcp if pool and pool.tcp else TCPSettings()
    http = pool.http if pool and pool.http else HTTPSettings()
    threshold = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=uint32(_or_max(tcp.max_connections)),
        max_pending_requests=uint32(_or_max(http.http1_max_pending_requests)),
        max_requests=uint32(_or_max(http.http2_max_requests)),
        max_retries=uint32(_or_max(http.max_retries)),
        track_remaining=True,
    )
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[threshold])


def _or_max(value: int | None) -> int:
    return _MAX_U32 if value is None else value


def build_tcp_keepalive(
    pool: ConnectionPoolSettings | None,
) -> cluster_pb2.UpstreamConnectionOptions | None:
    keepalive = pool.tcp.tcp_keepalive if pool and pool.tcp else None
    if keepalive is None:
        return None
    return cluster_pb2.UpstreamConnectionOptions(
        tcp_keepalive=address_pb2.TcpKeepalive(
            keepalive_probes=uint32(keepalive.probes),
            keepalive_time=uint32(_whole_seconds(keepalive.time)),
            keepalive_interval=uint32(_whole_seconds(keepalive.interval)),
        )
    )


def _whole_seconds(text: str | None) -> int | None:
    return None if text is None else max(1, round(parse_duration(text)))


def build_http_protocol_options(
    pool: ConnectionPoolSettings | None, protocol: Protocol
) -> hpo.HttpProtocolOptions | None:
    """Upstream HTTP settings: h2 for HTTP2/gRPC ports (or UPGRADE), pool limits and timeouts."""
    if not protocol.is_http:
        return None
    http = pool.http if pool and pool.http else HTTPSettings()
    tcp = pool.tcp if pool and pool.tcp else TCPSettings()
    common = _common_http_options(http, tcp)
    h2 = protocol != Protocol.HTTP or http.h2_upgrade_policy == H2UpgradePolicy.UPGRADE
    if common is None and not h2 and not http.use_client_protocol:
        return None
    options = hpo.HttpProtocolOptions(common_http_protocol_options=common)
    if http.use_client_protocol:
        options.use_downstream_protocol_config.http_protocol_options.SetInParent()
        options.use_downstream_protocol_config.http2_protocol_options.CopyFrom(_http2_options(http))
    elif h2:
        options.explicit_http_config.http2_protocol_options.CopyFrom(_http2_options(http))
    else:
        options.explicit_http_config.http_protocol_options.SetInParent()
    return options


def _common_http_options(
    http: HTTPSettings, tcp: TCPSettings
) -> protocol_pb2.HttpProtocolOptions | None:
    if (
        http.idle_timeout is None
        and http.max_requests_per_connection is None
        and tcp.max_connection_duration is None
    ):
        return None
    return protocol_pb2.HttpProtocolOptions(
        idle_timeout=duration_of(http.idle_timeout),
        max_requests_per_connection=uint32(http.max_requests_per_connection or None),
        max_connection_duration=duration_of(tcp.max_connection_duration),
    )


def _http2_options(http: HTTPSettings) -> protocol_pb2.Http2ProtocolOptions:
    options = protocol_pb2.Http2ProtocolOptions(
        max_concurrent_streams=uint32(http.max_concurrent_streams)
    )
    keepalive = http.http2_keep_alive
    if keepalive is not None and keepalive.interval is not None:
        options.connection_keepalive.interval.CopyFrom(duration_of(keepalive.interval))
        if keepalive.timeout is not None:
            options.connection_keepalive.timeout.CopyFrom(duration_of(keepalive.timeout))
    return options


# --- outlier detection ----------------------------------------------------------------------


def build_outlier_detection(
    outlier: OutlierDetection | None,
) -> outlier_detection_pb2.OutlierDetection | None:
    """Istio's translation: a set error count enforces at 100 %, a 0 count disables that check."""
    if outlier is None:
        return None
    out = outlier_detection_pb2.OutlierDetection(
        interval=duration_of(outlier.interval),
        base_ejection_time=duration_of(outlier.base_ejection_time),
        max_ejection_percent=uint32(outlier.max_ejection_percent or None),
    )
    if outlier.consecutive_5xx_errors is not None:
        _set_check(out, "consecutive_5xx", outlier.consecutive_5xx_errors)
    gateway = outlier.consecutive_gateway_errors
    if gateway is None:
        gateway = outlier.consecutive_errors  # deprecated field counted 502/503/504 only
    if gateway is not None:
        _set_check(out, "consecutive_gateway_failure", gateway)
    if outlier.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        local = outlier.consecutive_local_origin_failures
        if local:
            _set_check(out, "consecutive_local_origin_failure", local)
    return out


def _set_check(out: outlier_detection_pb2.OutlierDetection, field: str, count: int) -> None:
    getattr(out, field).value = count
    getattr(out, f"enforcing_{field}").value = 100 if count > 0 else 0


def healthy_panic_threshold(outlier: OutlierDetection | None) -> percent_pb2.Percent | None:
    """Istio sets the panic threshold (default 0 = off) whenever outlier detection is on."""
    if outlier is None:
        return None
    return percent_pb2.Percent(value=float(outlier.min_health_percent or 0))


# --- upstream TLS on HTTP clusters ----------------------------------------------------------


def with_auto_sni(
    options: hpo.HttpProtocolOptions | None, tls: ClientTLSSettings | None, protocol: Protocol
) -> hpo.HttpProtocolOptions | None:
    """DestinationRule `tls` SIMPLE/MUTUAL without `sni` on an HTTP port: as Istio does, Envoy
    takes the SNI from each request's Host (`auto_sni`), and, when it verifies the server
    against `caCertificates` without `subjectAltNames`, checks the certificate against that
    host too (`auto_san_validation`)."""
    if tls is None or tls.mode not in _ORIGINATING or tls.sni or not protocol.is_http:
        return options
    if options is None:
        options = hpo.HttpProtocolOptions()
        options.explicit_http_config.http_protocol_options.SetInParent()
    upstream = options.upstream_http_protocol_options
    upstream.auto_sni = True
    verifying = tls.ca_certificates and not tls.insecure_skip_verify
    if verifying and not tls.subject_alt_names:
        upstream.auto_san_validation = True
    return options
