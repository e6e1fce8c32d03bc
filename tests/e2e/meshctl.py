"""Drive a real Trellis mesh the way a user does: the `trellis` command and plain HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TRELLIS = str(Path(sys.executable).parent / "trellis")
REPO = Path(__file__).resolve().parents[2]
NETWORKING = REPO / "samples" / "bookinfo" / "networking"


@dataclass
class Mesh:
    state_dir: Path
    ingress_port: int

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [TRELLIS, *args, "--state-dir", str(self.state_dir)]
            if "--" not in args
            else [TRELLIS, *_with_state(args, self.state_dir)],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200"},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"trellis {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def apply(self, text: str) -> subprocess.CompletedProcess[str]:
        return self.cli("apply", "-f", "-", input=text)

    def apply_file(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.cli("apply", "-f", str(NETWORKING / name))

    def delete_file(self, name: str) -> None:
        self.cli("delete", "-f", str(NETWORKING / name), check=False)

    def http(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.ingress_port}{path}", headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def reviews_pod(self, user: str | None = None) -> str:
        """Which reviews instance served productpage's reviews call (via the product API)."""
        headers = {"cookie": f"session={user}"} if user else {}
        status, body = self.http("/api/v1/products/0/reviews", headers)
        assert status == 200, body
        return str(json.loads(body)["podname"])

    def exec_in(self, workload: str, code: str) -> str:
        proc = self.cli("exec", workload, "--", sys.executable, "-c", code)
        return proc.stdout


def _with_state(args: tuple[str, ...], state_dir: Path) -> list[str]:
    i = args.index("--")
    return [*args[:i], "--state-dir", str(state_dir), *args[i:]]


def eventually(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll until `check()` is true; config propagates in milliseconds but not instantly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (AssertionError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
