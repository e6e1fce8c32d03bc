"""Errors of the mesh CA: each names the file, certificate or token that is wrong and why."""

from __future__ import annotations

from trellis.errors import TrellisError


class CAError(TrellisError):
    """The CA cannot do what was asked: bad CA material, a bad CSR, a TTL over the limit."""


class PluginCAError(CAError):
    """The operator's CA directory (Istio's plug-in layout) is unusable; names the file."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class InvalidToken(TrellisError):
    """A join token is malformed, tampered with, expired or grants another identity."""


class InvalidSpiffeId(TrellisError):
    """A string is not a Trellis SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)."""
