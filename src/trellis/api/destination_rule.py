"""DestinationRule (networking.istio.io): policies for traffic after routing picked a host.

Subset and port-level policies replace the matching top-level block whole (istio-notes §1.2).
"""

from __future__ import annotations

import enum
from typing import ClassVar

from pydantic import Field

from trellis.api.base import ApiModel, Resource
from trellis.api.common import (
    NETWORKING_GROUP,
    NETWORKING_VERSIONS,
    LabelSelector,
    PortSelector,
)
from trellis.api.duration import Duration


class SimpleLB(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    LEAST_REQUEST = "LEAST_REQUEST"
    LEAST_CONN = "LEAST_CONN"  # deprecated alias of LEAST_REQUEST
    ROUND_ROBIN = "ROUND_ROBIN"
    RANDOM = "RANDOM"
    PASSTHROUGH = "PASSTHROUGH"


class HTTPCookie(ApiModel):
    name: str
    path: str | None = None
    ttl: Duration | None = None


class RingHash(ApiModel):
    minimum_ring_size: int | None = None


class Maglev(ApiModel):
    table_size: int | None = None


class ConsistentHashLB(ApiModel):
    """Hash key (header, cookie, source IP or query parameter) plus ring/maglev algorithm."""

    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: Maglev | None = None
    minimum_ring_size: int | None = None  # deprecated; ringHash.minimumRingSize


class LocalityDistribute(ApiModel):
    from_: str = Field(alias="from")
    to: dict[str, int] = Field(default_factory=dict)


class LocalityFailover(ApiModel):
    from_: str = Field(alias="from")
    to: str


class LocalityLbSetting(ApiModel):
    distribute: list[LocalityDistribute] = Field(default_factory=list)
    failover: list[LocalityFailover] = Field(default_factory=list)
    failover_priority: list[str] = Field(default_factory=list)
    enabled: bool | None = None


class WarmupConfiguration(ApiModel):
    duration: Duration
    minimum_percent: float | None = None
    aggression: float | None = None


class LoadBalancerSettings(ApiModel):
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLbSetting | None = None
    warmup_duration_secs: Duration | None = None
    warmup: WarmupConfiguration | None = None


class TcpKeepalive(ApiModel):
    probes: int | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(ApiModel):
    max_connections: int | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


class H2UpgradePolicy(enum.Enum):
    DEFAULT = "DEFAULT"
    DO_NOT_UPGRADE = "DO_NOT_UPGRADE"
    UPGRADE = "UPGRADE"


class HTTP2KeepAlive(ApiModel):
    interval: Duration | None = None
    timeout: Duration | None = None


class HTTPSettings(ApiModel):
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: H2UpgradePolicy | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: int | None = None
    http2_keep_alive: HTTP2KeepAlive | None = None


class ConnectionPoolSettings(ApiModel):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(ApiModel):
    consecutive_errors: int | None = None  # deprecated
    consecutive_5xx_errors: int | None = Field(default=None, alias="consecutive5xxErrors")
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


class ClientTLSMode(enum.Enum):
    DISABLE = "DISABLE"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"


class ClientTLSSettings(ApiModel):
    mode: ClientTLSMode = ClientTLSMode.DISABLE
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] = Field(default_factory=list)
    sni: str | None = None
    insecure_skip_verify: bool | None = None


class TunnelProtocol(enum.Enum):
    CONNECT = "CONNECT"
    POST = "POST"


class TunnelSettings(ApiModel):
    protocol: TunnelProtocol | None = None
    target_host: str
    target_port: int


class ProxyProtocolVersion(enum.Enum):
    V1 = "V1"
    V2 = "V2"


class ProxyProtocol(ApiModel):
    version: ProxyProtocolVersion | None = None


class PortTrafficPolicy(ApiModel):
    """Policy for one port; replaces the destination-level blocks it sets, wholesale."""

    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TrafficPolicy(ApiModel):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] = Field(default_factory=list)
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None


class Subset(ApiModel):
    """A named group of a service's endpoints, picked by labels (e.g. version: v1)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(ApiModel):
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    export_to: list[str] = Field(default_factory=list)
    workload_selector: LabelSelector | None = None

    def subset(self, name: str) -> Subset | None:
        """The subset called `name`, if this rule defines it."""
        return next((s for s in self.subsets if s.name == name), None)


class DestinationRule(Resource):
    GROUP: ClassVar[str] = NETWORKING_GROUP
    KIND: ClassVar[str] = "DestinationRule"
    VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS

    spec: DestinationRuleSpec
