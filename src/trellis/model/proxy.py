"""The proxy asking for config: who it is, from its Envoy node id and metadata."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class ProxyType(enum.Enum):
    SIDECAR = "sidecar"
    ROUTER = "router"  # ingress/egress gateway


class InterceptionMode(enum.Enum):
    """How the app's traffic reaches its sidecar (Istio's node metadata INTERCEPTION_MODE).

    REDIRECT/TPROXY: captured by iptables, so the sidecar gets virtualOutbound/virtualInbound.
    NONE: no capture (`--capture=proxy`, DESIGN §7): the sidecar binds the pod address itself
    and apps reach it as their HTTP proxy.
    """

    REDIRECT = "REDIRECT"
    TPROXY = "TPROXY"
    NONE = "NONE"


@dataclass(frozen=True, slots=True)
class Proxy:
    """A connected (or about to connect) Envoy.

    The node id is Istio's `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local`; labels and the
    service account travel in node metadata (keys LABELS, SERVICE_ACCOUNT, as Istio's agent sends),
    and so do INTERCEPTION_MODE and APP_HOST.
    """

    type: ProxyType
    ip: str
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    interception: InterceptionMode = InterceptionMode.REDIRECT
    # Where the app listens, for inbound clusters: loopback in a pod; its own private loopback
    # address without capture, where pods share the host's network (metadata APP_HOST).
    app_host: str = "127.0.0.1"

    @property
    def captured(self) -> bool:
        """True when iptables hands the app's connections to the sidecar."""
        return self.interception is not InterceptionMode.NONE

    @property
    def id(self) -> str:
        return f"{self.type.value}~{self.ip}~{self.name}.{self.namespace}~{self.namespace}.svc.cluster.local"

    @property
    def key(self) -> str:
        """NAME.NAMESPACE: how the CLI and proxy-status name a proxy."""
        return f"{self.name}.{self.namespace}"
