"""One ADS stream: answers requests and runs the ordered, ACK-gated push sequence (DESIGN §3).

Messages only move here; what a request means is decided in protocol.py, what a client must get
in resources.py. Per proxy at most one push sequence runs; later updates merge into the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message

from trellis.model.proxy import Proxy
from trellis.model.xds_types import CLUSTER, ENDPOINT, PUSH_ORDER, SHORT_NAMES
from trellis.xds.contract import ConfigGenerator, ProxyStatus
from trellis.xds.observer import NullObserver, XdsObserver
from trellis.xds.protocol import WILDCARD_TYPES, Decision, decide_delta, decide_sotw, is_wanted
from trellis.xds.resources import (
    PackCache,
    PackedResource,
    Payload,
    delta_payload,
    eds_names,
    sotw_payload,
)
from trellis.xds.stream_state import TypeStream

log = logging.getLogger("trellis.xds")

Response: TypeAlias = Message  # a DiscoveryResponse or a DeltaDiscoveryResponse


@dataclass(slots=True)
class PushTally:
    """Server-wide counters the connections add to (read as `XdsCounters`)."""

    pushes_total: int = 0
    push_seconds_total: float = 0.0
    nacks_total: int = 0
    proxy_pushes_total: int = 0


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """What every connection shares with the server."""

    generator: ConfigGenerator
    version: Callable[[], str]
    nonce: Callable[[], str]
    semaphore: asyncio.Semaphore
    tally: PushTally
    ack_timeout: float
    packer: PackCache = field(default_factory=PackCache)  # shared by every connection
    observer: XdsObserver = field(default_factory=NullObserver)  # trellisd's pilot_* metrics
    clock: Callable[[], float] = time.monotonic  # the server's: convergence is measured on it


class AdsConnection:
    def __init__(
        self, proxy: Proxy, *, delta: bool, ctx: ConnectionContext, outbox: asyncio.Queue[Response]
    ) -> None:
        self.proxy = proxy
        self.delta = delta
        self.connected_since = time.time()
        self._ctx = ctx
        self._outbox = outbox
        self._types: dict[str, TypeStream] = {}
        self._pending: set[str] = set()
        self._pending_since: float | None = None  # when the oldest merged change happened
        self._wake = asyncio.Event()

    # -- requests ---------------------------------------------------------------------------

    async def handle(self, request: Message) -> None:
        """Fold one request into the stream state and answer it if the protocol says so."""
        type_url = str(getattr(request, "type_url", ""))
        stream = self._types.get(type_url)
        if stream is None:
            stream = self._types[type_url] = TypeStream(type_url, delta=self.delta)
        decision = self._decide(request, stream)
        record = stream.apply_decision(decision)
        self._log_request(stream, decision)
        if decision.nacked and record is not None:
            self._ctx.tally.nacks_total += 1
            self._ctx.observer.rejected(self.proxy.key, type_url, decision.nack_message)
            log.warning(
                "event=xds.nack proxy=%s type=%s version=%s nonce=%s error=%r",
                self.proxy.key,
                SHORT_NAMES.get(type_url, type_url),
                record.version,
                record.nonce,
                decision.nack_message,
            )
        if decision.respond:
            await self._respond(stream, decision)

    def _decide(self, request: Message, stream: TypeStream) -> Decision:
        if isinstance(request, discovery_pb2.DeltaDiscoveryRequest):
            return decide_delta(request, stream.state)
        assert isinstance(request, discovery_pb2.DiscoveryRequest)
        return decide_sotw(request, stream.state)

    async def _respond(self, stream: TypeStream, decision: Decision) -> None:
        started = time.perf_counter()
        target = self._generate(stream.type_url)
        if self.delta:
            # No removals here: they run at the end of a push, after whatever used them changed.
            payload = delta_payload(
                target, stream.view(), stream.state, force=decision.force, removals=False
            )
            if decision.initial_versions and any(n not in target for n in stream.have):
                self.schedule(frozenset(PUSH_ORDER))  # reconnected holding stale resources
        else:
            payload = sotw_payload(
                target,
                stream.view(),
                stream.state,
                full_state=stream.type_url in WILDCARD_TYPES,
                force_all=decision.force_all,
            )
        await self._send(stream, payload, required=True)
        self._ctx.observer.push_time(stream.type_url, time.perf_counter() - started)

    # -- pushes -----------------------------------------------------------------------------

    def schedule(self, types: frozenset[str], since: float | None = None) -> None:
        """Merge a debounced update into the next push; one push runs at a time. `since`:
        when the config change behind it happened (server clock), for convergence time."""
        self._pending |= types
        if since is not None and (self._pending_since is None or since < self._pending_since):
            self._pending_since = since
        self._wake.set()

    async def run_pushes(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            types, self._pending = frozenset(self._pending), set()
            since, self._pending_since = self._pending_since, None
            started = time.perf_counter()
            try:
                await self.push(types)
                if since is not None:
                    self._ctx.observer.converged(self._ctx.clock() - since)
            except Exception:  # a bug must not end this proxy's pushes for good
                log.exception("event=xds.push_failed proxy=%s", self.proxy.key)
            self._ctx.tally.push_seconds_total += time.perf_counter() - started
            self._ctx.tally.proxy_pushes_total += 1

    async def push(self, types: frozenset[str]) -> None:
        """Updates CDS→EDS→LDS→RDS→SDS, then removals LDS→CDS, each after the previous ACK.

        After a NACK the removals wait for a later push: whatever stopped using a resource may
        not be in place, and removing it would leave a dangling reference (DESIGN §3).
        """
        order = [t for t in PUSH_ORDER if t in self._types and self._types[t].state.requested]
        targets: dict[str, Mapping[str, PackedResource]] = {}
        nacked = False
        for type_url in order:
            stream = self._types[type_url]
            force_all = type_url == ENDPOINT and not self.delta and stream.state.always_respond
            if type_url not in types and not (force_all and CLUSTER in targets):
                continue
            await self._wait_answered(stream)
            async with self._ctx.semaphore:
                started = time.perf_counter()
                targets[type_url] = self._generate(type_url)
                sent = await self._send(stream, self._update_payload(stream, targets, force_all))
                if sent:
                    self._ctx.observer.push_time(type_url, time.perf_counter() - started)
            if sent:
                nacked |= not await self._wait_answered(stream)
            stream.reconcile(targets[type_url])
        if not nacked:
            await self._push_removals(order, targets)

    async def _push_removals(
        self, order: list[str], targets: dict[str, Mapping[str, PackedResource]]
    ) -> None:
        for type_url in reversed(order):
            if type_url not in targets or type_url not in WILDCARD_TYPES:
                continue
            stream = self._types[type_url]
            await self._wait_answered(stream)
            target = targets[type_url]
            if self.delta:
                payload = delta_payload(target, stream.view(), stream.state, removals=True)
            else:
                payload = sotw_payload(target, stream.view(), stream.state, full_state=True)
            if await self._send(stream, payload):
                await self._wait_answered(stream)

    def _update_payload(
        self, stream: TypeStream, targets: dict[str, Mapping[str, PackedResource]], force_all: bool
    ) -> Payload:
        target = targets[stream.type_url]
        if self.delta:
            return delta_payload(target, stream.view(), stream.state, removals=False)
        return sotw_payload(
            target,
            stream.view(),
            stream.state,
            full_state=stream.type_url in WILDCARD_TYPES,
            force_all=force_all,
            removals=False,
        )

    async def _wait_answered(self, stream: TypeStream) -> bool:
        """Wait until nothing of this type is outstanding; False if the last answer was a NACK."""
        try:
            await asyncio.wait_for(stream.idle.wait(), self._ctx.ack_timeout)
        except TimeoutError:
            log.warning(
                "event=xds.ack_timeout proxy=%s type=%s nonce=%s",
                self.proxy.key,
                SHORT_NAMES.get(stream.type_url),
                stream.state.last_nonce,
            )
            stream.give_up_waiting()
        return not stream.last_answer_was_nack

    # -- sending ----------------------------------------------------------------------------

    def _generate(self, type_url: str) -> Mapping[str, PackedResource]:
        resources = self._ctx.generator(self.proxy, type_url)
        return self._ctx.packer.pack_all(resources, self._ctx.version(), type_url)

    async def _send(self, stream: TypeStream, payload: Payload, *, required: bool = False) -> bool:
        """Send `payload` (if non-empty or `required`) and account for it; True if sent."""
        if not payload and not required:
            return False
        nonce, version = self._ctx.nonce(), self._ctx.version()
        full_state = not self.delta and stream.type_url in WILDCARD_TYPES
        stream.record_send(nonce, version, payload, full_state=full_state)
        if stream.type_url == CLUSTER and ENDPOINT in self._types:
            self._types[ENDPOINT].expect_rerequest()
        self._ctx.tally.pushes_total += 1
        self._ctx.observer.response_sent(stream.type_url)
        log.debug(
            "event=xds.send proxy=%s type=%s version=%s nonce=%s resources=%d removed=%d",
            self.proxy.key,
            SHORT_NAMES.get(stream.type_url, stream.type_url),
            version,
            nonce,
            len(payload.resources),
            len(payload.removed),
        )
        await self._outbox.put(self._response(stream.type_url, nonce, version, payload))
        if self.delta and stream.type_url == CLUSTER:
            await self._refresh_endpoints(payload)
        return True

    async def _refresh_endpoints(self, clusters: Payload) -> None:
        """Delta: resend the endpoints of updated clusters right behind them, unasked.

        Envoy 1.40 on delta does not re-request an EDS name it already watches when the cluster
        using it is replaced, and holds the CDS ACK until that new cluster has warmed: without
        this the cluster waits for initial_fetch_timeout (15 s) and the push for its ACK.
        """
        eds = self._types.get(ENDPOINT)
        if eds is None:
            return
        names = frozenset(n for n in eds_names(clusters.resources) if is_wanted(eds.state, n))
        if names:
            target = self._generate(ENDPOINT)
            await self._send(
                eds, delta_payload(target, eds.view(), eds.state, force=names, removals=False)
            )

    def _response(self, type_url: str, nonce: str, version: str, payload: Payload) -> Response:
        if not self.delta:
            return discovery_pb2.DiscoveryResponse(
                version_info=version,
                type_url=type_url,
                nonce=nonce,
                resources=[r.any for r in payload.resources],
            )
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=type_url,
            nonce=nonce,
            removed_resources=list(payload.removed),
            resources=[
                discovery_pb2.Resource(name=r.name, version=r.hash, resource=r.any)
                for r in payload.resources
            ],
        )

    # -- status -----------------------------------------------------------------------------

    def status(self) -> ProxyStatus:
        known = [t for t in PUSH_ORDER if t in self._types]
        known += sorted(t for t in self._types if t not in PUSH_ORDER)
        return ProxyStatus(
            proxy=self.proxy,
            connected_since=self.connected_since,
            delta=self.delta,
            types=tuple(self._types[t].status() for t in known),
        )

    def _log_request(self, stream: TypeStream, decision: Decision) -> None:
        log.debug(
            "event=xds.request proxy=%s type=%s kind=%s nonce=%s subscribed=%d wildcard=%s",
            self.proxy.key,
            SHORT_NAMES.get(stream.type_url, stream.type_url),
            decision.kind.value,
            decision.answered_nonce,
            len(decision.subscribed),
            decision.wildcard,
        )
