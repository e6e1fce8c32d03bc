"""A light ADS client that behaves like Envoy on the wire, for tests and the control-plane bench.

It subscribes to CDS and LDS (wildcard), follows the EDS and RDS names the clusters and listeners
reference (or subscribes to everything with `follow=False`), ACKs every response like Envoy
(or NACKs what `reject` says to), and records per type the version and the monotonic time it
arrived. Hundreds run in one process, so it keeps only names and versions, not resources.

Every request goes through one outbox drained by a single writer task: gRPC allows one write in
flight per call (a second fails with GRPC_CALL_ERROR_TOO_MANY_OPERATIONS), and both `start()`
(subscriptions) and the reader task (ACKs, follow-up subscriptions) write on the same stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401 (registers the type)
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2  # noqa: F401 (registers the type)
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # noqa: F401 (registers it)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, message, symbol_database
from google.rpc import status_pb2

from trellis.model.xds_types import CLUSTER, ENDPOINT, LISTENER, ROUTE

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]
RejectFn = Callable[[str, Sequence[any_pb2.Any]], str | None]
_HCM_TYPE = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_FOLLOWED = {CLUSTER: ENDPOINT, LISTENER: ROUTE}
# Requests queued for the writer; a full outbox makes the reader wait (backpressure).
_OUTBOX_SIZE = 64


@dataclass(slots=True)
class Received:
    """What arrived for one type: newest version, when, and which names the client holds."""

    version: str = ""
    at: float = 0.0
    responses: int = 0
    nacks: int = 0
    resources: dict[str, str] = field(default_factory=dict)  # name -> resource version
    last_names: tuple[str, ...] = ()
    last_removed: tuple[str, ...] = ()
    seen: dict[str, float] = field(default_factory=dict)  # version -> first arrival


class LightAdsClient:
    def __init__(
        self,
        target: str,
        node_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        delta: bool = True,
        follow: bool = True,
        reject: RejectFn | None = None,
        clock: Callable[[], float] = time.monotonic,
        keep_history: bool = False,
        channel_options: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        call_metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.target = target
        self._credentials = credentials  # TLS to trellisd; None = plaintext
        self._call_metadata = tuple(call_metadata)  # e.g. the join token
        self.delta = delta
        self.follow = follow
        self.received: dict[str, Received] = {}
        # (type, names, removed) of every accepted response, in order; for ordering tests
        self.history: list[tuple[str, tuple[str, ...], tuple[str, ...]]] | None = (
            [] if keep_history else None
        )
        self._node = base_pb2.Node(id=node_id, cluster="trellis-light")
        self._node.metadata.update(dict(metadata or {}))
        self._reject = reject
        self._clock = clock
        self._channel_options = list(channel_options)  # e.g. a larger max receive size
        self._subs: dict[str, set[str]] = {}
        self._refs: dict[str, dict[str, set[str]]] = {CLUSTER: {}, LISTENER: {}}
        self._nonces: dict[str, str] = {}
        self._acked_sotw: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[message.Message] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LightAdsClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the stream and subscribe; after `close()` it reconnects with what it holds."""
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=self._channel_options)
        else:
            self._channel = grpc.aio.secure_channel(
                self.target, self._credentials, options=self._channel_options
            )
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        method = stub.DeltaAggregatedResources if self.delta else stub.StreamAggregatedResources
        self._call = method(metadata=self._call_metadata or None)
        self._nonces.clear()
        self._outbox = asyncio.Queue(maxsize=_OUTBOX_SIZE)
        self._writer = asyncio.create_task(_write_requests(self._call, self._outbox))
        self._reader = asyncio.create_task(self._read_responses())
        for type_url in (CLUSTER, LISTENER, ENDPOINT, ROUTE):
            if type_url in (CLUSTER, LISTENER) or not self.follow or self._subs.get(type_url):
                await self._subscribe_initial(type_url)  # like Envoy, re-subscribe on reconnect

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()  # before the reader: the server must see the stream end
            self._call = None
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._reader = self._writer = self._outbox = None
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    @property
    def done(self) -> bool:
        """The stream ended (server gone or refused us, or a write failed)."""
        return any(task is not None and task.done() for task in (self._reader, self._writer))

    async def wait_for_version(self, type_url: str, version: str, timeout: float) -> float:
        """Wait until a response of `type_url` with `version` arrived; returns when (monotonic)."""
        async with asyncio.timeout(timeout):
            while version not in self._record(type_url).seen:
                await self._wait_change()
        return self._record(type_url).seen[version]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds; re-checked after every response."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._wait_change()

    async def _wait_change(self) -> None:
        event = self._changed
        stream_tasks = {t for t in (self._reader, self._writer) if t is not None}
        for task in stream_tasks:
            if task.done():
                task.result()  # surface why the stream ended
                raise ConnectionError("xDS stream closed")
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.wait({waiter, *stream_tasks}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    def _record(self, type_url: str) -> Received:
        return self.received.setdefault(type_url, Received())

    # -- requests ---------------------------------------------------------------------------

    async def _send(self, request: message.Message) -> None:
        """Queue a request for the stream's single writer (never write on the call directly)."""
        assert self._outbox is not None, "start() the client first"
        await self._outbox.put(request)

    async def _subscribe_initial(self, type_url: str) -> None:
        names = self._subs.setdefault(
            type_url, set() if self.follow or type_url in _FOLLOWED else {"*"}
        )
        held = self._record(type_url).resources
        if self.delta:
            await self._send(
                discovery_pb2.DeltaDiscoveryRequest(
                    node=self._node,
                    type_url=type_url,
                    resource_names_subscribe=sorted(names),
                    initial_resource_versions=held,
                )
            )
        else:
            await self._write_sotw(type_url, version="")

    async def _write_sotw(self, type_url: str, *, version: str, error: str | None = None) -> None:
        request = discovery_pb2.DiscoveryRequest(
            node=self._node,
            type_url=type_url,
            version_info=version,
            resource_names=sorted(self._subs.get(type_url, ())),
            response_nonce=self._nonces.get(type_url, ""),
        )
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self._send(request)

    async def _resubscribe(self, type_url: str, wanted: set[str]) -> None:
        had = self._subs.setdefault(type_url, set())
        if wanted == had:
            return
        added, removed = wanted - had, had - wanted
        self._subs[type_url] = set(wanted)
        for name in removed:
            self._record(type_url).resources.pop(name, None)
        if self.delta:
            await self._send(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url,
                    resource_names_subscribe=sorted(added),
                    resource_names_unsubscribe=sorted(removed),
                )
            )
        elif type_url in self.received or wanted:
            await self._write_sotw(type_url, version=self._record(type_url).version)

    # -- responses --------------------------------------------------------------------------

    async def _read_responses(self) -> None:
        while True:
            response = await self._call.read()
            if response is _EOF:
                return
            if self.delta:
                await self._on_delta(response)
            else:
                await self._on_sotw(response)
            self._changed.set()
            self._changed = asyncio.Event()

    async def _on_delta(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:
        type_url = response.type_url
        anys = [r.resource for r in response.resources]
        error = self._reject(type_url, anys) if self._reject else None
        record = self._note(type_url, response.system_version_info, error)
        if error is None:
            for resource in response.resources:
                record.resources[resource.name] = resource.version
            for name in response.removed_resources:
                record.resources.pop(name, None)
            record.last_names = tuple(r.name for r in response.resources)
            record.last_removed = tuple(response.removed_resources)
            self._remember(type_url, record)
            await self._follow(type_url, anys, response.removed_resources, replace_all=False)
        ack = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=response.nonce)
        if error is not None:
            ack.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self._send(ack)

    async def _on_sotw(self, response: discovery_pb2.DiscoveryResponse) -> None:
        type_url = response.type_url
        error = self._reject(type_url, list(response.resources)) if self._reject else None
        record = self._note(type_url, response.version_info, error)
        self._nonces[type_url] = response.nonce
        if error is None:
            names = [_resource_name(a) for a in response.resources]
            if type_url in _FOLLOWED:
                record.resources = {}
            record.resources.update({n: response.version_info for n in names})
            record.last_names = tuple(names)
            self._remember(type_url, record)
            await self._follow(type_url, list(response.resources), (), replace_all=True)
        version = record.version if error is None else self._acked_sotw.get(type_url, "")
        if error is None:
            self._acked_sotw[type_url] = record.version
        await self._write_sotw(type_url, version=version, error=error)

    def _remember(self, type_url: str, record: Received) -> None:
        if self.history is not None:
            self.history.append((type_url, record.last_names, record.last_removed))

    def _note(self, type_url: str, version: str, error: str | None) -> Received:
        record = self._record(type_url)
        now = self._clock()
        record.responses += 1
        if error is not None:
            record.nacks += 1
            return record
        record.version, record.at = version, now
        record.seen.setdefault(version, now)
        return record

    async def _follow(
        self,
        type_url: str,
        anys: Sequence[any_pb2.Any],
        removed: Sequence[str],
        *,
        replace_all: bool,
    ) -> None:
        """Subscribe to the EDS/RDS names the received clusters/listeners use."""
        if not self.follow or type_url not in _FOLLOWED:
            return
        refs = self._refs[type_url]
        if replace_all:
            refs.clear()
        for name in removed:
            refs.pop(name, None)
        for packed in anys:
            name, used = _references(type_url, packed)
            refs[name] = used
        wanted = set().union(*refs.values()) if refs else set()
        await self._resubscribe(_FOLLOWED[type_url], wanted)


