"""What the xDS server needs from the rest of trellisd, and what it reports back.

The server never decides what config means: it asks a generator for "all resources of this type
for this proxy" and streams the difference. Statuses feed `trellis proxy-status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from trellis.model.proxy import Proxy


class ConfigGenerator(Protocol):
    def __call__(self, proxy: Proxy, type_url: str) -> Mapping[str, Message]:
        """Every resource of `type_url` this proxy should have, by resource name."""
        ...


@dataclass(frozen=True, slots=True)
class TypeStatus:
    type_url: str
    sent_version: str  # last version sent ("" if none)
    acked_version: str  # last version Envoy ACKed
    nacked_version: str  # last version Envoy rejected ("" if none since the last ACK)
    nack_message: str  # Envoy's error_detail for that rejection


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    proxy: Proxy
    connected_since: float  # unix time
    delta: bool  # delta xDS (True) or state of the world
    types: tuple[TypeStatus, ...]

    @property
    def synced(self) -> bool:
        return all(t.sent_version == t.acked_version and not t.nacked_version for t in self.types)


@dataclass(frozen=True, slots=True)
class XdsCounters:
    """The xDS server's counters at one moment, for trellisd to export as metrics."""

    pushes_total: int  # responses sent (every type, every proxy)
    push_seconds_total: float  # time debounced pushes took, start to last ACK, summed
    nacks_total: int
    connected_proxies: int
    proxy_pushes_total: int = 0  # debounced push sequences finished, one per proxy per push
