"""Who called: the peer identity a client sidecar sends and a server's stats name (DESIGN §6).

Upstream Envoy has no metadata exchange, so a client sidecar puts its own identity in the
`x-trellis-peer` request header (Envoy fills it from the `TRELLIS_PEER` environment variable
the agent sets, so every proxy of the mesh shares one route configuration). The server's
inbound route has one virtual cluster per mesh workload, named with the same string and
matching it exactly, so Envoy counts requests per caller; the agent turns the virtual-cluster
name back into Istio's source labels at scrape time.

One string serves as header value and as Envoy stat name, so it must not contain a dot (Envoy
splits stat names at dots): every character outside `[A-Za-z0-9_-]` is percent-encoded.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

PEER_HEADER = "x-trellis-peer"
PEER_ENV = "TRELLIS_PEER"
# Envoy's header formatter reads the variable when it builds the header.
PEER_HEADER_VALUE = f"%ENVIRONMENT({PEER_ENV})%"
# Virtual clusters on the server's inbound route: Envoy counts requests that match no declared
# virtual cluster under `other` (a mesh caller we cannot name); plaintext chains declare one
# catch-all so their requests are told apart from mTLS ones.
UNNAMED_MTLS_PEER = "other"
PLAINTEXT_PEER = "plaintext"

_PREFIX = "peer~"
_SEP = "~"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What the destination reports about its caller: Istio's source_* labels."""

    workload: str
    namespace: str
    app: str = ""
    version: str = ""
    service_account: str = "default"

    @classmethod
    def of(
        cls, workload: str, namespace: str, labels: Mapping[str, str], service_account: str
    ) -> PeerIdentity:
        """A workload's identity from its labels (`app`, `version`), as Istio reads them."""
        return cls(
            workload, namespace, labels.get("app", ""), labels.get("version", ""), service_account
        )

    def encode(self) -> str:
        """The header value and virtual-cluster name; `parse` is its inverse."""
        fields = (self.workload, self.namespace, self.app, self.version, self.service_account)
        return _PREFIX + _SEP.join(_quote(f) for f in fields)

    @classmethod
    def parse(cls, text: str) -> PeerIdentity | None:
        """None for anything `encode` did not make (e.g. `other`, `plaintext`)."""
        if not text.startswith(_PREFIX):
            return None
        parts = text.removeprefix(_PREFIX).split(_SEP)
        if len(parts) != 5:
            return None
        workload, namespace, app, version, account = (_unquote(p) for p in parts)
        return cls(workload, namespace, app, version, account)

    def principal(self, trust_domain: str = "cluster.local") -> str:
        return f"spiffe://{trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


def _quote(value: str) -> str:
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)


def _unquote(value: str) -> str:
    return urllib.parse.unquote(value, errors="replace")
