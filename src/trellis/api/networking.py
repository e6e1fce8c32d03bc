"""networking.istio.io kinds: VirtualService, DestinationRule, Gateway, ServiceEntry,
WorkloadEntry, Sidecar, WorkloadGroup.

VirtualService and DestinationRule live in their own modules (they are big) and are re-exported
here, so `from trellis.api.networking import ...` reaches every model of the group.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from pydantic import Field

from trellis.api.base import ApiModel, Resource
from trellis.api.common import (
    NETWORKING_GROUP,
    NETWORKING_VERSIONS,
    Destination,
    HeaderOperations,
    Headers,
    LabelSelector,
    Percent,
    Port,
    PortSelector,
    ServerTLSMode,
    ServerTLSSettings,
    StringMatch,
    TLSProtocolVersion,
    WorkloadSelector,
)
from trellis.api.destination_rule import (
    ClientTLSMode,
    ClientTLSSettings,
    ConnectionPoolSettings,
    ConsistentHashLB,
    DestinationRule,
    DestinationRuleSpec,
    H2UpgradePolicy,
    HTTPCookie,
    HTTPSettings,
    LoadBalancerSettings,
    LocalityLbSetting,
    OutlierDetection,
    PortTrafficPolicy,
    SimpleLB,
    Subset,
    TcpKeepalive,
    TCPSettings,
    TrafficPolicy,
)
from trellis.api.virtual_service import (
    Abort,
    CorsPolicy,
    Delay,
    Delegate,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPMirrorPolicy,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    L4MatchAttributes,
    RegexRewrite,
    RouteDestination,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
    VirtualService,
    VirtualServiceSpec,
)


class Server(ApiModel):
    """One listener of a Gateway: a port, the hosts it exposes and optional TLS."""

    port: Port | None = None
    hosts: list[str] = Field(default_factory=list)
    tls: ServerTLSSettings | None = None
    bind: str | None = None
    default_endpoint: str | None = None
    name: str | None = None


class GatewaySpec(ApiModel):
    selector: dict[str, str] = Field(default_factory=dict)
    servers: list[Server] = Field(default_factory=list)


class Gateway(Resource):
    GROUP: ClassVar[str] = NETWORKING_GROUP
    KIND: ClassVar[str] = "Gateway"
    VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS

    spec: GatewaySpec


class WorkloadEntrySpec(ApiModel):
    """A non-Kubernetes workload (VM, process): address, named ports, labels, identity."""

    address: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None


class WorkloadEntry(Resource):
    GROUP: ClassVar[str] = NETWORKING_GROUP
    KIND: ClassVar[str] = "WorkloadEntry"
    VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS

    spec: WorkloadEntrySpec


class Location(enum.Enum):
    MESH_EXTERNAL = "MESH_EXTERNAL"
    MESH_INTERNAL = "MESH_INTERNAL"


class Resolution(enum.Enum):
    NONE = "NONE"
    STATIC = "STATIC"
    DNS = "DNS"
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    DYNAMIC_DNS = "DYNAMIC_DNS"


class ServiceEntrySpec(ApiModel):
    """Adds hosts to the mesh's registry (external APIs, VMs)."""

    hosts: list[str] = Field(default_factory=list)
    addresses: list[str] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    location: Location = Location.MESH_EXTERNAL
    resolution: Resolution = Resolution.NONE
    endpoints: list[WorkloadEntrySpec] = Field(default_factory=list)
    workload_selector: WorkloadSelector | None = None
    export_to: list[str] = Field(default_factory=list)
    subject_alt_names: list[str] = Field(default_factory=list)


class ServiceEntry(Resource):
    GROUP: ClassVar[str] = NETWORKING_GROUP
    KIND: ClassVar[str] = "ServiceEntry"
    VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS

    spec: ServiceEntrySpec


class CaptureMode(enum.Enum):
    DEFAULT = "DEFAULT"
    IPTABLES = "IPTABLES"
    NONE = "NONE"


class IstioIngressListener(ApiModel):
    port: Port
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None


class IstioEgressListener(ApiModel):
    port: Port | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[str] = Field(default_factory=list)


class OutboundTrafficPolicyMode(enum.Enum):
    REGISTRY_ONLY = "REGISTRY_ONLY"
    ALLOW_ANY = "ALLOW_ANY"


class OutboundTrafficPolicy(ApiModel):
    mode: OutboundTrafficPolicyMode = OutboundTrafficPolicyMode.ALLOW_ANY
    egress_proxy: Destination | None = None


class SidecarSpec(ApiModel):
    """Scopes what a sidecar listens for and which hosts it can reach."""

    workload_selector: WorkloadSelector | None = None
    ingress: list[IstioIngressListener] = Field(default_factory=list)
    egress: list[IstioEgressListener] = Field(default_factory=list)
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None


class Sidecar(Resource):
    GROUP: ClassVar[str] = NETWORKING_GROUP
    KIND: ClassVar[str] = "Sidecar"
    VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS

    spec: SidecarSpec


class WorkloadGroupMeta(ApiModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class WorkloadGroupSpec(ApiModel):
    """Template for WorkloadEntries of auto-registered VMs; the probe is kept as written."""

    metadata: WorkloadGroupMeta | None = None
    template: WorkloadEntrySpec
    probe: dict[str, Any] | None = None


class WorkloadGroup(Resource):
    GROUP: ClassVar[str] = NETWORKING_GROUP
    KIND: ClassVar[str] = "WorkloadGroup"
    VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS

    spec: WorkloadGroupSpec


__all__ = [
    "NETWORKING_GROUP",
    "NETWORKING_VERSIONS",
    "Abort",
    "CaptureMode",
    "ClientTLSMode",
    "ClientTLSSettings",
    "ConnectionPoolSettings",
    "ConsistentHashLB",
    "CorsPolicy",
    "Delay",
    "Delegate",
    "Destination",
    "DestinationRule",
    "DestinationRuleSpec",
    "Gateway",
    "GatewaySpec",
    "H2UpgradePolicy",
    "HTTPCookie",
    "HTTPDirectResponse",
    "HTTPFaultInjection",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPRedirect",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRoute",
    "HTTPRouteDestination",
    "HTTPSettings",
    "HeaderOperations",
    "Headers",
    "IstioEgressListener",
    "IstioIngressListener",
    "L4MatchAttributes",
    "LabelSelector",
    "LoadBalancerSettings",
    "LocalityLbSetting",
    "Location",
    "OutboundTrafficPolicy",
    "OutboundTrafficPolicyMode",
    "OutlierDetection",
    "Percent",
    "Port",
    "PortSelector",
    "PortTrafficPolicy",
    "RegexRewrite",
    "Resolution",
    "RouteDestination",
    "Server",
    "ServerTLSMode",
    "ServerTLSSettings",
    "ServiceEntry",
    "ServiceEntrySpec",
    "Sidecar",
    "SidecarSpec",
    "SimpleLB",
    "StringMatch",
    "Subset",
    "TCPRoute",
    "TCPSettings",
    "TLSMatchAttributes",
    "TLSProtocolVersion",
    "TLSRoute",
    "TcpKeepalive",
    "TrafficPolicy",
    "VirtualService",
    "VirtualServiceSpec",
    "WorkloadEntry",
    "WorkloadEntrySpec",
    "WorkloadGroup",
    "WorkloadGroupMeta",
    "WorkloadGroupSpec",
    "WorkloadSelector",
]
