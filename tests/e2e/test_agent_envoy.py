"""The agent's Envoy: a real bootstrap validated and run by the real binary, supervised."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from trellis.agent.bootstrap import BootstrapOptions, build_bootstrap
from trellis.agent.envoy import EnvoyProcess, EnvoySettings, default_envoy_path, write_bootstrap
from trellis.errors import RuntimeProblem
from trellis.model.proxy import ProxyType

pytestmark = pytest.mark.e2e

TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """Answers every subscription with an empty response, which is enough for Envoy to be
    initialized; records what Envoy asked for."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def DeltaAggregatedResources(self, request_iterator: Any, context: Any) -> Any:
        async for request in request_iterator:
            self.requests.append(request)
            if not request.response_nonce:
                yield discovery_pb2.DeltaDiscoveryResponse(
                    type_url=request.type_url, nonce="1", system_version_info="1"
                )

    async def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> Any:
        async for request in request_iterator:
            self.requests.append(request)
            if not request.response_nonce:
                yield discovery_pb2.DiscoveryResponse(
                    type_url=request.type_url, nonce="1", version_info="1"
                )


@asynccontextmanager
async def fake_ads() -> AsyncIterator[tuple[FakeAds, int]]:
    server = grpc.aio.server()
    servicer = FakeAds()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(grace=None)


def options(tmp_path: Path, **overrides: Any) -> BootstrapOptions:
    values: dict[str, Any] = {
        "type": ProxyType.SIDECAR,
        "ip": "127.0.0.1",
        "name": "ratings-v1",
        "namespace": "bookinfo",
        "labels": {"app": "ratings", "version": "v1"},
        "xds_host": "127.0.0.1",
        "xds_port": free_port(),
        "admin_port": free_port(),
        "stats_port": free_port(),
        "ready_port": free_port(),
    }
    values.update(overrides)
    return BootstrapOptions(**values)


EnvoyFactory = Callable[[BootstrapOptions], EnvoyProcess]


@pytest.fixture
def make_envoy(tmp_path: Path) -> Iterator[EnvoyFactory]:
    """EnvoyProcess objects whose Envoys are killed (by pid) whatever the test did."""
    made: list[EnvoyProcess] = []

    def make(opts: BootstrapOptions) -> EnvoyProcess:
        path = tmp_path / f"bootstrap-{len(made)}.json"
        write_bootstrap(path, build_bootstrap(opts))
        settings = EnvoySettings(
            bootstrap_path=path,
            log_path=tmp_path / f"envoy-{len(made)}.log",
            admin_port=opts.admin_port,
            drain_time_s=1,
            stop_grace_s=5,
        )
        made.append(EnvoyProcess(settings))
        return made[-1]

    yield make
    for envoy in made:
        if envoy.pid is not None:
            try:
                os.killpg(envoy.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


async def poll(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"type": ProxyType.ROUTER, "delta": False, "xds_host": "localhost", "admin_port": 15100},
    ],
    ids=["sidecar-delta", "router-sotw-dns"],
)
def test_bootstrap_passes_envoy_validation(tmp_path: Path, overrides: dict[str, Any]) -> None:
    path = tmp_path / "bootstrap.json"
    write_bootstrap(path, build_bootstrap(options(tmp_path, **overrides)))
    done = subprocess.run(
        [default_envoy_path(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout + done.stderr


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
async def test_envoy_connects_over_ads_and_serves_readiness_and_stats(
    tmp_path: Path, make_envoy: EnvoyFactory, delta: bool
) -> None:
    async with fake_ads() as (ads, port):
        opts = options(tmp_path, xds_port=port, delta=delta)
        envoy = make_envoy(opts)
        await envoy.start()
        await envoy.wait_ready(TIMEOUT)
        first = ads.requests[0]
        assert first.node.id == "sidecar~127.0.0.1~ratings-v1.bookinfo~bookinfo.svc.cluster.local"
        labels = first.node.metadata.fields["LABELS"].struct_value.fields
        assert labels["version"].string_value == "v1"
        assert {r.type_url.rsplit(".", 1)[1] for r in ads.requests} >= {"Cluster", "Listener"}
        ready = f"http://127.0.0.1:{opts.ready_port}/healthz/ready"
        assert await asyncio.to_thread(http_status, ready) == 200
        stats = f"http://127.0.0.1:{opts.stats_port}/stats/prometheus"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(stats, timeout=2).read())
        assert b"envoy_server_live" in body
        await envoy.drain_and_stop(0.1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to uid 1337")
async def test_envoy_runs_as_uid_1337_in_its_own_session(
    tmp_path: Path, make_envoy: EnvoyFactory
) -> None:
    envoy = make_envoy(options(tmp_path, initial_fetch_timeout_s=0.1))
    await envoy.start()
    await envoy.wait_ready(TIMEOUT)
    assert envoy.pid is not None
    status = Path(f"/proc/{envoy.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["1337"] * 4
    assert os.getsid(envoy.pid) == envoy.pid
    await envoy.stop()


async def test_envoy_is_restarted_after_kill_9(tmp_path: Path, make_envoy: EnvoyFactory) -> None:
    async with fake_ads() as (_, port):
        envoy = make_envoy(options(tmp_path, xds_port=port))
        await envoy.start()
        await envoy.wait_ready(TIMEOUT)
        first_pid = envoy.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await poll(lambda: envoy.restarts == 1 and envoy.pid != first_pid)
        await envoy.wait_ready(TIMEOUT)
        assert envoy.running
        await envoy.stop()


async def test_drain_fails_readiness_then_stop_ends_envoy(
    tmp_path: Path, make_envoy: EnvoyFactory
) -> None:
    async with fake_ads() as (_, port):
        opts = options(tmp_path, xds_port=port)
        envoy = make_envoy(opts)
        await envoy.start()
        await envoy.wait_ready(TIMEOUT)
        pid = envoy.pid
        ready = f"http://127.0.0.1:{opts.ready_port}/healthz/ready"
        draining = asyncio.create_task(envoy.drain_and_stop(30.0))
        await poll(lambda: not envoy.running or _admin_ready_status(opts.admin_port) == 503)
        assert await asyncio.to_thread(http_status, ready) == 503
        draining.cancel()
        with pytest.raises(asyncio.CancelledError):
            await draining
        await envoy.stop()
        assert not envoy.running
        assert pid is not None and not Path(f"/proc/{pid}").exists()
        assert envoy.restarts == 0


def _admin_ready_status(port: int) -> int:
    return http_status(f"http://127.0.0.1:{port}/ready")


async def test_envoy_that_cannot_start_is_reported(
    tmp_path: Path, make_envoy: EnvoyFactory
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        opts = options(tmp_path, admin_port=taken.getsockname()[1])
        envoy = make_envoy(opts)
        await envoy.start()
        with pytest.raises(RuntimeProblem, match="exited"):
            await envoy.wait_ready(TIMEOUT)
    assert not envoy.running
    assert envoy.restarts == 0


def test_bootstrap_file_is_readable_by_envoys_user(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    write_bootstrap(path, {"node": {"id": "x"}})
    assert path.stat().st_mode & 0o004
    assert json.loads(path.read_text()) == {"node": {"id": "x"}}