async def _write_requests(call: Any, outbox: asyncio.Queue[message.Message]) -> None:
    """The stream's only writer: one message in flight at a time, in the order queued."""
    while True:
        request = await outbox.get()
        await call.write(request)


def _resource_name(packed: any_pb2.Any) -> str:
    """xDS resources name themselves in `name`, a ClusterLoadAssignment in `cluster_name`."""
    message = symbol_database.Default().GetSymbol(packed.TypeName())()
    packed.Unpack(message)
    for field_name in ("name", "cluster_name"):
        if field_name in message.DESCRIPTOR.fields_by_name:
            return str(getattr(message, field_name))
    return ""


def _unpack(packed: any_pb2.Any, message: Any) -> Any:
    packed.Unpack(message)
    return message


def _references(type_url: str, packed: any_pb2.Any) -> tuple[str, set[str]]:
    """(resource name, names of EDS/RDS resources it uses)."""
    if type_url == CLUSTER:
        cluster = _unpack(packed, cluster_pb2.Cluster())
        if cluster.type != cluster_pb2.Cluster.EDS:
            return cluster.name, set()
        return cluster.name, {cluster.eds_cluster_config.service_name or cluster.name}
    listener = _unpack(packed, listener_pb2.Listener())
    chains = [*listener.filter_chains]
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    routes: set[str] = set()
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url == _HCM_TYPE:
                hcm = _unpack(network_filter.typed_config, hcm_pb2.HttpConnectionManager())
                if hcm.HasField("rds"):
                    routes.add(hcm.rds.route_config_name)
    return listener.name, routes


async def probe_stream(
    target: str,
    node_id: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    call_metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> grpc.StatusCode:
    """Open one delta ADS stream, send a single CDS request and return how the server answered:
    OK if it sent a response, else the status it ended the stream with (e.g. UNAUTHENTICATED).

    One write only: a client still writing when the server aborts sees its own INTERNAL error
    instead of the server's status.
    """
    options = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    channel = (
        grpc.aio.insecure_channel(target, options=options)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials, options=options)
    )
    node = base_pb2.Node(id=node_id, cluster="trellis-light")
    node.metadata.update(dict(metadata or {}))
    try:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.DeltaAggregatedResources(metadata=tuple(call_metadata) or None)
        await call.write(discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=CLUSTER))
        try:
            await asyncio.wait_for(call.read(), timeout)
        except grpc.aio.AioRpcError as err:
            return err.code()
        call.cancel()
        return grpc.StatusCode.OK
    finally:
        await channel.close(None)
