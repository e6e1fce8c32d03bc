"""JWKS documents behind RequestAuthentication `jwksUri`s: fetched by trellisd, pushed inline.

Envoys never fetch keys themselves (a sidecar may not even reach the identity provider): the
compiler inlines what trellisd holds (compiler/jwt.py). At apply time every new jwksUri is
fetched first, and an unreachable or malformed one rejects the whole apply with a clear error,
so nothing changes. Afterwards a refresh loop re-fetches every URI in use (Istio refreshes every
20 minutes); a failed refresh keeps the last good document.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from trellis.api.base import Resource
from trellis.api.security import RequestAuthentication
from trellis.errors import ValidationError, ValidationErrors

log = logging.getLogger("trellisd")

FETCH_TIMEOUT_S = 5.0
REFRESH_INTERVAL_S = 20 * 60.0
MAX_JWKS_BYTES = 1 << 20


class JwksUnavailable(Exception):
    """A jwksUri could not be fetched or did not hold a JWK Set."""


@dataclass(frozen=True, slots=True)
class JwksReference:
    """One `jwksUri` and where it is written, for error messages."""

    uri: str
    kind: str
    namespace: str
    name: str
    field: str


def jwks_references(resources: Iterable[Resource]) -> list[JwksReference]:
    return [
        JwksReference(r.jwks_uri, ra.KIND, ra.namespace, ra.name, f"spec.jwtRules[{i}].jwksUri")
        for ra in resources
        if isinstance(ra, RequestAuthentication)
        for i, r in enumerate(ra.spec.jwt_rules)
        if r.jwks_uri is not None and r.jwks is None
    ]


async def fetch_jwks(uri: str, *, timeout: float = FETCH_TIMEOUT_S) -> str:
    """The JWK Set at `uri`, as compact JSON; JwksUnavailable says why not."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(uri, allow_redirects=True) as response,
        ):
            if response.status != 200:
                raise JwksUnavailable(f"GET {uri} answered {response.status}")
            body = await response.content.read(MAX_JWKS_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        raise JwksUnavailable(f"GET {uri} failed: {exc or type(exc).__name__}") from None
    return _jwk_set(uri, body)


def _jwk_set(uri: str, body: bytes) -> str:
    if len(body) > MAX_JWKS_BYTES:
        raise JwksUnavailable(f"{uri} is larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise JwksUnavailable(f"{uri} did not return JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable(f'{uri} did not return a JWK Set (a JSON object with "keys")')
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


async def fetch_for_apply(
    resources: Sequence[Resource], known: Mapping[str, str], *, timeout: float = FETCH_TIMEOUT_S
) -> dict[str, str]:
    """Fetch every jwksUri the resources name that trellisd does not hold yet.

    Raises ValidationErrors naming each RequestAuthentication whose keys cannot be fetched.
    """
    refs = [r for r in jwks_references(resources) if r.uri not in known]
    uris = list(dict.fromkeys(r.uri for r in refs))
    results = await asyncio.gather(
        *(fetch_jwks(u, timeout=timeout) for u in uris), return_exceptions=True
    )
    fetched: dict[str, str] = {}
    failed: dict[str, str] = {}
    for uri, result in zip(uris, results, strict=True):
        if isinstance(result, JwksUnavailable):
            failed[uri] = str(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            fetched[uri] = result
    problems = [
        ValidationError(
            f"{failed[r.uri]}; make the JWKS reachable from trellisd, or inline it as `jwks`",
            kind=r.kind,
            namespace=r.namespace,
            name=r.name,
            field=r.field,
        )
        for r in refs
        if r.uri in failed
    ]
    if problems:
        raise ValidationErrors(problems)
    return fetched


async def refresh_once(uris: Iterable[str], *, timeout: float = FETCH_TIMEOUT_S) -> dict[str, str]:
    """Fetch each URI; those that fail are left out (the caller keeps their last document)."""
    out: dict[str, str] = {}
    for uri in dict.fromkeys(uris):
        try:
            out[uri] = await fetch_jwks(uri, timeout=timeout)
        except JwksUnavailable as exc:
            log.warning("event=jwks-refresh-failed uri=%s error=%s", uri, exc)
    return out


class JwksHolder(Protocol):
    """What the refresh loop needs of MeshState."""

    def resources(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        """Stored resources of a kind."""
        ...

    def update_jwks(self, documents: Mapping[str, str]) -> None:
        """Take refreshed documents (pushing only if one changed)."""
        ...


async def refresh_forever(
    state: JwksHolder, *, interval: float = REFRESH_INTERVAL_S, timeout: float = FETCH_TIMEOUT_S
) -> None:
    """Fetch every jwksUri in use now (a restarted trellisd has none in memory), then again
    every `interval` seconds, so rotated provider keys reach the Envoys."""
    while True:
        stored = await asyncio.to_thread(state.resources, RequestAuthentication.KIND)
        uris = [r.uri for r in jwks_references(stored)]
        if uris:
            documents = await refresh_once(uris, timeout=timeout)
            await asyncio.to_thread(state.update_jwks, documents)
        await asyncio.sleep(interval)
