"""Egress, as Istio's egress tasks do it: REGISTRY_ONLY blocks unknown hosts, a ServiceEntry lets
one through, an egress-gateway route sends it via the gateway, resolution NONE passes TCP through.

The "external" service is a plain process in its own network namespace on the mesh bridge,
started with `trellis run --no-sidecar` and named by no Service: the mesh has no sidecar on it
and nothing in the registry points at it until a ServiceEntry does. It answers HTTP on port 80
(a port sidecars have an HTTP listener for, so a blocked request gets Istio's 502 from
BlackHoleCluster rather than a reset) and echoes lines on TCP port 9000.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.meshctl import (
    Mesh,
    Reply,
    Request,
    as_list,
    cli_json,
    eventually,
    mesh_http,
    mesh_tcp,
    own_mesh,
)

pytestmark = pytest.mark.e2e

HOST = "ext.example.test"
TCP_HOST = "tcp.example.test"
CLIENT = "sleep"
EXTERNAL = "ext"
EXTERNAL_NS = "external"
EGRESS = "istio-egressgateway"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(100000)"]

# The external server: JSON about each HTTP request (who called, with which Host) on :80,
# a line echo on :9000.
SERVER = """
import http.server, json, socketserver, threading
class Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"server": "external", "path": self.path,
                           "host": self.headers.get("Host"), "client": self.client_address[0]})
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
echo = socketserver.ThreadingTCPServer(("0.0.0.0", 9000), Echo)
threading.Thread(target=echo.serve_forever, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", 80), Web).serve_forever()
"""

# From inside the client: one TCP round, "blocked" when the sidecar refuses or drops it.
TCP_PROBE = """
import socket
try:
    with socket.create_connection(({host!r}, {port}), timeout=5) as s:
        s.sendall(b"hello\\n")
        print(s.recv(100).decode().strip() or "blocked")
except OSError:
    print("blocked")
"""


def service_entry(ip: str, resolution: str = "STATIC") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext, namespace: default}}
spec:
  hosts: [{HOST}]
  location: MESH_EXTERNAL
  resolution: {resolution}
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  endpoints:
  - address: {ip}
"""


EGRESS_ROUTE = f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {EGRESS}, namespace: default}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [{HOST}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway-for-ext, namespace: default}}
spec:
  host: {EGRESS}.istio-system.svc.cluster.local
  subsets:  # as in Istio's task: a subset without labels is every gateway endpoint
  - name: ext
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct-ext-through-egress-gateway, namespace: default}}
spec:
  hosts: [{HOST}]
  gateways: [{EGRESS}, mesh]
  http:
  - match:
    - gateways: [mesh]
      port: 80
    route:
    - destination:
        host: {EGRESS}.istio-system.svc.cluster.local
        subset: ext
        port: {{number: 80}}
  - match:
    - gateways: [{EGRESS}]
      port: 80
    route:
    - destination:
        host: {HOST}
        port: {{number: 80}}
"""


@dataclass(frozen=True)
class EgressMesh:
    mesh: Mesh
    external_ip: str
    client_ip: str
    gateway_ip: str

    def get(self, url: str, host: str | None = None) -> Reply:
        """One request from the client workload, through its sidecar."""
        headers = {"Host": host} if host else None
        (reply,) = mesh_http(self.mesh, CLIENT, [Request(url, headers=headers)])
        return reply

    def get_until(self, url: str, done: Callable[[Reply], bool], what: str) -> Reply:
        """Poll until a reply satisfies `done` (config reaches the sidecar in moments)."""
        replies: list[Reply] = []
        eventually(lambda: done(_kept(replies, self.get(url))), what=what)
        return replies[-1]

    def delete(self, text: str) -> None:
        self.mesh.cli("delete", "-f", "-", input=text, check=False)


def _kept(replies: list[Reply], reply: Reply) -> Reply:
    replies.append(reply)
    return reply


def _ip(mesh: Mesh, name: str, namespace: str) -> str:
    (item,) = [w for w in as_list(cli_json(mesh, "ps", "-n", namespace)) if w["name"] == name]
    return str(item["ip"])


@pytest.fixture(scope="module")
def egress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EgressMesh]:
    """One mesh of our own: REGISTRY_ONLY, egress gateway, a client and the external server."""
    state = tmp_path_factory.mktemp("egress") / "mesh"
    with own_mesh(state, "--egress-gateway", "--outbound-traffic-policy", "REGISTRY_ONLY") as mesh:
        mesh.cli("run", CLIENT, "--", *SLEEPER)
        mesh.cli(
            "run", EXTERNAL, "-n", EXTERNAL_NS, "--no-sidecar", "--port", "80,9000",
            "--", sys.executable, "-c", SERVER,
        )  # fmt: skip
        yield EgressMesh(
            mesh,
            external_ip=_ip(mesh, EXTERNAL, EXTERNAL_NS),
            client_ip=_ip(mesh, CLIENT, "default"),
            gateway_ip=_ip(mesh, EGRESS, "istio-system"),
        )


def test_registry_only_blocks_an_unregistered_host_with_502(egress: EgressMesh) -> None:
    reply = egress.get(f"http://{egress.external_ip}/", host=HOST)
    assert reply.status == 502, reply
    assert "BlackHoleCluster" in egress.mesh.cli("proxy-config", "clusters", CLIENT).stdout


def test_a_service_entry_lets_the_host_through_by_name(egress: EgressMesh) -> None:
    """STATIC with the server's address, then DNS on it; the host resolves to its VIP."""
    egress.mesh.apply(service_entry(egress.external_ip))
    path = f"/se-{uuid.uuid4().hex[:8]}"
    url = f"http://{HOST}{path}"
    try:
        reply = egress.get_until(url, lambda r: r.status == 200, what="the ServiceEntry")
        assert reply.json() == {
            "server": "external",
            "path": path,
            "host": HOST,
            "client": egress.client_ip,
        }
        egress.mesh.apply(service_entry(egress.external_ip, resolution="DNS"))
        cluster = f"outbound|80||{HOST}"
        eventually(
            lambda: _cluster_type(egress.mesh, cluster) == "STRICT_DNS", what="a DNS cluster"
        )
        assert egress.get(url).status == 200
    finally:
        egress.delete(service_entry(egress.external_ip))


