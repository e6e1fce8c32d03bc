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
from trellis.errors import TrellisError
from trellis.model.proxy import Proxy
from trellis.registry.workload_entries import auto_entry_name, group_of_grant
from trellis.xds.server import Metadata, NotAuthenticated

TOKEN_HEADER = "x-trellis-token"


GroupJoin = Callable[[Proxy, str], None]
"""Registers a proxy that joined with a WorkloadGroup token (controlplane/autoregister.py);
raises TrellisError to refuse it."""


class JoinTokenAuthenticator:
    """The xDS server's authenticator for the local runtime's join tokens."""

    def __init__(
        self,
        issuer: JoinTokenIssuer,
        clock: Callable[[], datetime],
        on_group_join: GroupJoin | None = None,
    ) -> None:
        self._issuer = issuer
        self._clock = clock
        self._on_group_join = on_group_join

    def __call__(self, proxy: Proxy, metadata: Metadata) -> None:
        token = next((v for k, v in metadata if k.lower() == TOKEN_HEADER), None)
        if not token:
            raise NotAuthenticated(f"no join token (gRPC metadata {TOKEN_HEADER})")
        text = token.decode() if isinstance(token, bytes) else token
        try:
            identity = self._issuer.verify(text, now=self._clock())
            group = group_of_grant(identity.workload)
            identity.check(
                namespace=proxy.namespace,
                service_account=proxy.service_account,
                workload=proxy.name if group is None else None,
            )
        except InvalidToken as err:
            raise NotAuthenticated(str(err)) from None
        if group is not None:
            self._join_group(proxy, group)

    def _join_group(self, proxy: Proxy, group: str) -> None:
        """A group token admits exactly `<group>-<ip>`, which is then auto-registered."""
        if self._on_group_join is None:
            raise NotAuthenticated("WorkloadGroup join tokens are not accepted here")
        expected = auto_entry_name(group, proxy.ip)
        if proxy.name != expected:
            raise NotAuthenticated(
                f"a join token of WorkloadGroup {group} admits the proxy {expected}, "
                f"not {proxy.name}"
            )
        try:
            self._on_group_join(proxy, group)
        except TrellisError as err:
            raise NotAuthenticated(str(err)) from None
