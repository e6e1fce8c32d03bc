"""Workload identities: SPIFFE IDs and the join tokens that grant them on the local runtime.

On one machine `trellis run` mints a join token bound to the workload's namespace, service
account and name; the agent presents it and trellisd issues a certificate for exactly that
identity and no other. Tokens are HMAC-SHA256 over a small JSON payload with a secret kept in
the state dir (see `trellis.ca.store.load_or_create_token_key`), so nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from trellis.ca.errors import InvalidSpiffeId, InvalidToken

DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_TOKEN_TTL = timedelta(hours=24)
TOKEN_PREFIX = "tj1"
TOKEN_KEY_BYTES = 32

# SPIFFE allows letters, digits, '.', '-' and '_' in path segments; trust domains are lower case.
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """The parts of `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`."""

    trust_domain: str
    namespace: str
    service_account: str

    @property
    def uri(self) -> str:
        return spiffe_id(self.trust_domain, self.namespace, self.service_account)


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """Build the SPIFFE URI Istio gives a workload; refuses parts that would not parse back."""
    if not _TRUST_DOMAIN.match(trust_domain):
        raise InvalidSpiffeId(
            f"trust domain {trust_domain!r} must be lower-case letters, digits, '.', '-', '_'"
        )
    for label, part in (("namespace", namespace), ("service account", service_account)):
        _check_segment(label, part)
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def parse_spiffe_id(uri: str) -> SpiffeId:
    """Split a Trellis/Istio workload SPIFFE URI into its parts; the inverse of `spiffe_id`."""
    if not uri.startswith("spiffe://"):
        raise InvalidSpiffeId(f"{uri!r} is not a SPIFFE ID: it must start with spiffe://")
    trust_domain, _, path = uri.removeprefix("spiffe://").partition("/")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
        raise InvalidSpiffeId(
            f"{uri!r} is not a workload SPIFFE ID: expected spiffe://<trust-domain>/ns/<ns>/sa/<sa>"
        )
    parsed = SpiffeId(trust_domain, parts[1], parts[3])
    spiffe_id(parsed.trust_domain, parsed.namespace, parsed.service_account)  # validates the parts
    return parsed


def _check_segment(label: str, part: str) -> None:
    if not _SEGMENT.match(part) or part in (".", ".."):
        raise InvalidSpiffeId(
            f"{label} {part!r} must be letters, digits, '.', '-', '_' (not '.' or '..')"
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """What a verified join token allows: one workload in one namespace as one service account."""

    namespace: str
    service_account: str
    workload: str
    expires: datetime
    token_id: str

    def spiffe_id(self, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
        return spiffe_id(trust_domain, self.namespace, self.service_account)

    def check(
        self,
        *,
        namespace: str | None = None,
        service_account: str | None = None,
        workload: str | None = None,
    ) -> None:
        """Refuse a caller that asks for another identity than its token grants."""
        wanted = {"namespace": namespace, "service account": service_account, "workload": workload}
        granted = {"namespace": self.namespace, "service account": self.service_account,
                   "workload": self.workload}  # fmt: skip
        for field, value in wanted.items():
            if value is not None and value != granted[field]:
                raise InvalidToken(f"join token grants {field} {granted[field]!r}, not {value!r}")


class JoinTokenIssuer:
    """Mints and verifies join tokens with one HMAC secret (the mesh's, from its state dir).

    Verification is stateless: a token is valid for its bound identity until it expires, so an
    agent can present it again after trellisd restarts. One-time use, where wanted, is a
    `OneTimeTokens` guard in front of `verify`.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a join token key needs at least 16 bytes")
        self._key = key

    def mint(
        self,
        *,
        namespace: str,
        service_account: str,
        workload: str,
        now: datetime,
        ttl: timedelta = DEFAULT_TOKEN_TTL,
    ) -> str:
        """A token granting (namespace, service_account) to the named workload until now + ttl."""
        spiffe_id(DEFAULT_TRUST_DOMAIN, namespace, service_account)  # same rules as the cert
        _check_segment("workload", workload)
        payload = {
            "ns": namespace,
            "sa": service_account,
            "wl": workload,
            "exp": int((now + ttl).timestamp()),
            "jti": secrets.token_hex(16),
        }
        body = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{TOKEN_PREFIX}.{body}.{_b64encode(self._mac(body))}"

    def verify(self, token: str, *, now: datetime) -> Identity:
        """The identity a token grants; InvalidToken if malformed, tampered with or expired."""
        prefix, body, mac = _split(token)
        if prefix != TOKEN_PREFIX:
            raise InvalidToken(f"not a Trellis join token (expected prefix {TOKEN_PREFIX!r})")
        if not hmac.compare_digest(_b64decode(mac), self._mac(body)):
            raise InvalidToken(
                "join token signature does not match: altered, or minted by another mesh"
            )
        identity = _identity_from(_b64decode(body))
        if now >= identity.expires:
            raise InvalidToken(
                f"join token for {identity.namespace}/{identity.workload} expired at "
                f"{identity.expires.isoformat()}"
            )
        return identity

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._key, f"{TOKEN_PREFIX}.{body}".encode(), hashlib.sha256).digest()


class OneTimeTokens:
    """Remembers redeemed token ids until they expire, so each token works once (optional)."""

    def __init__(self) -> None:
        self._used: dict[str, datetime] = {}

    def redeem(self, identity: Identity, *, now: datetime) -> None:
        """Accept a verified identity's token the first time; InvalidToken on any reuse."""
        self._used = {jti: exp for jti, exp in self._used.items() if exp > now}
        if identity.token_id in self._used:
            raise InvalidToken(
                f"join token for {identity.namespace}/{identity.workload} was already used"
            )
        self._used[identity.token_id] = identity.expires


def _split(token: str) -> tuple[str, str, str]:
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidToken("join token is malformed: expected three dot-separated parts")
    return parts[0], parts[1], parts[2]


def _identity_from(raw: bytes) -> Identity:
    try:
        payload = json.loads(raw)
        return Identity(
            namespace=str(payload["ns"]),
            service_account=str(payload["sa"]),
            workload=str(payload["wl"]),
            expires=datetime.fromtimestamp(int(payload["exp"]), UTC),
            token_id=str(payload["jti"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidToken(f"join token payload is malformed: {error}") from None


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("join token is malformed: not base64url") from None


def new_token_key() -> bytes:
    """A fresh random HMAC secret for `JoinTokenIssuer`."""
    return secrets.token_bytes(TOKEN_KEY_BYTES)
