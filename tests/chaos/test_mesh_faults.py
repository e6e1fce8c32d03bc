"""Faults under steady load, in one mesh of this module's own.

Two httpbin instances (httpbin-a, httpbin-b) behind the `httpbin` Service, with retries and
outlier detection configured as a user would; a `client` workload (sidecar only) from which a
second process sends one request after another. Each test hits one part of the mesh on purpose
(by PID or by interface name), waits for recovery by polling, and counts the requests that
failed at the caller. No test measures time; load runs as long as its readiness polls need.

The NACK fault (a config Envoy rejects: the proxy keeps its last good config and
`proxy-status` shows NACKED) is tested on the shared Bookinfo mesh, in
tests/e2e/test_cli_workloads.py::test_a_config_envoy_rejects_is_reported_as_nack_and_traffic_keeps_flowing.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.chaos.faults import (
    HTTPBIN_HOSTNAME_URL,
    LoadCounts,
    LoadRun,
    child_running,
    component_pid,
    kill,
    proxy_statuses,
    ready_status,
    steady_load,
    workload,
)
from tests.e2e.meshctl import (
    HTTPBIN_DIR,
    TRELLIS,
    Mesh,
    eventually,
    in_parallel,
    own_mesh,
    pid_alive,
    run_httpbin,
)
from trellis.errors import TrellisError
from trellis.runtime.layout import Layout, MeshInfo
from trellis.runtime.netns import MeshNetwork

pytestmark = pytest.mark.e2e

CLIENT = "client"
APP_PORT = 8080  # httpbin's targetPort
SUCCESS_FLOOR = 0.999
LOAD_MIN = 1000  # requests a success ratio is judged over (one failure allowed)

# Retries and outlier detection, as a user protects a service: a per-try timeout bounds a
# request stuck on an unreachable instance, outlier detection takes the instance out of the
# pool after one failure and brings it back after the ejection time.
RESILIENCE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin}}]
    retries: {attempts: %(attempts)d, perTryTimeout: 3s, retryOn: "5xx,reset,connect-failure,refused-stream"}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: 1s}}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 2s
      maxEjectionPercent: 50
"""


def resilience(attempts: int = 5) -> str:
    return RESILIENCE % {"attempts": attempts}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with own_mesh(tmp_path_factory.mktemp("chaos-mesh"), "--no-tracing") as m:
        in_parallel(
            lambda: run_httpbin(m, "httpbin-a", "app=httpbin,version=v1"),
            lambda: run_httpbin(m, "httpbin-b", "app=httpbin,version=v2"),
            lambda: m.cli("run", CLIENT, "--labels", "app=client"),
        )
        m.cli("apply", "-f", str(HTTPBIN_DIR / "httpbin.yaml"))
        m.apply(resilience())
        eventually(lambda: _all_synced(m), timeout=60, what="every proxy synced")
        yield m


def _all_synced(mesh: Mesh) -> bool:
    try:
        found = proxy_statuses(mesh)
    except TrellisError:  # trellisd is (re)starting
        return False
    names = {p["proxy"] for p in found}
    wanted = {f"{n}.default" for n in ("httpbin-a", "httpbin-b", CLIENT)}
    return wanted <= names and all(p["synced"] for p in found)


def _acked(mesh: Mesh, proxy: str, type_name: str) -> str:
    entry = next(p for p in proxy_statuses(mesh) if p["proxy"] == proxy)
    return str(entry["xds"][type_name]["acked"])


def _client_routes(mesh: Mesh) -> str:
    return mesh.cli("proxy-config", "routes", f"{CLIENT}.default", "-o", "json").stdout


def _success_ratio(counts: LoadCounts) -> float:
    return counts.ok / counts.total if counts.total else 0.0


def _instance_back(load_counts: LoadCounts, instance: str, before: int) -> bool:
    return load_counts.served_by(instance) > before


# --- 1. control plane --------------------------------------------------------------------


