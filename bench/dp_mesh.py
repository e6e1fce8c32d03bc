"""The Trellis rows of the data-plane bench: a real mesh, driven with the `trellis` command.

`trellis up` on a temporary state dir and a free ingress port, a v1 Service for the server,
the upstream as a workload with its sidecar, a client workload with its sidecar whose network
namespace wrk then runs in (`trellis exec`: its traffic is captured by the client sidecar, as
an app's would be). Two more workloads without sidecars give the pod -> pod baseline: the same
bridge and namespaces, no proxies. `trellis down` always runs at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, free_port, log

TRELLIS = str(Path(sys.executable).parent / "trellis")
SERVER, CLIENT = "bench-server", "bench-client"
PLAIN_SERVER, PLAIN_CLIENT = "bench-plain-server", "bench-plain-client"
PORT = 9080
UPSTREAM = str(REPO / "bench" / "dp_upstream.py")

SERVICE_YAML = f"""
apiVersion: v1
kind: Service
metadata: {{name: {SERVER}, namespace: default}}
spec:
  selector: {{app: {SERVER}}}
  ports: [{{name: http, port: {PORT}, targetPort: {PORT}}}]
"""


@dataclass
class BenchMesh:
    """One mesh for the bench; use as a context manager so `trellis down` always runs."""

    state_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="trellis-bench-dp-"))
    )
    ingress_port: int = field(default_factory=free_port)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 180) -> str:
        argv = [TRELLIS, *args]
        at = argv.index("--") if "--" in argv else len(argv)
        argv[at:at] = ["--state-dir", str(self.state_dir)]
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"trellis {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def __enter__(self) -> BenchMesh:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        log(f"mesh: trellis up (state dir {self.state_dir}, ingress :{self.ingress_port})")
        self.cli(
            "up", "--ingress-port", str(self.ingress_port), "--capture", "iptables", timeout=300
        )
        self.cli("apply", "-f", "-", stdin=SERVICE_YAML)
        upstream = [sys.executable, UPSTREAM, "--port", str(PORT)]
        sleeper = ["sleep", "infinity"]
        self._run(SERVER, ["--port", str(PORT), "--labels", f"app={SERVER},version=v1"], upstream)
        self._run(CLIENT, ["--labels", f"app={CLIENT},version=v1"], sleeper)
        plain = ["--no-sidecar", "--labels"]
        self._run(PLAIN_SERVER, ["--port", str(PORT), *plain, f"app={PLAIN_SERVER}"], upstream)
        self._run(PLAIN_CLIENT, [*plain, f"app={PLAIN_CLIENT}"], sleeper)
        self.workloads = {w["name"]: w for w in json.loads(self.cli("ps", "-o", "json"))}
        self._wait_routable(CLIENT, self.mesh_url)
        self._wait_routable(PLAIN_CLIENT, self.plain_url)

    def _run(self, name: str, options: list[str], command: list[str]) -> None:
        log(f"mesh: trellis run {name}")
        self.cli("run", name, *options, "--", *command, timeout=180)

    @property
    def mesh_url(self) -> str:
        return f"http://{SERVER}:{PORT}/"

    @property
    def plain_url(self) -> str:
        return f"http://{self.workloads[PLAIN_SERVER]['ip']}:{PORT}/"

    def exec_argv(self, workload: str, command: list[str]) -> list[str]:
        """`trellis exec WORKLOAD -- command`: run inside that workload's network namespace."""
        return [TRELLIS, "exec", workload, "--state-dir", str(self.state_dir), "--", *command]

    def envoy_pids(self, *workloads: str) -> list[int]:
        """Envoy processes in these workloads' network namespaces (their sidecars)."""
        pids = []
        for name in workloads:
            netns = self.workloads[name]["netns"]
            out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
            for pid in out.stdout.split():
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "envoy":
                        pids.append(int(pid))
                except OSError:
                    continue
        return pids

    def _wait_routable(self, client: str, url: str, timeout: float = 60) -> None:
        """Config propagates in milliseconds, not instantly: poll until a request answers 200."""
        probe = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=3).status)"
        deadline = time.monotonic() + timeout
        while True:
            argv = self.exec_argv(client, [sys.executable, "-c", probe])
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if proc.stdout.strip() == "200":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not reachable from {client}: {proc.stderr[-500:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            self.cli("down", timeout=180)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(f"mesh: trellis down failed: {e}")
        logs = self.state_dir / "logs"
        if os.environ.get("TRELLIS_BENCH_KEEP_LOGS") and logs.exists():
            log(f"mesh: logs kept in {logs}")
            return
        shutil.rmtree(self.state_dir, ignore_errors=True)
