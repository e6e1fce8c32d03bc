"""What the fault tests share: steady load from a second process, and finding a workload's
agent, Envoy and app processes so that one of them can be hit on purpose (by PID)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.meshctl import TRELLIS, Mesh, eventually, pid_alive
from trellis.runtime.client import LocalApi
from trellis.runtime.layout import Layout

LOADGEN = Path(__file__).with_name("loadgen.py")
HTTPBIN_HOSTNAME_URL = "http://httpbin:8000/hostname"


@dataclass(frozen=True)
class LoadCounts:
    """What the load loop saw so far: requests by status, successes by serving instance."""

    statuses: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return self.total - self.ok

    def served_by(self, instance: str) -> int:
        return self.instances.get(instance, 0)


class LoadRun:
    """A load loop inside `client` (a second process), stopped by a file, killed by PID."""

    def __init__(self, mesh: Mesh, client: str, url: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.out = workdir / "load.json"
        self.stop_file = workdir / "load.stop"
        self.out.unlink(missing_ok=True)
        self.stop_file.unlink(missing_ok=True)
        argv = [TRELLIS, "exec", client, "--state-dir", str(mesh.state_dir), "--"]
        argv += [sys.executable, str(LOADGEN), "--url", url]
        argv += ["--out", str(self.out), "--stop-file", str(self.stop_file)]
        self.log = open(workdir / "load.log", "ab")  # noqa: SIM115 - closed in finish()
        # `trellis exec` execs `ip netns exec`, which execs Python: this PID is the loop's.
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def counts(self) -> LoadCounts:
        try:
            data: dict[str, dict[str, int]] = json.loads(self.out.read_text())
        except (OSError, ValueError):
            return LoadCounts()
        return LoadCounts(data["status"], data["instance"], data["error"])

    def wait_for(self, check: Callable[[LoadCounts], bool], what: str, timeout: float = 60) -> None:
        def progressed() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the load loop exited early: {self.proc.returncode}")
            return check(self.counts())

        eventually(progressed, timeout=timeout, what=what)

    def more_requests(self, n: int, what: str = "more requests", timeout: float = 60) -> None:
        """Readiness poll on the load itself: `n` more answered requests than now."""
        target = self.counts().total + n
        self.wait_for(lambda c: c.total >= target, f"{what} ({n} requests)", timeout)

    def finish(self) -> LoadCounts:
        """Stop the loop (it flushes its counts on the way out); kill it if it hangs."""
        self.stop_file.touch()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return self.counts()


@contextlib.contextmanager
def steady_load(mesh: Mesh, client: str, url: str, workdir: Path) -> Iterator[LoadRun]:
    """Load that is already flowing (some successes) when the body starts; always stopped."""
    load = LoadRun(mesh, client, url, workdir)
    try:
        load.wait_for(lambda c: c.ok >= 20, "the load loop to get answers")
        yield load
    finally:
        if load.proc.poll() is None:
            load.finish()


# --- the mesh's local APIs: what `trellis ps|status|proxy-status` show, without a CLI start ---


def _local(mesh: Mesh, what: str) -> LocalApi:
    layout = Layout(mesh.state_dir)
    socket = layout.trellisd_socket if what == "trellisd" else layout.runtime_socket
    return LocalApi(socket, what)


def proxy_statuses(mesh: Mesh) -> list[dict[str, Any]]:
    """Every connected proxy, as `trellis proxy-status -o json` lists it."""
    return list(_local(mesh, "trellisd").call("GET", "/proxy-status", timeout=10)["proxies"])


def component_pid(mesh: Mesh, name: str) -> int:
    """PID of a runtime component (trellisd, a gateway), as `trellis status` shows it."""
    status = _local(mesh, "the runtime").call("GET", "/status", timeout=10)
    return int(next(c for c in status["components"] if c["name"] == name)["pid"])


def workload(mesh: Mesh, name: str) -> dict[str, Any]:
    """`trellis ps` entry of one workload (its agent's pid, ip, netns, restarts)."""
    items = _local(mesh, "the runtime").call("GET", "/workloads", timeout=10)["items"]
    return dict(next(w for w in items if w["name"] == name))


# --- processes of a workload -------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Envoy and the app are the agent's, each in its own session)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(proc.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes()).replace(b"\0", b" ").decode()
    except OSError:
        return ""


def child_running(agent_pid: int, marker: str) -> int | None:
    """The agent's child whose command line contains `marker` (`envoy`, `httpbin.py`)."""
    for pid in children(agent_pid):
        if marker in _cmdline(pid) and pid_alive(pid):
            return pid
    return None


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def ready_status(ip: str, port: int = 15021) -> int:
    """The sidecar's readiness (:15021/healthz/ready) as the host sees it; 0 if unreachable."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/healthz/ready", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0
