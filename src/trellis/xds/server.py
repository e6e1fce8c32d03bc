"""The ADS gRPC server: SotW and delta streams, debounced updates, status and counters.

go-control-plane's seam: the generator says what a proxy should have, this server only streams
it (connection.py per stream, debounce.py for merging updates).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from google.protobuf.message import Message

from trellis.model.proxy import Proxy
from trellis.xds.connection import AdsConnection, ConnectionContext, PushTally, Response
from trellis.xds.contract import ConfigGenerator, ProxyStatus, XdsCounters
from trellis.xds.debounce import AffectedFn, Debouncer, PendingUpdate
from trellis.xds.node import MalformedNode, proxy_from_node
from trellis.xds.observer import NullObserver, XdsObserver

log = logging.getLogger("trellis.xds")
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]

Metadata = Sequence[tuple[str, str | bytes]]
Authenticator = Callable[[Proxy, Metadata], None]
"""Checks a stream's credentials (gRPC metadata) against the proxy it claims to be; raises
`NotAuthenticated` to refuse it. The server without one accepts every stream (tests, bench)."""


class NotAuthenticated(Exception):
    """A stream's credentials are missing or do not grant the identity its node claims."""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """trellisd's serving certificate chain and key (PEM) for the gRPC listener."""

    cert_chain_pem: bytes
    private_key_pem: bytes


_MAX_MESSAGE = 256 * 1024 * 1024  # a 5 000-service mesh makes CDS responses of tens of MB
_OUTBOX_SIZE = 64


class AdsServer:
    """Aggregated discovery service for Envoy (both variants) over one grpc.aio server."""

    def __init__(
        self,
        generator: ConfigGenerator,
        clock: Callable[[], float] = time.monotonic,
        *,
        version: str = "0",
        debounce_quiet: float = 0.1,
        debounce_max: float = 1.0,
        max_concurrent_pushes: int = 64,
        ack_timeout: float = 30.0,
        authenticator: Authenticator | None = None,
        observer: XdsObserver | None = None,
    ) -> None:
        self._clock = clock
        self._observer: XdsObserver = observer or NullObserver()
        self._authenticator = authenticator
        self._version = version
        self._debouncer = Debouncer(quiet=debounce_quiet, max_wait=debounce_max)
        self._tally = PushTally()
        self._nonce_prefix = secrets.token_hex(4)
        self._nonce_counter = itertools.count(1)
        self._ctx = ConnectionContext(
            generator=generator,
            version=lambda: self._version,
            nonce=self._next_nonce,
            semaphore=asyncio.Semaphore(max_concurrent_pushes),
            tally=self._tally,
            ack_timeout=ack_timeout,
            observer=self._observer,
            clock=clock,
        )
        self._connections: dict[int, AdsConnection] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self.port = 0  # bound port once started
        self._debounce_task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, tls: ServerTls | None = None) -> int:
        """Listen on host:port (0 picks a free port), over TLS if given; the bound port."""
        options = [
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ]
        server = grpc.aio.server(options=options)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        if tls is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            credentials = grpc.ssl_server_credentials([(tls.private_key_pem, tls.cert_chain_pem)])
            bound = server.add_secure_port(f"{host}:{port}", credentials)
        await server.start()
        self._server, self.port = server, bound
        self._debounce_task = asyncio.create_task(self._debounce_loop(), name="xds-debounce")
        log.info("event=xds.listening address=%s:%d tls=%s", host, bound, tls is not None)
        return bound

    async def stop(self, grace: float) -> None:
        if self._debounce_task is not None:
            self._debounce_task.cancel()
            await asyncio.gather(self._debounce_task, return_exceptions=True)
            self._debounce_task = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        log.info("event=xds.stopped")

    def update(
        self,
        version: str,
        changed_types: frozenset[str],
        affected: AffectedFn | None = None,
    ) -> None:
        """A new config version exists; push the changed types to affected proxies, debounced."""
        self._version = version
        self._debouncer.add(self._clock(), version, changed_types, affected)
        self._wake.set()

    def statuses(self) -> list[ProxyStatus]:
        return [c.status() for c in self._connections.values()]

    def connected(self) -> list[Proxy]:
        return [c.proxy for c in self._connections.values()]

    @property
    def counters(self) -> XdsCounters:
        return XdsCounters(
            pushes_total=self._tally.pushes_total,
            push_seconds_total=self._tally.push_seconds_total,
            nacks_total=self._tally.nacks_total,
            connected_proxies=len(self._connections),
            proxy_pushes_total=self._tally.proxy_pushes_total,
        )

    def _next_nonce(self) -> str:
        return f"{self._nonce_prefix}-{next(self._nonce_counter)}"

    # -- debounce ---------------------------------------------------------------------------

    async def _debounce_loop(self) -> None:
        """Fire merged updates when due; the injected clock decides, real time only polls."""
        while True:
            due = self._debouncer.due_in(self._clock())
            if due == 0.0:
                since = self._debouncer.first_added
                pending = self._debouncer.take()
                if pending is not None:
                    self._dispatch(pending, since)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=due)

    def _dispatch(self, pending: PendingUpdate, since: float | None = None) -> None:
        affected = [c for c in self._connections.values() if pending.affects(c.proxy)]
        for connection in affected:
            connection.schedule(pending.types, since)
        log.info(
            "event=xds.push_start version=%s types=%s merged=%d proxies=%d",
            pending.version,
            ",".join(sorted(t.rsplit(".", 1)[-1] for t in pending.types)),
            pending.merged,
            len(affected),
        )

    # -- streams ----------------------------------------------------------------------------

    async def serve_stream(
        self, context: grpc.aio.ServicerContext[Message, Response], *, delta: bool
    ) -> None:
        first = await context.read()
        if first is _EOF:
            return
        try:
            proxy = proxy_from_node(first.node)
        except MalformedNode as err:
            log.warning("event=xds.refused peer=%s error=%r", context.peer(), str(err))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            return
        if self._authenticator is not None:
            try:
                self._authenticator(proxy, tuple(context.invocation_metadata() or ()))
            except NotAuthenticated as err:
                log.warning(
                    "event=xds.unauthenticated proxy=%s peer=%s error=%r",
                    proxy.key,
                    context.peer(),
                    str(err),
                )
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
                return
        outbox: asyncio.Queue[Response] = asyncio.Queue(maxsize=_OUTBOX_SIZE)
        connection = AdsConnection(proxy, delta=delta, ctx=self._ctx, outbox=outbox)
        key = next(self._ids)
        self._connections[key] = connection
        log.info("event=xds.connect proxy=%s delta=%s peer=%s", proxy.key, delta, context.peer())
        tasks = [
            asyncio.create_task(_write_responses(context, outbox)),
            asyncio.create_task(connection.run_pushes()),
        ]
        try:
            await _read_requests(context, connection, first)
        finally:
            # Bookkeeping first: gRPC may cancel this handler again while it awaits below.
            del self._connections[key]
            self._observer.disconnected(proxy.key)
            log.info("event=xds.disconnect proxy=%s delta=%s", proxy.key, delta)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _read_requests(
    context: grpc.aio.ServicerContext[Message, Response], connection: AdsConnection, first: Message
) -> None:
    request = first
    while request is not _EOF:
        await connection.handle(request)
        request = await context.read()


async def _write_responses(
    context: grpc.aio.ServicerContext[Message, Response], outbox: asyncio.Queue[Response]
) -> None:
    while True:
        await context.write(await outbox.get())


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: AdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self, request_iterator: object, context: grpc.aio.ServicerContext[Message, Response]
    ) -> None:
        await self._server.serve_stream(context, delta=False)

    async def DeltaAggregatedResources(
        self, request_iterator: object, context: grpc.aio.ServicerContext[Message, Response]
    ) -> None:
        await self._server.serve_stream(context, delta=True)
