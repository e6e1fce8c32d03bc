"""`trellis-agent` end to end: in a pod with capture, against a (fake) xDS server."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from trellis.runtime import procs
from trellis.runtime.netns import POD_SUPERNET, MeshNetwork, Pod, host_networks, mesh_prefix
from trellis.runtime.netns import teardown as teardown_network

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0
AGENT = [sys.executable, "-m", "trellis.agent.main"]
SLEEPING_APP = [sys.executable, "-c", "import time; print('app up', flush=True); time.sleep(600)"]


class EmptyAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """An xDS server with nothing to say: enough for Envoy to become ready."""

    def __init__(self) -> None:
        self.nodes: list[str] = []

    async def DeltaAggregatedResources(self, request_iterator: Any, context: Any) -> Any:
        async for request in request_iterator:
            if request.node.id:
                self.nodes.append(request.node.id)
            if not request.response_nonce:
                yield discovery_pb2.DeltaDiscoveryResponse(type_url=request.type_url, nonce="1")


@asynccontextmanager
async def empty_ads(host: str) -> AsyncIterator[tuple[EmptyAds, int]]:
    server = grpc.aio.server()
    servicer = EmptyAds()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(grace=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready_pids(ready_file: Path) -> dict[str, int]:
    pairs = (line.split("=", 1) for line in ready_file.read_text().splitlines())
    return {key: int(value) for key, value in pairs if value}


def nat_rules(pod: Pod) -> str:
    argv = [*pod.exec_argv(), "iptables", "-t", "nat", "-S"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


class Agents:
    """Agent processes started by a test, killed by pid (with their groups) afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], *, netns: str | None = None) -> subprocess.Popen[str]:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        proc = subprocess.Popen(
            [*prefix, *AGENT, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def local_args(self, name: str, *extra: str) -> list[str]:
        """An agent on loopback with free ports and no control plane (no capture)."""
        state = self.tmp_path / name
        return [
            "--name", name, "--ip", "127.0.0.1", "--xds-address", "127.0.0.1:1",
            "--admin-port", str(free_port()), "--stats-port", str(free_port()),
            "--ready-port", str(free_port()), "--state-dir", str(state),
            "--ready-file", str(state / "ready"), "--initial-fetch-timeout", "0.1",
            "--drain-seconds", "0.2", *extra,
        ]  # fmt: skip

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                procs.terminate(proc.pid, timeout=10)
            proc.communicate(timeout=TIMEOUT)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    made = Agents(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[tuple[MeshNetwork, Pod]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    used = [net for net in host_networks() if net.prefixlen > 0]
    free = [n for n in POD_SUPERNET.subnets(new_prefix=20) if not any(n.overlaps(u) for u in used)]
    mesh = MeshNetwork(mesh_prefix(tmp_path), random.choice(free))
    try:
        yield mesh, mesh.create_pod("web", mesh.subnet.network_address + 2)
    finally:
        teardown_network(mesh.prefix)


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return str(response.read().decode())


async def wait_file(path: Path, proc: subprocess.Popen[str]) -> None:
    await asyncio.to_thread(procs.wait_file, path, TIMEOUT, pid=proc.pid)


async def wait_for_text(path: Path, text: str, proc: subprocess.Popen[str]) -> None:
    """Poll a log file until it holds `text` (or fail after TIMEOUT, or when `proc` ends)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while text not in (path.read_text() if path.exists() else ""):
        assert proc.poll() is None, f"agent exited ({proc.returncode}) before {path} had {text!r}"
        assert asyncio.get_running_loop().time() < deadline, f"{path} never had {text!r}"
        await asyncio.sleep(0.05)


async def test_agent_in_a_pod_captures_runs_envoy_and_app_and_cleans_up(
    agents: Agents, pod: tuple[MeshNetwork, Pod], tmp_path: Path
) -> None:
    mesh, web = pod
    state = tmp_path / "web"
    async with empty_ads(str(mesh.gateway)) as (ads, port):
        args = [
            "--name", "web", "--namespace", "shop", "--ip", str(web.ip),
            "--labels", "app=web,version=v1", "--xds-address", f"{mesh.gateway}:{port}",
            "--state-dir", str(state), "--ready-file", str(state / "ready"),
            "--capture", "iptables", "--drain-seconds", "0.2", "--", *SLEEPING_APP,
        ]  # fmt: skip
        agent = agents.start(args, netns=web.netns)
        await wait_file(state / "ready", agent)
        pids = ready_pids(state / "ready")
        assert ads.nodes[0] == f"sidecar~{web.ip}~web.shop~shop.svc.cluster.local"
        assert "-A OUTPUT -p tcp -j TRELLIS_OUTPUT" in nat_rules(web)
        assert procs.is_alive(pids["envoy_pid"]) and procs.is_alive(pids["app_pid"])
        ready = f"http://{web.ip}:15021/healthz/ready"  # host -> pod, not captured
        await asyncio.to_thread(procs.wait_http_ok, ready, TIMEOUT)
        # Envoy can be ready before the app's interpreter has printed its first line.
        await wait_for_text(state / "app.log", "app up", agent)
        stats = f"http://{web.ip}:15090/stats/prometheus"  # served by the agent, not Envoy
        body = await asyncio.to_thread(http_text, stats)
        assert "# TYPE istio_requests_total counter" in body
        assert "envoy_server_live" in body

        agent.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(agent.communicate, timeout=TIMEOUT)
    assert agent.returncode == 0, stderr
    assert not (state / "ready").exists()
    assert not procs.is_alive(pids["envoy_pid"]) and not procs.is_alive(pids["app_pid"])
    assert "TRELLIS" not in nat_rules(web)
    assert "event=capture_removed" in stderr and "event=agent_stopped" in stderr


async def test_agent_exits_nonzero_when_envoy_cannot_start(agents: Agents) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = agents.local_args("broken")
        args[args.index("--admin-port") + 1] = str(taken.getsockname()[1])
        agent = agents.start(args)
        _, stderr = await asyncio.to_thread(agent.communicate, timeout=TIMEOUT)
    assert agent.returncode == 1
    assert "event=agent_failed" in stderr
    assert "envoy exited" in stderr


async def test_agent_without_restart_exits_with_the_apps_code(agents: Agents) -> None:
    app = [sys.executable, "-c", "import sys; sys.exit(3)"]
    agent = agents.start(agents.local_args("once", "--", *app))
    _, stderr = await asyncio.to_thread(agent.communicate, timeout=TIMEOUT)
    assert agent.returncode == 3, stderr
    assert "event=app_exited rc=3" in stderr


async def test_agent_restarts_the_app_when_asked(agents: Agents, tmp_path: Path) -> None:
    app = [sys.executable, "-c", "print('started', flush=True)"]
    agent = agents.start(agents.local_args("again", "--restart-app", "--", *app))
    log = tmp_path / "again" / "app.log"

    def started_twice() -> None:
        procs.wait_file(log, TIMEOUT, pid=agent.pid)
        while log.read_text().count("started") < 2:
            assert agent.poll() is None
            time.sleep(0.05)

    await asyncio.to_thread(started_twice)
    agent.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.to_thread(agent.communicate, timeout=TIMEOUT)
    assert agent.returncode == 0, stderr
