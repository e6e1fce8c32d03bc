"""Drive a real Trellis mesh the way a user does: the `trellis` command and plain HTTP."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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


# --- added for the routing-feature, CLI and egress tests ------------------------------------

# Runs inside a workload (`trellis exec`): each request of a JSON list over http.client (no
# redirects followed), answered with status, response headers, body and elapsed seconds.
_CLIENT = """
import http.client, json, time, urllib.parse
out = []
for r in json.loads({spec!r}):
    u = urllib.parse.urlsplit(r["url"])
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=15)
    started = time.monotonic()
    conn.request(r["method"], u.path + ("?" + u.query if u.query else ""),
                 body=r["body"], headers=r["headers"])
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    out.append({{"status": resp.status, "body": body,
                 "headers": {{k.lower(): v for k, v in resp.getheaders()}},
                 "seconds": time.monotonic() - started}})
    conn.close()
print(json.dumps(out))
"""

# Runs inside a workload: one TCP connection per round, sends a line, prints the line back.
_TCP_CLIENT = """
import json, socket
out = []
for _ in range({rounds}):
    with socket.create_connection(({host!r}, {port}), timeout=10) as s:
        s.sendall(b"hello\\n")
        data = b""
        while not data.endswith(b"\\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    out.append(data.decode().strip())
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Request:
    """One HTTP request sent from inside a workload by `mesh_http`."""

    url: str
    method: str = "GET"
    headers: dict[str, str] | None = None
    body: str | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)

    def echoed_header(self, name: str) -> str | None:
        """A request header as httpbin echoed it (canonical name, first value), or None."""
        values = self.json()["headers"].get(name)
        return values[0] if values else None


def mesh_http(mesh: Mesh, workload: str, requests: Sequence[Request]) -> list[Reply]:
    """Send requests in order from inside `workload`, through its sidecar (one process)."""
    spec = json.dumps(
        [
            {"url": r.url, "method": r.method, "headers": r.headers or {}, "body": r.body}
            for r in requests
        ]
    )
    return [Reply(**item) for item in json.loads(mesh.exec_in(workload, _CLIENT.format(spec=spec)))]


def mesh_tcp(mesh: Mesh, workload: str, host: str, port: int, rounds: int) -> list[str]:
    """Lines a TCP echo service answered to `hello`, one fresh connection per round."""
    code = _TCP_CLIENT.format(host=host, port=port, rounds=rounds)
    return [str(line) for line in json.loads(mesh.exec_in(workload, code))]


def cli_json(mesh: Mesh, *args: str) -> Any:
    """A command's `-o json` output, parsed."""
    return json.loads(mesh.cli(*args, "-o", "json").stdout)


def as_list(data: Any) -> list[Any]:
    """A list from `-o json` (older CLIs printed a lone item as a bare object)."""
    return data if isinstance(data, list) else [data]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class HostObjects:
    """What a mesh prefix owns on the host, as `trellis down` must leave it: nothing."""

    netns: list[str]
    links: list[str]
    iptables: list[str]
    etc_netns: list[str]

    @property
    def empty(self) -> bool:
        return not (self.netns or self.links or self.iptables or self.etc_netns)


def host_objects(prefix: str) -> HostObjects:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    etc = Path("/etc/netns")
    return HostObjects(
        netns=[ln.split()[0] for ln in netns.splitlines() if ln.startswith(f"{prefix}-")],
        links=[
            name
            for ln in links.splitlines()
            if (name := ln.split(":")[1].strip().split("@")[0]).startswith(prefix)
        ],
        iptables=[ln for ln in rules.splitlines() if f"trellis:{prefix}" in ln],
        etc_netns=[p.name for p in etc.glob(f"{prefix}-*")] if etc.is_dir() else [],
    )


def pid_alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (e.g. a mesh's state directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


@contextlib.contextmanager
def own_mesh(state_dir: Path, *up_args: str) -> Iterator[Mesh]:
    """A separate mesh (`trellis up`) for tests that need their own; always brought down."""
    mesh = Mesh(state_dir=state_dir, ingress_port=free_tcp_port())
    try:
        mesh.cli("up", "--ingress-port", str(mesh.ingress_port), *up_args, timeout=120)
        yield mesh
    finally:
        mesh.cli("down", check=False, timeout=120)


def envoy_stat(mesh: Mesh, workload: str, name: str) -> int:
    """One counter or gauge from the workload's Envoy admin (127.0.0.1:15000, not captured).

    The name is matched literally: cluster names hold `|` and `.`, which the admin's regex
    filter would otherwise read as operators.
    """
    pattern = urllib.parse.quote(f"^{re.escape(name)}$", safe="")
    code = (
        "import urllib.request\n"
        f"url = 'http://127.0.0.1:15000/stats?usedonly&filter={pattern}'\n"
        "print(urllib.request.urlopen(url, timeout=5).read().decode())\n"
    )
    for line in mesh.exec_in(workload, code).splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def in_parallel(*calls: Callable[[], object]) -> None:
    """Run CLI calls at once (a workload's stop drains its sidecar for seconds)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls) or 1) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


# --- httpbin, shared by the routing-feature and traffic-task tests ----------------------------

HTTPBIN_DIR = REPO / "samples" / "httpbin"
HTTPBIN_CLIENT = "productpage-v1"
HTTPBIN_URL = "http://httpbin:8000"


def httpbin_ports() -> tuple[int, int]:
    """(service port, targetPort) of the sample's Service: the app must listen on the target."""
    service = yaml.safe_load((HTTPBIN_DIR / "httpbin.yaml").read_text())
    port = service["spec"]["ports"][0]
    return int(port["port"]), int(port.get("targetPort", port["port"]))


def run_httpbin(mesh: Mesh, name: str, labels: str, *app_args: str) -> None:
    """Start one httpbin instance with its sidecar (`app_args` e.g. `--fail-every 2`)."""
    target_port = httpbin_ports()[1]
    mesh.cli(
        "run",
        name,
        "-n",
        "default",
        "--port",
        str(target_port),
        "--labels",
        labels,
        "--",
        sys.executable,
        str(HTTPBIN_DIR / "httpbin.py"),
        "--port",
        str(target_port),
        *app_args,
    )


@contextlib.contextmanager
def httpbin_service(mesh: Mesh) -> Iterator[Mesh]:
    """httpbin v1 with its sidecar and Service, answering through the mesh; then removed."""
    assert HTTPBIN_URL.endswith(f":{httpbin_ports()[0]}")
    try:
        run_httpbin(mesh, "httpbin", "app=httpbin,version=v1")
        mesh.cli("apply", "-f", str(HTTPBIN_DIR / "httpbin.yaml"))
        eventually(
            lambda: (
                mesh_http(mesh, HTTPBIN_CLIENT, [Request(f"{HTTPBIN_URL}/get")])[0].status == 200
            ),
            what="httpbin to answer through the mesh",
        )
        yield mesh
    finally:
        mesh.cli("delete", "-f", str(HTTPBIN_DIR / "httpbin.yaml"), check=False)
        mesh.cli("stop", "httpbin", check=False)


@contextlib.contextmanager
def applied(mesh: Mesh, text: str) -> Iterator[None]:
    """Apply resources for one test and delete them afterwards, whatever happens."""
    mesh.apply(text)
    try:
        yield
    finally:
        mesh.cli("delete", "-f", "-", input=text, check=False)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
