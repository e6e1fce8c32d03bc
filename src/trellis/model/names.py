"""Envoy resource names as a contract (DESIGN §4, istio-notes §0.4).

istioctl habits, EnvoyFilter matches and our own stats translation all key on these names, so
they are built and parsed in exactly one place. Every `parse` is the inverse of its builder.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

BLACKHOLE = "BlackHoleCluster"
PASSTHROUGH = "PassthroughCluster"
INBOUND_PASSTHROUGH = "InboundPassthroughCluster"

VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_OUTBOUND_PORT = 15001
VIRTUAL_INBOUND = "virtualInbound"
VIRTUAL_INBOUND_PORT = 15006
# Without capture (`--capture=proxy`) the sidecar is the app's HTTP proxy on POD_IP:15001,
# routing with one route configuration that covers every mesh HTTP service and port.
HTTP_PROXY_PORT = 15001
HTTP_PROXY_ROUTE = "proxy"

WILDCARD_ADDRESS = "0.0.0.0"
LOCALHOST = "127.0.0.1"
# Istio binds inbound passthrough connections to this source so capture rules can tell them apart.
INBOUND_PASSTHROUGH_BIND = "127.0.0.6"

ALLOW_ANY_VHOST = "allow_any"
BLOCK_ALL_VHOST = "block_all"

_GATEWAY_ROUTE_PREFIX = "http."


class Direction(enum.Enum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


@dataclass(frozen=True, slots=True)
class ClusterName:
    """`outbound|PORT|SUBSET|HOST` or `inbound|PORT||` taken apart."""

    direction: Direction
    port: int
    subset: str = ""
    host: str = ""

    @staticmethod
    def outbound(port: int, subset: str, host: str) -> str:
        return str(ClusterName(Direction.OUTBOUND, port, subset, host))

    @staticmethod
    def inbound(port: int) -> str:
        return str(ClusterName(Direction.INBOUND, port))

    @classmethod
    def parse(cls, name: str) -> ClusterName:
        """Inverse of `outbound`/`inbound`; ValueError for special or foreign cluster names."""
        parts = name.split("|")
        if len(parts) != 4 or not parts[1].isdigit():
            raise ValueError(f"not a service cluster name: {name!r}")
        if parts[0] not in _DIRECTIONS:
            raise ValueError(f"unknown direction in cluster name: {name!r}")
        return cls(Direction(parts[0]), int(parts[1]), parts[2], parts[3])

    def __str__(self) -> str:
        return f"{self.direction.value}|{self.port}|{self.subset}|{self.host}"


_DIRECTIONS = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class ListenerName:
    """`0.0.0.0_9080` (HTTP, any address) or `<vip>_<port>` (TCP, one service) taken apart."""

    address: str
    port: int

    @staticmethod
    def wildcard(port: int) -> str:
        return str(ListenerName(WILDCARD_ADDRESS, port))

    @staticmethod
    def for_address(address: str, port: int) -> str:
        return str(ListenerName(address, port))

    @classmethod
    def parse(cls, name: str) -> ListenerName:
        address, sep, port = name.rpartition("_")
        if not sep or not address or not port.isdigit():
            raise ValueError(f"not an address_port listener name: {name!r}")
        return cls(address, int(port))

    def __str__(self) -> str:
        return f"{self.address}_{self.port}"


@dataclass(frozen=True, slots=True)
class RouteConfigName:
    """`9080` (sidecar outbound, by port) or `http.8080` (gateway HTTP server) taken apart."""

    port: int
    gateway: bool = False

    @staticmethod
    def sidecar(port: int) -> str:
        return str(RouteConfigName(port))

    @staticmethod
    def for_gateway(port: int) -> str:
        return str(RouteConfigName(port, gateway=True))

    @classmethod
    def parse(cls, name: str) -> RouteConfigName:
        gateway = name.startswith(_GATEWAY_ROUTE_PREFIX)
        number = name.removeprefix(_GATEWAY_ROUTE_PREFIX)
        if not number.isdigit():
            raise ValueError(f"not a route configuration name: {name!r}")
        return cls(int(number), gateway)

    def __str__(self) -> str:
        return f"{_GATEWAY_ROUTE_PREFIX}{self.port}" if self.gateway else str(self.port)


@dataclass(frozen=True, slots=True)
class VirtualHostName:
    """`HOST:PORT` taken apart."""

    host: str
    port: int

    @staticmethod
    def build(host: str, port: int) -> str:
        return str(VirtualHostName(host, port))

    @classmethod
    def parse(cls, name: str) -> VirtualHostName:
        host, sep, port = name.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"not a HOST:PORT virtual host name: {name!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def outbound_stat_prefix(port: int) -> str:
    """HCM stat prefix of an outbound listener, as Istio names it."""
    return f"outbound_{WILDCARD_ADDRESS}_{port}"


def inbound_stat_prefix(port: int) -> str:
    return f"inbound_{WILDCARD_ADDRESS}_{port}"