def _cluster_type(mesh: Mesh, name: str) -> str:
    clusters = cli_json(mesh, "proxy-config", "clusters", CLIENT)
    return next(str(c.get("type", "EDS")) for c in clusters if c["name"] == name)


def test_egress_gateway_route_sends_the_host_through_the_gateway(egress: EgressMesh) -> None:
    """Istio's egress-gateway task: mesh -> istio-egressgateway -> the external host."""
    resources = service_entry(egress.external_ip) + "---\n" + EGRESS_ROUTE
    egress.mesh.apply(resources)
    path = f"/via-gateway-{uuid.uuid4().hex[:8]}"
    try:
        reply = egress.get_until(
            f"http://{HOST}{path}",
            lambda r: r.status == 200 and r.json()["client"] == egress.gateway_ip,
            what="requests arriving from the egress gateway",
        )
        assert reply.json()["path"] == path
        lines: list[str] = []
        eventually(lambda: bool(_kept_lines(lines, egress.mesh, path)), what="the gateway's log")
        assert all(f"outbound|80||{HOST}" in ln and " 200 " in ln for ln in lines)
    finally:
        egress.delete(resources)


def _kept_lines(lines: list[str], mesh: Mesh, text: str) -> list[str]:
    """Access-log lines of the egress gateway's Envoy that mention `text`."""
    log = mesh.cli("logs", EGRESS, "-n", "istio-system", "--proxy").stdout
    lines[:] = [ln for ln in log.splitlines() if text in ln]
    return lines


def test_resolution_none_passes_tcp_through_to_the_original_destination(
    egress: EgressMesh,
) -> None:
    ip = egress.external_ip
    probe = TCP_PROBE.format(host=ip, port=9000)
    mesh = egress.mesh
    assert mesh.exec_in(CLIENT, probe).strip() == "blocked"
    entry = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tcp-ext, namespace: default}}
spec:
  hosts: [{TCP_HOST}]
  addresses: [{ip}]
  location: MESH_EXTERNAL
  resolution: NONE
  ports:
  - {{number: 9000, name: tcp, protocol: TCP}}
"""
    mesh.apply(entry)
    try:
        eventually(lambda: mesh.exec_in(CLIENT, probe).strip() == "hello", what="TCP through")
        # The entry's address doubles as the name's address in the workload's hosts file.
        assert mesh_tcp(mesh, CLIENT, TCP_HOST, 9000, rounds=2) == ["hello", "hello"]
    finally:
        egress.delete(entry)
    eventually(lambda: mesh.exec_in(CLIENT, probe).strip() == "blocked", what="blocked again")


def test_trellis_up_rejects_an_unknown_outbound_policy(tmp_path: Path) -> None:
    mesh = Mesh(state_dir=tmp_path / "never", ingress_port=0)
    result = mesh.cli("up", "--outbound-traffic-policy", "SOMETIMES", check=False)
    assert result.returncode != 0 and "REGISTRY_ONLY" in result.stderr
