"""LightAdsClient writes one message at a time on its stream, whoever asks to write.

gRPC allows a single write in flight per call (a second one fails with
GRPC_CALL_ERROR_TOO_MANY_OPERATIONS). The client writes subscriptions from `start()` and ACKs
from its reader task; a server that answers before the subscriptions are all written makes
those two overlap. This server answers the moment the stream opens, with many responses, and
the client's node metadata is large enough that its first subscription write waits on HTTP/2 flow
control while those responses arrive and are ACKed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from trellis.model.xds_types import CLUSTER, LISTENER
from trellis.xds.lightclient import LightAdsClient

BURST = 200  # responses the server sends before it reads a single request
BIG_NODE = {"PADDING": "x" * 3_000_000}  # more than one flow-control window per request
NODE_ID = "sidecar~1.2.3.4~a.ns~ns.svc"


class EagerAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """Sends a burst of empty CDS responses at once, then records every request it gets."""

    def __init__(self) -> None:
        self.delta: list[discovery_pb2.DeltaDiscoveryRequest] = []
        self.sotw: list[discovery_pb2.DiscoveryRequest] = []

    async def DeltaAggregatedResources(self, request_iterator: Any, context: Any) -> None:
        for i in range(BURST):
            await context.write(
                discovery_pb2.DeltaDiscoveryResponse(
                    type_url=CLUSTER, nonce=str(i), system_version_info=str(i)
                )
            )
        async for request in request_iterator:
            self.delta.append(request)

    async def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> None:
        for i in range(BURST):
            await context.write(
                discovery_pb2.DiscoveryResponse(type_url=CLUSTER, nonce=str(i), version_info=str(i))
            )
        async for request in request_iterator:
            self.sotw.append(request)


@pytest.fixture
async def eager() -> AsyncIterator[tuple[EagerAds, int]]:
    server = grpc.aio.server()
    servicer = EagerAds()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(grace=None)


def _acks(requests: list[Any]) -> int:
    return sum(1 for r in requests if r.type_url == CLUSTER and r.response_nonce)


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
async def test_acks_and_subscriptions_racing_on_one_stream_all_arrive(
    eager: tuple[EagerAds, int], delta: bool
) -> None:
    servicer, port = eager
    received = servicer.delta if delta else servicer.sotw
    client = LightAdsClient(f"127.0.0.1:{port}", NODE_ID, delta=delta, metadata=BIG_NODE)
    async with client as c:
        await c.wait_for(lambda: c.received[CLUSTER].responses == BURST, timeout=20)
        async with asyncio.timeout(20):
            while _acks(received) < BURST:
                await asyncio.sleep(0.01)
        assert not c.done  # the stream is still open: no write was refused
    subscribed = {r.type_url for r in received if not r.response_nonce}
    assert {CLUSTER, LISTENER} <= subscribed
    assert [r.response_nonce for r in received if r.response_nonce] == [
        str(i) for i in range(BURST)
    ]


async def test_writes_after_the_stream_ended_do_not_hang_close(
    eager: tuple[EagerAds, int],
) -> None:
    _, port = eager
    client = LightAdsClient(f"127.0.0.1:{port}", NODE_ID)
    await client.start()
    await client.close()
    await client.close()  # idempotent
