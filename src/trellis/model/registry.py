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

    @property
    def hostname(self) -> str:
        """The FQDN Istio uses for cluster names and virtual hosts."""
        return f"{self.name}.{self.namespace}.svc.{self.domain}"

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
