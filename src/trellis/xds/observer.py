"""What the xDS server reports as it works, for trellisd's metrics (istiod's pilot_* family).

The server only calls these hooks; it never knows how they are exported. `NullObserver` is the
default, so tests and benchmarks that do not care pay nothing.
"""

from __future__ import annotations

from typing import Protocol


class XdsObserver(Protocol):
    def response_sent(self, type_url: str) -> None:
        """One DiscoveryResponse of this type left for a proxy (a push, or an answer)."""
        ...

    def push_time(self, type_url: str, seconds: float) -> None:
        """Generating and sending one type's response took `seconds` (no ACK wait)."""
        ...

    def converged(self, seconds: float) -> None:
        """A proxy ACKed all the config of a push `seconds` after the change that caused it."""
        ...

    def rejected(self, proxy_key: str, type_url: str, message: str) -> None:
        """The proxy NACKed a response of this type with Envoy's error detail."""
        ...

    def disconnected(self, proxy_key: str) -> None:
        """The proxy's stream ended: forget what was recorded per proxy."""
        ...


class NullObserver:
    """Records nothing."""

    def response_sent(self, type_url: str) -> None:
        pass

    def push_time(self, type_url: str, seconds: float) -> None:
        pass

    def converged(self, seconds: float) -> None:
        pass

    def rejected(self, proxy_key: str, type_url: str, message: str) -> None:
        pass

    def disconnected(self, proxy_key: str) -> None:
        pass