def test_kill_9_trellisd_under_load_fails_no_request_and_proxies_resync(
    mesh: Mesh, tmp_path: Path
) -> None:
    with steady_load(mesh, CLIENT, HTTPBIN_HOSTNAME_URL, tmp_path) as load:
        before = component_pid(mesh, "trellisd")
        kill(before)
        # The data plane keeps its last config while the supervisor brings trellisd back.
        load.more_requests(50, "requests while trellisd is down or restarting")
        eventually(
            lambda: component_pid(mesh, "trellisd") != before, 60, "the supervisor to restart it"
        )
        eventually(lambda: _all_synced(mesh), 60, "proxies to reconnect and sync")
        # The restarted trellisd serves what its store held: the retries applied before.
        assert '"numRetries": 5' in _client_routes(mesh)
        # A change made after the restart reaches every proxy: all SYNCED, at a newer version.
        client_proxy = f"{CLIENT}.default"
        old_routes = _acked(mesh, client_proxy, "RDS")
        mesh.apply(resilience(attempts=4))
        eventually(
            lambda: _acked(mesh, client_proxy, "RDS") != old_routes and _all_synced(mesh),
            60,
            "the post-restart change to be ACKed everywhere",
        )
        assert "STALE" not in mesh.cli("proxy-status").stdout
        assert '"numRetries": 4' in _client_routes(mesh)
        load.more_requests(50, "requests after the change")
        counts = load.finish()
    assert counts.failed == 0, counts.errors
    assert counts.served_by("httpbin-a") and counts.served_by("httpbin-b")


# --- 2. application instance ---------------------------------------------------------------


def _kill_app_until_it_serves_again(mesh: Mesh, load: LoadRun, instance: str) -> None:
    """kill -9 the instance's app; the agent restarts it, outlier detection lets it back in."""
    agent = int(workload(mesh, instance)["pid"])
    app = child_running(agent, "httpbin.py")
    assert app is not None
    served = load.counts().served_by(instance)
    kill(app)
    eventually(lambda: child_running(agent, "httpbin.py") not in (None, app), 60, "app back")
    load.wait_for(lambda c: _instance_back(c, instance, served), f"{instance} to serve again")


def test_killed_app_instance_keeps_success_at_the_caller_above_999_per_mille(
    mesh: Mesh, tmp_path: Path
) -> None:
    with steady_load(mesh, CLIENT, HTTPBIN_HOSTNAME_URL, tmp_path) as load:
        _kill_app_until_it_serves_again(mesh, load, "httpbin-b")
        load.wait_for(lambda c: c.total >= LOAD_MIN, f"{LOAD_MIN} requests in all", timeout=300)
        counts = load.finish()
    assert _success_ratio(counts) >= SUCCESS_FLOOR, counts


@pytest.mark.slow
def test_app_instance_killed_again_and_again_keeps_success_above_999_per_mille(
    mesh: Mesh, tmp_path: Path
) -> None:
    """The long form: several kills in one run (the agent's restart backoff grows each time)."""
    rounds = 4
    with steady_load(mesh, CLIENT, HTTPBIN_HOSTNAME_URL, tmp_path) as load:
        for _ in range(rounds):
            _kill_app_until_it_serves_again(mesh, load, "httpbin-b")
        want = rounds * LOAD_MIN
        load.wait_for(lambda c: c.total >= want, f"{want} requests in all", timeout=600)
        counts = load.finish()
    assert _success_ratio(counts) >= SUCCESS_FLOOR, counts


# --- 3. Envoy crash --------------------------------------------------------------------------


