"""Who may connect to trellisd's xDS server: join tokens checked against the node's identity.

On one machine `trellis run` mints a join token for the workload's namespace, service account
and name; the agent puts it in Envoy's bootstrap and Envoy sends it as gRPC initial metadata
(`x-trellis-token`) on the ADS stream. A stream whose token is missing, invalid, expired or
grants another identity than its node claims is refused (UNAUTHENTICATED) and logged, so a
proxy only ever receives its own identity's certificate over SDS.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from trellis.ca.errors import InvalidToken
from trellis.ca.identity import JoinTokenIssuer
from trellis.model.proxy import Proxy
from trellis.xds.server import Metadata, NotAuthenticated

TOKEN_HEADER = "x-trellis-token"


class JoinTokenAuthenticator:
    """The xDS server's authenticator for the local runtime's join tokens."""

    def __init__(self, issuer: JoinTokenIssuer, clock: Callable[[], datetime]) -> None:
        self._issuer = issuer
        self._clock = clock

    def __call__(self, proxy: Proxy, metadata: Metadata) -> None:
        token = next((v for k, v in metadata if k.lower() == TOKEN_HEADER), None)
        if not token:
            raise NotAuthenticated(f"no join token (gRPC metadata {TOKEN_HEADER})")
        text = token.decode() if isinstance(token, bytes) else token
        try:
            identity = self._issuer.verify(text, now=self._clock())
            identity.check(
                namespace=proxy.namespace,
                service_account=proxy.service_account,
                workload=proxy.name,
            )
        except InvalidToken as err:
            raise NotAuthenticated(str(err)) from None
