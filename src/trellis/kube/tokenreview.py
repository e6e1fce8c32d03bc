"""Service-account token authentication for proxies in a cluster (DESIGN §5), as istiod does it.

An injected proxy sends its projected service-account token (audience `istio-ca`, mounted
at /var/run/secrets/tokens/istio-token) on the ADS stream. trellisd asks the API server
whether the token is valid with an `authentication.k8s.io/v1` TokenReview for audience
`istio-ca`, and admits the stream only when the reviewed user
`system:serviceaccount:NS:SA` is exactly the namespace and service account the proxy's node
claims, so a proxy can only ever obtain its own identity's certificate.

The xDS server calls authenticators synchronously (`trellis.xds.server.Authenticator`) and
a TokenReview is a network call, so this authenticator is async (`await
authenticator(proxy, metadata)`); hooking it into the server needs an awaitable
authenticator there (see docs/kubernetes.md). Positive answers are cached per token for a
short time so a reconnecting proxy does not cost a review each time; refusals and API
failures are never cached, and an API failure refuses the stream (fail closed).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import ApiClient, ApiException

from trellis.model.proxy import Proxy
from trellis.xds.server import Metadata, NotAuthenticated

AUDIENCE = "istio-ca"
TOKEN_HEADERS = ("x-trellis-token", "authorization")  # the agent's header; Istio's bearer
_PREFIX = "system:serviceaccount:"
_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclass(frozen=True, slots=True)
class ServiceAccountIdentity:
    """Who a reviewed token belongs to."""

    namespace: str
    service_account: str

    @classmethod
    def from_username(cls, username: str) -> ServiceAccountIdentity:
        """`system:serviceaccount:NS:SA` -> (NS, SA); anything else is not a pod's token."""
        parts = username.removeprefix(_PREFIX).split(":") if username.startswith(_PREFIX) else []
        if len(parts) != 2 or not all(parts):
            raise NotAuthenticated(
                f"the token belongs to {username!r}, not to a service account "
                "(system:serviceaccount:NAMESPACE:NAME)"
            )
        return cls(parts[0], parts[1])


def token_of(metadata: Metadata) -> str:
    """The token from the stream's metadata (`x-trellis-token`, or `authorization: Bearer`)."""
    for key, value in metadata:
        name = key.lower()
        if name not in TOKEN_HEADERS:
            continue
        text = (value.decode() if isinstance(value, bytes) else value).strip()
        if name == "authorization":
            scheme, _, text = text.partition(" ")
            if scheme.lower() != "bearer":
                continue
            text = text.strip()
        if text:
            return text
    raise NotAuthenticated("no service-account token (gRPC metadata x-trellis-token)")


class TokenReviewAuthenticator:
    """`await authenticator(proxy, metadata)`: raises NotAuthenticated to refuse the stream."""

    def __init__(
        self,
        api: ApiClient,
        *,
        audience: str = AUDIENCE,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._audience = audience
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, ServiceAccountIdentity]] = {}

    async def __call__(self, proxy: Proxy, metadata: Metadata) -> None:
        identity = await self.identity(token_of(metadata))
        claimed = ServiceAccountIdentity(proxy.namespace, proxy.service_account)
        if identity != claimed:
            raise NotAuthenticated(
                f"the token is service account {identity.namespace}/{identity.service_account}'s"
                f", but the proxy {proxy.key} claims {claimed.namespace}/"
                f"{claimed.service_account}"
            )

    async def identity(self, token: str) -> ServiceAccountIdentity:
        """The service account a valid token of this audience belongs to (cached briefly)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        identity = ServiceAccountIdentity.from_username(await self._review(token))
        self._forget_expired(now)
        self._cache[key] = (now + self._cache_seconds, identity)
        return identity

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, (until, _) in self._cache.items() if until <= now]:
            del self._cache[key]

    async def _review(self, token: str) -> str:
        """The reviewed username; NotAuthenticated when the API server says no or fails."""
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self._audience]},
        }
        try:
            answer: Any = await self._api.call_api(
                _PATH,
                "POST",
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=review,
                response_types_map={200: "object", 201: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as err:
            raise NotAuthenticated(
                f"cannot check the token: TokenReview failed (HTTP {err.status} {err.reason}); "
                "trellisd's service account needs `create tokenreviews`"
            ) from None
        except (OSError, TimeoutError) as err:
            raise NotAuthenticated(
                f"cannot check the token: API server unreachable: {err}"
            ) from None
        status = (answer or {}).get("status") or {}
        if not status.get("authenticated"):
            reason = status.get("error") or "not authenticated"
            raise NotAuthenticated(f"the service-account token was refused: {reason}")
        if status.get("audiences") and self._audience not in status["audiences"]:
            raise NotAuthenticated(f"the token is not valid for audience {self._audience}")
        return str((status.get("user") or {}).get("username", ""))
