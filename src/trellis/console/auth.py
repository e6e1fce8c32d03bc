"""Kiali's token strategy: signed tokens with a role, exchanged for an encrypted session cookie.

A token is `trellis.<claims>.<hmac>`: base64url JSON claims (subject, role, expiry) signed with
HMAC-SHA256. A session is the same claims with the session's own expiry, encrypted with Fernet
so the browser can neither read nor forge it. Both keys live in one 0600 file in the mesh's
state directory, so `trellis console token` and the running console agree without talking.
Every check takes `now` (seconds): no clocks inside, tests do not sleep.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

TOKEN_PREFIX = "trellis"
KEY_FILE = "console.key"
DEFAULT_TOKEN_TTL_S = 24 * 3600.0
DEFAULT_SESSION_TTL_S = 24 * 3600.0
SESSION_COOKIE = "trellis-session"


class Role(enum.StrEnum):
    """Kiali's roles as Rancher's chart grants them; only cluster-admin is on by default."""

    CLUSTER_ADMIN = "cluster-admin"
    ADMIN = "admin"
    EDIT = "edit"
    VIEW = "view"

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEW


class AuthError(Exception):
    """Refused: `status` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Claims:
    """Who is calling, in which role, until when (unix seconds)."""

    username: str
    role: Role
    expires_at: float

    def to_json(self) -> dict[str, object]:
        return {"sub": self.username, "role": self.role.value, "exp": self.expires_at}

    @classmethod
    def from_json(cls, data: object) -> Claims:
        if not isinstance(data, dict):
            raise AuthError(401, "malformed credentials")
        try:
            return cls(str(data["sub"]), Role(str(data["role"])), float(data["exp"]))
        except (KeyError, ValueError, TypeError) as e:
            raise AuthError(401, "malformed credentials") from e


@dataclass(frozen=True, slots=True)
class ConsoleKeys:
    """The signing key for tokens and the encryption key for sessions."""

    signing: bytes
    session: bytes  # a Fernet key (urlsafe base64 of 32 bytes)

    @classmethod
    def generate(cls) -> ConsoleKeys:
        return cls(secrets.token_bytes(32), Fernet.generate_key())


def load_or_create_keys(state_dir: Path) -> ConsoleKeys:
    """The mesh's console keys, created 0600 on first use (atomically: two racing creators
    end up with one file)."""
    path = state_dir / KEY_FILE
    if not path.exists():
        keys = ConsoleKeys.generate()
        text = json.dumps(
            {"signing": base64.b64encode(keys.signing).decode(), "session": keys.session.decode()}
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            os.link(tmp, path)  # fails if another process won the race: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    data = json.loads(path.read_text())
    return ConsoleKeys(base64.b64decode(data["signing"]), str(data["session"]).encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(keys: ConsoleKeys, body: str) -> str:
    return _b64(hmac.new(keys.signing, body.encode(), hashlib.sha256).digest())


def issue_token(keys: ConsoleKeys, role: Role, *, now: float, ttl: float) -> str:
    """A bearer token for `role`, valid `ttl` seconds from `now`."""
    claims = Claims(f"trellis-console-{role.value}", role, now + ttl)
    body = _b64(json.dumps(claims.to_json(), separators=(",", ":")).encode())
    return f"{TOKEN_PREFIX}.{body}.{_signature(keys, body)}"


def verify_token(keys: ConsoleKeys, token: str, *, now: float) -> Claims:
    """The token's claims, or AuthError(401) if it is forged, malformed or expired."""
    prefix, _, rest = token.strip().partition(".")
    body, _, signature = rest.partition(".")
    if prefix != TOKEN_PREFIX or not body or not signature:
        raise AuthError(401, "not a Trellis console token")
    if not hmac.compare_digest(signature, _signature(keys, body)):
        raise AuthError(401, "invalid token")
    try:
        claims = Claims.from_json(json.loads(_unb64(body)))
    except (ValueError, binascii.Error) as e:
        raise AuthError(401, "invalid token") from e
    if claims.expires_at <= now:
        raise AuthError(401, "token expired; get a new one with `trellis console token`")
    return claims


def session_expiry(token_claims: Claims, *, now: float, ttl: float) -> float:
    """A session lasts `ttl` seconds, never beyond the token it was opened with."""
    return min(now + ttl, token_claims.expires_at)


def open_session(keys: ConsoleKeys, token_claims: Claims, *, now: float, ttl: float) -> str:
    """The encrypted cookie value for a verified token."""
    expires = session_expiry(token_claims, now=now, ttl=ttl)
    claims = Claims(token_claims.username, token_claims.role, expires)
    return Fernet(keys.session).encrypt(json.dumps(claims.to_json()).encode()).decode()


def read_session(keys: ConsoleKeys, cookie: str, *, now: float) -> Claims:
    """The session's claims, or AuthError(401) when tampered with or expired."""
    try:
        plain = Fernet(keys.session).decrypt(cookie.encode())
        claims = Claims.from_json(json.loads(plain))
    except (InvalidToken, ValueError) as e:
        raise AuthError(401, "invalid session; log in again") from e
    if claims.expires_at <= now:
        raise AuthError(401, "session expired; log in again")
    return claims


def check_granted(role: Role, allowed: Collection[Role]) -> None:
    """cluster-admin always has access; other roles only when the operator granted them."""
    if role is not Role.CLUSTER_ADMIN and role not in allowed:
        raise AuthError(403, f"role {role.value} is not granted access to this console")


def check_write(role: Role) -> None:
    if not role.can_write:
        raise AuthError(403, f"role {role.value} is read-only; changing config needs edit")


def parse_roles(text: str) -> frozenset[Role]:
    """`admin,edit,view` (operator input): unknown names are an error, not silently ignored."""
    roles: set[Role] = set()
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        try:
            roles.add(Role(word))
        except ValueError as e:
            choices = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown console role {word!r}; use {choices}") from e
    return frozenset(roles)