class ReadinessWatch:
    """Polls a sidecar's readiness from a thread and keeps every answer, in order."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.append(ready_status(self.ip))
            self._stop.wait(0.02)

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_envoy_killed_is_restarted_by_its_agent_and_readiness_recovers(
    mesh: Mesh, tmp_path: Path
) -> None:
    wl = workload(mesh, "httpbin-b")
    agent, ip = int(wl["pid"]), str(wl["ip"])
    envoy = child_running(agent, "--disable-hot-restart")
    assert envoy is not None and ready_status(ip) == 200
    with steady_load(mesh, CLIENT, HTTPBIN_HOSTNAME_URL, tmp_path) as load:
        with ReadinessWatch(ip) as watch:
            kill(envoy)
            eventually(lambda: not pid_alive(envoy), 10, "the old Envoy to be gone")
            mark = len(watch.seen)
            eventually(
                lambda: child_running(agent, "--disable-hot-restart") not in (None, envoy),
                30,
                "the agent to start a new Envoy",
            )
            eventually(lambda: 200 in watch.seen[mark:], 60, "readiness to come back")
        served = load.counts().served_by("httpbin-b")
        load.wait_for(lambda c: _instance_back(c, "httpbin-b", served), "traffic to recover")
        load.finish()
    after_kill = watch.seen[mark:]
    assert after_kill[0] != 200  # not ready while no Envoy runs ...
    assert after_kill[-1] == 200  # ... ready again once the new one has its config
    assert pid_alive(agent)  # the agent itself never went away


# --- 5. network cut -------------------------------------------------------------------------


def _host_veth(mesh: Mesh, ip: str) -> str:
    info = MeshInfo.load(Layout(mesh.state_dir).mesh_file)
    assert info is not None
    return MeshNetwork(prefix=info.prefix, subnet=info.subnet).veth_names(IPv4Address(ip))[0]


def _set_link(name: str, state: str) -> None:
    subprocess.run(["ip", "link", "set", name, state], check=True)


def _ejected(mesh: Mesh, ip: str) -> bool:
    """Whether the client's Envoy has taken `ip` out of httpbin's pool (outlier detection)."""
    code = (
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://127.0.0.1:15000/clusters', timeout=5).read().decode())"
    )
    prefix = f"outbound|8000||httpbin.default.svc.cluster.local::{ip}:{APP_PORT}::health_flags::"
    lines = [ln for ln in mesh.exec_in(CLIENT, code).splitlines() if ln.startswith(prefix)]
    return bool(lines) and "failed_outlier_check" in lines[0]


def test_cut_veth_takes_the_pod_out_of_the_pool_until_the_link_is_back(
    mesh: Mesh, tmp_path: Path
) -> None:
    ip = str(workload(mesh, "httpbin-b")["ip"])
    veth = _host_veth(mesh, ip)
    with steady_load(mesh, CLIENT, HTTPBIN_HOSTNAME_URL, tmp_path) as load:
        _set_link(veth, "down")
        try:
            eventually(lambda: _ejected(mesh, ip), 60, "httpbin-b to be ejected")
            load.more_requests(100, "requests while httpbin-b is cut off")
        finally:
            _set_link(veth, "up")
        served = load.counts().served_by("httpbin-b")
        load.wait_for(
            lambda c: _instance_back(c, "httpbin-b", served), "httpbin-b back in the pool"
        )
        counts = load.finish()
    assert _success_ratio(counts) >= SUCCESS_FLOOR, counts


# --- 7. sidecar shutdown --------------------------------------------------------------------

IN_FLIGHT = 4
# Shorter than the agent's drain period (5 s, Istio's terminationDrainDuration): a request
# that takes longer than the drain is cut, in Istio as here.
SLOW_PATH = "/delay/3"
_SLOW_CLIENT = """
import concurrent.futures, json, urllib.request
def get(_):
    with urllib.request.urlopen({url!r}, timeout=30) as r:
        return r.status
with concurrent.futures.ThreadPoolExecutor({n}) as pool:
    print(json.dumps(list(pool.map(get, range({n})))))
"""
# Runs in the server's pod: says `watching`, then `in-flight` once its Envoy holds `n` requests.
_IN_FLIGHT_WATCH = """
import json, sys, time, urllib.request
url = "http://127.0.0.1:15000/stats?format=json&filter={pattern}"
print("watching", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    stats = json.load(urllib.request.urlopen(url, timeout=5))["stats"]
    if stats and stats[0]["value"] >= {n}:
        print("in-flight", flush=True)
        sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
"""


def _exec(mesh: Mesh, workload_name: str, code: str) -> subprocess.Popen[str]:
    argv = [TRELLIS, "exec", workload_name, "--state-dir", str(mesh.state_dir), "--"]
    return subprocess.Popen([*argv, sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_sigterm_on_a_sidecar_drains_in_flight_requests_before_it_exits(mesh: Mesh) -> None:
    wl = workload(mesh, "httpbin-b")
    agent, ip = int(wl["pid"]), str(wl["ip"])
    active = f"http.inbound_0.0.0.0_{APP_PORT}.downstream_rq_active"
    pattern = urllib.parse.quote(f"^{re.escape(active)}$", safe="")
    watch = _exec(mesh, "httpbin-b", _IN_FLIGHT_WATCH.format(pattern=pattern, n=IN_FLIGHT))
    slow: subprocess.Popen[str] | None = None
    try:
        assert watch.stdout is not None and watch.stdout.readline().strip() == "watching"
        url = f"http://{ip}:{APP_PORT}{SLOW_PATH}"
        slow = _exec(mesh, CLIENT, _SLOW_CLIENT.format(url=url, n=IN_FLIGHT))
        assert watch.stdout.readline().strip() == "in-flight"
        kill(agent, signal.SIGTERM)
        out, _ = slow.communicate(timeout=60)
    finally:
        for proc in (watch, slow):
            if proc is not None:
                _reap(proc)
    assert json.loads(out) == [200] * IN_FLIGHT
    eventually(lambda: not pid_alive(agent), 30, "the agent to exit after draining")
    # The runtime restarts the workload's agent; it comes back ready.
    eventually(lambda: int(workload(mesh, "httpbin-b")["pid"]) != agent, 30, "a new agent")
    eventually(lambda: ready_status(ip) == 200, 60, "httpbin-b ready again")
