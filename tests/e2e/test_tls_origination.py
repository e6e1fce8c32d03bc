"""Egress TLS origination, as Istio's task does it: the app sends plain HTTP to an external
host, and its sidecar opens TLS to the server because a DestinationRule says `tls: SIMPLE`.

The "external" server is a plain process (`trellis run --no-sidecar`, namespace `external`)
answering HTTPS on 443 with a certificate from a CA made here. A ServiceEntry names it on port
80 (targetPort 443); the DestinationRule gives the CA file, on the sidecar's filesystem. With
no `sni`, the sidecar takes SNI from the request's Host (auto SNI) and checks the certificate
against it; a wrong `subjectAltNames` makes the handshake fail (503).
"""

from __future__ import annotations

import ipaddress
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.meshctl import (
    Mesh,
    Reply,
    Request,
    applied,
    as_list,
    cli_json,
    eventually,
    mesh_http,
)

pytestmark = pytest.mark.e2e

CLIENT = "ratings-v1"
EXTERNAL_NS = "external"

# HTTPS on 443: JSON with the Host and SNI the server saw. argv: cert file, key file.
SERVER = """
import http.server, json, ssl, sys
seen = {}
def remember(sock, name, ctx):
    seen[sock] = name
class Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        data = json.dumps({"tls": True, "path": self.path, "host": self.headers.get("Host"),
                           "sni": seen.get(self.connection)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
context.sni_callback = remember
server = http.server.ThreadingHTTPServer(("0.0.0.0", 443), Web)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


@dataclass(frozen=True)
class External:
    host: str
    ip: str
    ca_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_certificates(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `host`: (ca, cert, key) files."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("tls-origination test CA"))
        .issuer_name(_name("tls-origination test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = (directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files[0].write_bytes(ca.public_bytes(pem))
    files[1].write_bytes(cert.public_bytes(pem))
    files[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture
def external(bookinfo: Mesh) -> Iterator[External]:
    """The HTTPS server, stopped afterwards whatever happens. The files live in a directory
    of their own that the sidecar's Envoy (uid 1337) can read; pytest's tmp_path is root's."""
    suffix = uuid.uuid4().hex[:6]
    name, host = f"tlsext-{suffix}", f"tls-{suffix}.example.test"
    directory = Path(tempfile.mkdtemp(prefix=f"trellis-tlsorig-{suffix}-"))
    directory.chmod(0o755)
    ca_file, cert, key = write_certificates(directory, host)
    ca_file.chmod(0o644)
    try:
        bookinfo.cli(
            "run", name, "-n", EXTERNAL_NS, "--no-sidecar", "--port", "443",
            "--", sys.executable, "-c", SERVER, str(cert), str(key),
        )  # fmt: skip
        workloads = as_list(cli_json(bookinfo, "ps", "-n", EXTERNAL_NS))
        (item,) = [w for w in workloads if w["name"] == name]
        ip = str(ipaddress.ip_address(item["ip"]))
        yield External(host, ip, ca_file)
    finally:
        bookinfo.cli("stop", name, "-n", EXTERNAL_NS, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def origination(ext: External, *, san: str | None = None) -> str:
    """ServiceEntry (80 -> 443) + DestinationRule `tls: SIMPLE` with the test CA."""
    sans = f"\n      subjectAltNames: [{san}]" if san else ""
    name = ext.host.split(".")[0]
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{ext.host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {{number: 80, name: http, protocol: HTTP, targetPort: 443}}
  endpoints:
  - address: {ext.ip}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: {ext.host}
  trafficPolicy:
    tls:
      mode: SIMPLE
      caCertificates: {ext.ca_file}{sans}
"""


def _get(mesh: Mesh, url: str, replies: list[Reply]) -> Reply:
    (reply,) = mesh_http(mesh, CLIENT, [Request(url)])
    replies.append(reply)
    return reply


def _waited(mesh: Mesh, url: str, replies: list[Reply], status: int, what: str) -> None:
    """Poll until the request answers `status`; on timeout, say what it answered instead."""
    try:
        eventually(lambda: _get(mesh, url, replies).status == status, timeout=30, what=what)
    except AssertionError as error:
        last = replies[-1] if replies else "no reply (the request itself failed)"
        clusters = mesh.cli("proxy-config", "clusters", CLIENT, check=False).stdout
        raise AssertionError(f"{error}; last: {last}\n{clusters}") from None


def test_plain_http_from_the_app_is_originated_as_tls_by_the_sidecar(
    bookinfo: Mesh, external: External
) -> None:
    """200 over TLS with SNI and SAN from the Host; then a DestinationRule that expects
    another SAN makes the same request fail (503), so the certificate really is checked."""
    path = f"/orig-{uuid.uuid4().hex[:8]}"
    url = f"http://{external.host}{path}"
    replies: list[Reply] = []
    with applied(bookinfo, origination(external)):
        _waited(bookinfo, url, replies, 200, "TLS origination to the external server")
        assert replies[-1].json() == {
            "tls": True,
            "path": path,
            "host": external.host,
            "sni": external.host,  # auto SNI from the Host header
        }
        bookinfo.apply(origination(external, san="someone-else.example.test"))
        _waited(bookinfo, url, replies, 503, "the sidecar to refuse an unexpected certificate")
