"""WorkloadEntry and WorkloadGroup on the shared Bookinfo mesh: workloads outside `trellis run`.

Each "VM" is a network namespace of its own on the mesh's bridge, made here with the
runtime's MeshNetwork (named with the mesh's prefix, so `trellis down` would remove a leftover),
running plain processes started by hand, never through `trellis run`.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.meshctl import Mesh, Request, as_list, eventually, mesh_http, pid_alive
from trellis.runtime.layout import MeshInfo
from trellis.runtime.netns import MeshNetwork, Pod

pytestmark = pytest.mark.e2e

CLIENT = "productpage-v1"
GROUP = "wetest-vm"

# A plain HTTP server naming itself in every answer (argv: port, text).
SERVER = """
import http.server, sys
text = sys.argv[2].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""

PLAIN_ENTRY = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: wetest-ratings-v9, namespace: default}}
spec:
  address: {ip}
  labels: {{app: ratings, version: v9}}
"""
RATINGS_TO_V9 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v9, labels: {version: v9}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v9}
"""
VM_GROUP = f"""
apiVersion: v1
kind: Service
metadata: {{name: {GROUP}, namespace: default}}
spec:
  selector: {{app: {GROUP}}}
  ports: [{{name: http, port: 9080, targetPort: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {{name: {GROUP}, namespace: default}}
spec:
  metadata:
    labels: {{app: {GROUP}}}
  template:
    serviceAccount: {GROUP}
    ports: {{http: 9080}}
"""


@dataclass
class Host:
    """A namespace host on the mesh bridge and the processes started in it (by PID)."""

    network: MeshNetwork
    pod: Pod
    procs: list[subprocess.Popen[bytes]]

    @property
    def ip(self) -> str:
        return str(self.pod.ip)

    def start(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*self.pod.exec_argv(), *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process group started for `proc` (its own session) and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def hosts(bookinfo: Mesh) -> Iterator[list[Host]]:
    """Up to two namespace hosts at the top of the mesh's subnet (the runtime counts up)."""
    info = MeshInfo.load(bookinfo.state_dir / "mesh.json")
    assert info is not None
    network = MeshNetwork(info.prefix, info.subnet)
    top = IPv4Network(info.subnet).broadcast_address
    made: list[Host] = []
    try:
        for offset, name in ((3, "wetest-plain"), (4, "wetest-vm")):
            made.append(Host(network, network.create_pod(name, top - offset), []))
        yield made
    finally:
        for host in made:
            for proc in host.procs:
                stop(proc, signal.SIGKILL)
            for pid in netns_pids(host.pod.netns):  # e.g. an Envoy in a session of its own
                os.kill(pid, signal.SIGKILL)
            network.delete_pod(host.pod.name)
        for proc_host in made:
            assert not any(pid_alive(p.pid) for p in proc_host.procs)


def netns_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def served_by(mesh: Mesh, url: str, rounds: int) -> list[str]:
    replies = mesh_http(mesh, CLIENT, [Request(url) for _ in range(rounds)])
    return [r.body if r.status == 200 else f"status {r.status}" for r in replies]


def entry_names(mesh: Mesh) -> list[str]:
    out = mesh.cli("get", "workloadentries", "-o", "json").stdout
    return [str(item["metadata"]["name"]) for item in as_list(json.loads(out or "[]"))]


def status_of(mesh: Mesh, proxy: str) -> dict[str, Any] | None:
    proxies = json.loads(mesh.cli("proxy-status", "-o", "json").stdout)
    return next((p for p in as_list(proxies) if p["proxy"] == proxy), None)


def synced(status: dict[str, Any] | None) -> bool:
    if status is None:
        return False
    kinds = [status["xds"].get(t) or {} for t in ("CDS", "LDS", "EDS", "RDS")]
    return all(k.get("sent") and k.get("acked") == k.get("sent") for k in kinds)


def test_workload_entry_for_a_plain_process_is_a_service_endpoint(
    bookinfo: Mesh, hosts: list[Host], tmp_path: Path
) -> None:
    plain = hosts[0]
    plain.start([sys.executable, "-c", SERVER, "9080", "plain-v9"], tmp_path / "plain.log")
    entry = PLAIN_ENTRY.format(ip=plain.ip)
    try:
        bookinfo.apply(entry)
        endpoints = bookinfo.cli("proxy-config", "endpoints", CLIENT, "-o", "json").stdout
        assert f"{plain.ip}" in endpoints  # ratings' cluster lists the entry's address
        bookinfo.apply(RATINGS_TO_V9)
        eventually(
            lambda: served_by(bookinfo, "http://ratings:9080/ratings/0", 5) == ["plain-v9"] * 5,
            timeout=30,
            what="ratings subset v9 served by the WorkloadEntry's plain process",
        )
    finally:
        bookinfo.cli("delete", "vs", "ratings", check=False)
        bookinfo.cli("delete", "-f", "-", input=entry, check=False)
        bookinfo.apply_file("destination-rule-all.yaml")
    eventually(
        lambda: (
            plain.ip not in bookinfo.cli("proxy-config", "endpoints", CLIENT, "-o", "json").stdout
        ),
        what="the deleted entry's endpoint to go",
    )


def test_workload_group_member_registers_itself_and_leaves(
    bookinfo: Mesh, hosts: list[Host], tmp_path: Path
) -> None:
    vm = hosts[1]
    name = f"{GROUP}-{vm.ip}"
    out = tmp_path / "vm"
    try:
        bookinfo.apply(VM_GROUP)
        app = [sys.executable, "-c", SERVER, "9080", "served-by-vm"]
        bookinfo.cli("x", "workload-entry", "configure", "--group", GROUP, "-n", "default",
                     "-o", str(out), "--", *app)  # fmt: skip
        assert {p.name for p in out.iterdir()} >= {"join-token", "cluster.env", "root-cert.pem"}
        assert (out / "join-token").stat().st_mode & 0o077 == 0
        agent = vm.start(shlex.split((out / "agent-command").read_text()), tmp_path / "agent.log")

        eventually(lambda: name in entry_names(bookinfo), timeout=30, what=f"entry {name}")
        eventually(
            lambda: synced(status_of(bookinfo, f"{name}.default")), timeout=30, what="SYNCED"
        )
        eventually(
            lambda: served_by(bookinfo, f"http://{GROUP}:9080/", 3) == ["served-by-vm"] * 3,
            timeout=30,
            what="a mesh workload reaching the VM through its Service",
        )

        stop(agent)
        eventually(
            lambda: name not in entry_names(bookinfo),
            timeout=60,
            what="the entry's removal after the grace period",
        )
    finally:
        bookinfo.cli("delete", "we", name, check=False)
        bookinfo.cli("delete", "-f", "-", input=VM_GROUP, check=False)
