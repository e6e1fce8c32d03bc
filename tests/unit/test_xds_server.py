"""AdsServer against LightAdsClient over real gRPC on 127.0.0.1 (both SotW and delta)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from trellis.model.proxy import Proxy
from trellis.model.xds_types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from trellis.xds.contract import ProxyStatus, TypeStatus
from trellis.xds.lightclient import LightAdsClient
from trellis.xds.server import AdsServer

NODE_A = "sidecar~198.18.0.1~a.demo~demo.svc.cluster.local"
NODE_B = "sidecar~198.18.0.2~b.other~other.svc.cluster.local"
TIMEOUT = 5.0


# -- resources -----------------------------------------------------------------------------


def eds_cluster(name: str) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    return cluster


def endpoints(name: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    address = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    address.address, address.port_value = "127.0.0.1", port
    return cla


def listener(name: str, route_name: str) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    hcm.rds.route_config_name = route_name
    hcm.rds.config_source.ads.SetInParent()
    result = listener_pb2.Listener(name=name)
    result.address.socket_address.address = "127.0.0.1"
    result.address.socket_address.port_value = 1
    network_filter = result.filter_chains.add().filters.add(name="hcm")
    network_filter.typed_config.Pack(hcm)
    return result


def route(name: str, cluster: str) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(name=name)
    entry = config.virtual_hosts.add(name="all", domains=["*"]).routes.add()
    entry.match.prefix = "/"
    entry.route.cluster = cluster
    return config


class MeshConfig:
    """A mutable stand-in for the compiler: resources by type, the same for every proxy."""

    def __init__(self) -> None:
        self.by_type: dict[str, dict[str, Message]] = {
            CLUSTER: {"c1": eds_cluster("c1")},
            ENDPOINT: {"c1": endpoints("c1", 8001)},
            LISTENER: {"l1": listener("l1", "r1")},
            ROUTE: {"r1": route("r1", "c1")},
        }

    def __call__(self, proxy: Proxy, type_url: str) -> Mapping[str, Message]:
        return dict(self.by_type.get(type_url, {}))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def config() -> MeshConfig:
    return MeshConfig()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(config: MeshConfig, clock: FakeClock) -> AsyncIterator[AdsServer]:
    ads = AdsServer(config, clock, version="v1", debounce_quiet=0.1, debounce_max=1.0)
    await ads.start("127.0.0.1", 0)
    try:
        yield ads
    finally:
        await ads.stop(0)


@pytest.fixture(params=[True, False], ids=["delta", "sotw"])
def delta(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


ClientFactory = Callable[..., LightAdsClient]


@pytest.fixture
async def make_client(server: AdsServer, delta: bool) -> AsyncIterator[ClientFactory]:
    clients: list[LightAdsClient] = []

    def make(node_id: str = NODE_A, **kwargs: object) -> LightAdsClient:
        kwargs.setdefault("delta", delta)
        client = LightAdsClient(f"127.0.0.1:{server.port}", node_id, **kwargs)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


async def synced(client: LightAdsClient, version: str, types: Sequence[str] = ()) -> None:
    for type_url in types or (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        await client.wait_for_version(type_url, version, TIMEOUT)


async def wait_status(server: AdsServer, check: Callable[[ProxyStatus], bool]) -> ProxyStatus:
    async with asyncio.timeout(TIMEOUT):
        while True:
            statuses = server.statuses()
            if statuses and check(statuses[0]):
                return statuses[0]
            await asyncio.sleep(0.01)


def type_status(status: ProxyStatus, type_url: str) -> TypeStatus:
    return next(t for t in status.types if t.type_url == type_url)


def fire(clock: FakeClock) -> None:
    """Let the debounce window pass (the server polls its clock)."""
    clock.now += 2.0


# -- tests ---------------------------------------------------------------------------------


async def test_initial_sync_follows_clusters_and_listeners(
    server: AdsServer, make_client: ClientFactory, delta: bool
) -> None:
    client = make_client()
    await client.start()
    await synced(client, "v1")
    assert set(client.received[ENDPOINT].resources) == {"c1"}
    assert set(client.received[ROUTE].resources) == {"r1"}
    status = await wait_status(server, lambda s: s.synced and len(s.types) == 4)
    assert status.proxy.key == "a.demo"
    assert status.delta is delta
    assert [p.key for p in server.connected()] == ["a.demo"]
    assert server.counters.connected_proxies == 1


async def test_update_pushes_the_new_route(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock
) -> None:
    client = make_client()
    await client.start()
    await synced(client, "v1")
    config.by_type[ROUTE] = {"r1": route("r1", "c2")}
    server.update("v2", frozenset({ROUTE}))
    fire(clock)
    await client.wait_for_version(ROUTE, "v2", TIMEOUT)
    await wait_status(server, lambda s: type_status(s, ROUTE).acked_version == "v2")
    assert server.counters.pushes_total >= 5


async def test_endpoint_only_update_pushes_only_eds(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock
) -> None:
    client = make_client()
    await client.start()
    await synced(client, "v1")
    before = {t: r.responses for t, r in client.received.items()}
    config.by_type[ENDPOINT] = {"c1": endpoints("c1", 9001)}
    server.update("v2", frozenset({ENDPOINT}))
    fire(clock)
    await client.wait_for_version(ENDPOINT, "v2", TIMEOUT)
    await wait_status(server, lambda s: type_status(s, ENDPOINT).acked_version == "v2")
    after = {t: r.responses for t, r in client.received.items()}
    assert after[ENDPOINT] == before[ENDPOINT] + 1
    assert {t: n for t, n in after.items() if t != ENDPOINT} == {
        t: n for t, n in before.items() if t != ENDPOINT
    }


async def test_unchanged_content_is_not_pushed(
    server: AdsServer, make_client: ClientFactory, clock: FakeClock
) -> None:
    client = make_client()
    await client.start()
    await synced(client, "v1")
    pushes, done = server.counters.pushes_total, server.counters.proxy_pushes_total
    server.update("v2", frozenset({CLUSTER, ENDPOINT, LISTENER, ROUTE}))
    fire(clock)
    await until(lambda: server.counters.proxy_pushes_total == done + 1)
    assert server.counters.pushes_total == pushes


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not predicate():
            await asyncio.sleep(0.01)


def reject_cluster(bad: str) -> Callable[[str, Sequence[any_pb2.Any]], str | None]:
    def reject(type_url: str, resources: Sequence[any_pb2.Any]) -> str | None:
        if type_url != CLUSTER:
            return None
        for packed in resources:
            cluster = cluster_pb2.Cluster()
            packed.Unpack(cluster)
            if cluster.name == bad:
                return f"cluster {bad}: invalid"
        return None

    return reject


async def test_nack_keeps_last_good_and_is_never_resent(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock
) -> None:
    client = make_client(reject=reject_cluster("bad"))
    await client.start()
    await synced(client, "v1")
    config.by_type[CLUSTER] = {"c1": eds_cluster("c1"), "bad": eds_cluster("bad")}
    server.update("v2", frozenset({CLUSTER}))
    fire(clock)
    status = await wait_status(server, lambda s: type_status(s, CLUSTER).nacked_version == "v2")
    cds = type_status(status, CLUSTER)
    assert cds.acked_version == "v1"
    assert cds.nack_message == "cluster bad: invalid"
    assert not status.synced
    assert server.counters.nacks_total == 1
    assert set(client.received[CLUSTER].resources) == {"c1"}

    # The same bad content again (another, unrelated update) is not sent again.
    responses = client.received[CLUSTER].responses
    server.update("v3", frozenset({CLUSTER}))
    fire(clock)
    config.by_type[ENDPOINT] = {"c1": endpoints("c1", 9002)}
    server.update("v4", frozenset({ENDPOINT}))
    fire(clock)
    await client.wait_for_version(ENDPOINT, "v4", TIMEOUT)
    assert client.received[CLUSTER].responses == responses

    # A new generation goes out and is accepted.
    config.by_type[CLUSTER] = {"c1": eds_cluster("c1"), "good": eds_cluster("good")}
    server.update("v5", frozenset({CLUSTER}))
    fire(clock)
    await client.wait_for_version(CLUSTER, "v5", TIMEOUT)
    status = await wait_status(server, lambda s: type_status(s, CLUSTER).acked_version == "v5")
    assert type_status(status, CLUSTER).nacked_version == ""
    assert set(client.received[CLUSTER].resources) == {"c1", "good"}


def reject_route_to(cluster: str) -> Callable[[str, Sequence[any_pb2.Any]], str | None]:
    def reject(type_url: str, resources: Sequence[any_pb2.Any]) -> str | None:
        for packed in resources if type_url == ROUTE else ():
            config = route_pb2.RouteConfiguration()
            packed.Unpack(config)
            if config.virtual_hosts[0].routes[0].route.cluster == cluster:
                return f"route to {cluster}: invalid"
        return None

    return reject


async def test_nack_clears_when_the_last_good_config_is_wanted_again(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock
) -> None:
    """The bad config is deleted: nothing new to send, and the proxy is in sync again."""
    client = make_client(reject=reject_route_to("bad"))
    await client.start()
    await synced(client, "v1")
    config.by_type[ROUTE] = {"r1": route("r1", "bad")}
    server.update("v2", frozenset({ROUTE}))
    fire(clock)
    await wait_status(server, lambda s: type_status(s, ROUTE).nacked_version == "v2")

    config.by_type[ROUTE] = {"r1": route("r1", "c1")}
    server.update("v3", frozenset({ROUTE}))
    fire(clock)
    status = await wait_status(server, lambda s: s.synced)
    assert type_status(status, ROUTE).acked_version == "v1"
    assert type_status(status, ROUTE).nack_message == ""

    # The rejected content wanted again is not re-sent, and the NACK is reported again.
    responses = client.received[ROUTE].responses
    config.by_type[ROUTE] = {"r1": route("r1", "bad")}
    server.update("v4", frozenset({ROUTE}))
    fire(clock)
    status = await wait_status(server, lambda s: not s.synced)
    assert type_status(status, ROUTE).nack_message == "route to bad: invalid"
    assert client.received[ROUTE].responses == responses


async def test_changes_are_made_before_removals_break(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock, delta: bool
) -> None:
    client = make_client(keep_history=True)
    await client.start()
    await synced(client, "v1")
    assert client.history is not None
    client.history.clear()
    config.by_type[CLUSTER] = {"c2": eds_cluster("c2")}
    config.by_type[ENDPOINT] = {"c2": endpoints("c2", 8002)}
    config.by_type[ROUTE] = {"r1": route("r1", "c2")}
    server.update("v2", frozenset({CLUSTER, ENDPOINT, ROUTE}))
    fire(clock)
    await client.wait_for(lambda: set(client.received[CLUSTER].resources) == {"c2"}, TIMEOUT)
    short = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS"}
    steps = [(short[t], set(names), set(removed)) for t, names, removed in client.history]
    cds = [s for s in steps if s[0] == "CDS"]
    if delta:  # additions first, the removal last and only once nothing uses c1
        assert cds == [("CDS", {"c2"}, set()), ("CDS", set(), {"c1"})]
        assert ("EDS", {"c2"}, set()) in steps
    else:  # the full set keeps c1 until the route moved to c2
        assert cds == [("CDS", {"c1", "c2"}, set()), ("CDS", {"c2"}, set())]
    kinds = [s[0] for s in steps]
    last_cds = len(kinds) - 1 - kinds[::-1].index("CDS")
    assert kinds.index("CDS") < kinds.index("EDS") < kinds.index("RDS") < last_cds


async def test_removing_the_last_cluster_empties_the_set(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock
) -> None:
    client = make_client()
    await client.start()
    await synced(client, "v1")
    config.by_type[CLUSTER], config.by_type[ENDPOINT] = {}, {}
    server.update("v2", frozenset({CLUSTER, ENDPOINT}))
    fire(clock)
    await client.wait_for(lambda: not client.received[CLUSTER].resources, TIMEOUT)
    await wait_status(server, lambda s: s.synced and type_status(s, CLUSTER).acked_version == "v2")


async def test_delta_reconnect_sends_only_what_differs(
    server: AdsServer, config: MeshConfig, clock: FakeClock
) -> None:
    config.by_type[CLUSTER]["c3"] = eds_cluster("c3")
    config.by_type[ENDPOINT]["c3"] = endpoints("c3", 8003)
    address = f"127.0.0.1:{server.port}"
    client = LightAdsClient(address, NODE_A, keep_history=True)
    try:
        await client.start()
        await synced(client, "v1")
        await client.close()
        await wait_status_gone(server)
        config.by_type[CLUSTER]["c3"] = cluster_pb2.Cluster(
            name="c3", type=cluster_pb2.Cluster.STATIC
        )
        del config.by_type[CLUSTER]["c1"]
        server.update("v2", frozenset({CLUSTER}))
        assert client.history is not None
        client.history.clear()
        await client.start()
        await client.wait_for(lambda: "c1" not in client.received[CLUSTER].resources, TIMEOUT)
        cds = [(names, removed) for t, names, removed in client.history if t == CLUSTER]
        assert cds == [(("c3",), ()), ((), ("c1",))]  # the changed one; the removal comes last
    finally:
        await client.close()


async def wait_status_gone(server: AdsServer) -> None:
    await until(lambda: not server.statuses())


async def test_debounce_merges_rapid_updates(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock
) -> None:
    client = make_client()
    await client.start()
    await synced(client, "v1")
    before = client.received[ENDPOINT].responses
    for version, port in (("v2", 9002), ("v3", 9003), ("v4", 9004)):
        config.by_type[ENDPOINT] = {"c1": endpoints("c1", port)}
        server.update(version, frozenset({ENDPOINT}))
        clock.now += 0.05  # less than the 100 ms quiet period each time
    fire(clock)
    await client.wait_for_version(ENDPOINT, "v4", TIMEOUT)
    record = client.received[ENDPOINT]
    assert record.responses == before + 1
    assert "v2" not in record.seen and "v3" not in record.seen


async def test_debounce_gives_up_waiting_after_the_max(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock
) -> None:
    client = make_client()
    await client.start()
    await synced(client, "v1")
    for n in range(12):  # a steady stream, never 100 ms quiet: pushed once 1 s has passed
        config.by_type[ENDPOINT] = {"c1": endpoints("c1", 9100 + n)}
        server.update(f"v{n + 2}", frozenset({ENDPOINT}))
        clock.now += 0.09
    await client.wait_for(lambda: client.received[ENDPOINT].version != "v1", TIMEOUT)
    assert client.received[ENDPOINT].version in {"v12", "v13"}


async def test_unaffected_proxies_get_no_push(
    server: AdsServer, make_client: ClientFactory, config: MeshConfig, clock: FakeClock
) -> None:
    a, b = make_client(NODE_A), make_client(NODE_B)
    await a.start()
    await b.start()
    await synced(a, "v1")
    await synced(b, "v1")
    done = server.counters.proxy_pushes_total
    config.by_type[ENDPOINT] = {"c1": endpoints("c1", 9005)}
    server.update("v2", frozenset({ENDPOINT}), affected=lambda p: p.namespace == "other")
    fire(clock)
    await b.wait_for_version(ENDPOINT, "v2", TIMEOUT)
    server.update("v3", frozenset({LISTENER}), affected=lambda p: p.namespace == "demo")
    fire(clock)
    await until(lambda: server.counters.proxy_pushes_total == done + 2)
    assert "v2" not in a.received[ENDPOINT].seen


async def test_malformed_node_id_is_refused(server: AdsServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
        await call.write(
            discovery_pb2.DeltaDiscoveryRequest(
                node=base_pb2.Node(id="not-a-node-id"), type_url=CLUSTER
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not-a-node-id" in str(raised.value.details())
