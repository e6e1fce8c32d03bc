"""The proxy asking for config: who it is, from its Envoy node id and metadata."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class ProxyType(enum.Enum):
    SIDECAR = "sidecar"
    ROUTER = "router"  # ingress/egress gateway


@dataclass(frozen=True, slots=True)
class Proxy:
    """A connected (or about to connect) Envoy.

    The node id is Istio's `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local`; labels and the
    service account travel in node metadata (keys LABELS, SERVICE_ACCOUNT, as Istio's agent sends).
    """

    type: ProxyType
    ip: str
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"

    @property
    def id(self) -> str:
        return f"{self.type.value}~{self.ip}~{self.name}.{self.namespace}~{self.namespace}.svc.cluster.local"

    @property
    def key(self) -> str:
        """NAME.NAMESPACE: how the CLI and proxy-status name a proxy."""
        return f"{self.name}.{self.namespace}"
