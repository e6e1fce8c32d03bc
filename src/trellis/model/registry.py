"""Services and workloads as the compiler sees them: immutable values, no I/O.

The local runtime, ServiceEntry/WorkloadEntry and (later) Kubernetes all produce these.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_DOMAIN = "cluster.local"


class Protocol(enum.Enum):
    """Istio protocol selection: from the port name prefix or appProtocol."""

    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    HTTPS = "HTTPS"
    TLS = "TLS"
    TCP = "TCP"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC)

    @classmethod
    def from_port(cls, name: str, app_protocol: str = "") -> Protocol:
        """Istio's rule: appProtocol first, then the port name's prefix before '-'; else TCP."""
        candidate = (app_protocol or name.split("-", 1)[0]).lower()
        return _PROTOCOL_PREFIXES.get(candidate, cls.TCP)


_PROTOCOL_PREFIXES = {
    "http": Protocol.HTTP,
    "http2": Protocol.HTTP2,
    "grpc": Protocol.GRPC,
    "grpc-web": Protocol.GRPC,
    "https": Protocol.HTTPS,
    "tls": Protocol.TLS,
    "tcp": Protocol.TCP,
}


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    target_port: int
    protocol: Protocol


class Resolution(enum.Enum):
    """How a sidecar finds a service's endpoints (Istio's model.Resolution).

    CLIENT_SIDE_LB: EDS (v1 Services, ServiceEntry STATIC); DNS: STRICT_DNS cluster;
    DNS_ROUND_ROBIN: LOGICAL_DNS cluster; PASSTHROUGH: ServiceEntry NONE, the connection's
    original destination (ORIGINAL_DST cluster).
    """

    CLIENT_SIDE_LB = "CLIENT_SIDE_LB"
    DNS = "DNS"
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    PASSTHROUGH = "PASSTHROUGH"


@dataclass(frozen=True, slots=True)
class Service:
    """A service in the registry (from a v1 Service or a ServiceEntry host)."""

    name: str
    namespace: str
    vip: str
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str] = field(default_factory=dict)
    mesh_external: bool = False
    domain: str = DEFAULT_DOMAIN
    # ServiceEntry hosts (registry/service_entries.py): the host as written is the FQDN.
    host: str = ""
    resolution: Resolution = Resolution.CLIENT_SIDE_LB
    # (service port number, endpoint) pairs a ServiceEntry lists itself (`endpoints`).
    static_endpoints: tuple[tuple[int, Endpoint], ...] = ()
    export_to: tuple[str, ...] = ()

    @property
    def hostname(self) -> str:
        """The FQDN Istio uses for cluster names and virtual hosts."""
        return self.host or f"{self.name}.{self.namespace}.svc.{self.domain}"

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)


@dataclass(frozen=True, slots=True)
class Workload:
    """One running instance ("pod"): its address, labels and identity."""

    name: str
    namespace: str
    ip: str
    labels: Mapping[str, str]
    service_account: str = "default"
    has_sidecar: bool = True
    ports: tuple[int, ...] = ()
    # A WorkloadEntry's named ports: a service port of that name reaches this number instead
    # of the service's targetPort (Istio's WorkloadEntry `ports`).
    named_ports: Mapping[str, int] = field(default_factory=dict)

    def target_port(self, port: ServicePort) -> int:
        """Where this workload listens for a service port."""
        return self.named_ports.get(port.name, port.target_port)

    def matches(self, selector: Mapping[str, str]) -> bool:
        """Kubernetes label-selector semantics (matchLabels); an empty selector matches nothing."""
        return bool(selector) and all(self.labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address behind a service port (a workload instance)."""

    address: str
    port: int
    labels: Mapping[str, str]
    workload: str
    namespace: str
    has_sidecar: bool = True
