"""Mutual TLS in a real mesh: sidecars talk mTLS, Istio's "mutual TLS migration" task, join
tokens on the xDS stream, and certificate rotation under load.

Most tests use the shared Bookinfo mesh and restore what they change; the rotation test brings
up a small mesh of its own with a short workload certificate TTL.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.e2e.meshctl import Mesh, as_list, cli_json, envoy_stat, eventually, own_mesh
from trellis.ca import store as ca_store
from trellis.ca.authority import CertificateAuthority
from trellis.controlplane.auth import TOKEN_HEADER
from trellis.xds.lightclient import probe_stream

pytestmark = pytest.mark.e2e

SLEEPER = [sys.executable, "-c", "import time; time.sleep(100000)"]
STRICT_DEFAULT_NS = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
"""

# Inside a workload: GET `url` in a loop until `stop` exists; after `warm` good answers create
# `started`. Prints {"ok": N, "failed": N, "errors": [...]} (one fresh connection per request,
# so every request goes through the listener and handshake paths being changed).
LOAD = """
import json, os, urllib.request
ok = failed = 0
errors = []
while not os.path.exists({stop!r}) and ok + failed < 20000:
    try:
        with urllib.request.urlopen({url!r}, timeout=10) as resp:
            resp.read()
            ok += resp.status == 200
            if resp.status != 200:
                failed += 1
                errors.append(resp.status)
    except Exception as e:
        failed += 1
        errors.append(repr(e))
    if ok == {warm}:
        open({started!r}, "w").close()
print(json.dumps({{"ok": ok, "failed": failed, "errors": errors[:5]}}))
"""

# Inside a workload without sidecar: one plain HTTP request, "200" or why it failed.
PROBE = """
import urllib.request
try:
    with urllib.request.urlopen({url!r}, timeout=5) as resp:
        print(resp.status)
except Exception as e:
    print("refused", repr(e))
"""


class Load:
    """A request loop in one workload, running in a thread across a config change."""

    def __init__(self, mesh: Mesh, workload: str, url: str, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.stop_file, self.started = tmp / "stop", tmp / "started"
        code = LOAD.format(stop=str(self.stop_file), started=str(self.started), url=url, warm=20)
        self.result: dict[str, Any] = {}
        self._thread = threading.Thread(
            target=lambda: self.result.update(json.loads(mesh.exec_in(workload, code)))
        )

    def __enter__(self) -> Load:
        self._thread.start()
        eventually(self.started.exists, timeout=30, what="the load loop to get going")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_file.touch()
        self._thread.join(60)


def workload_ip(mesh: Mesh, name: str) -> str:
    return str(next(w["ip"] for w in as_list(cli_json(mesh, "ps")) if w["name"] == name))


def secret_view(mesh: Mesh, workload: str) -> dict[str, Any]:
    body: dict[str, Any] = as_list(cli_json(mesh, "proxy-config", "secret", workload))[0]
    return body


def test_bookinfo_sidecars_talk_mutual_tls(bookinfo: Mesh) -> None:
    status, _ = bookinfo.http("/productpage")
    assert status == 200
    # details-v1's inbound listener terminated TLS from productpage's sidecar...
    assert envoy_stat(bookinfo, "details-v1", "listener.0.0.0.0_15006.ssl.handshake") > 0
    # ... and productpage's outbound cluster for details originated it.
    cluster = "cluster.outbound|9080||details.default.svc.cluster.local.ssl.handshake"
    assert envoy_stat(bookinfo, "productpage-v1", cluster) > 0


def test_proxy_config_secret_shows_the_workload_identity(bookinfo: Mesh) -> None:
    view = secret_view(bookinfo, "details-v1")
    default, rootca = view["secrets"]
    assert default["spiffeId"] == "spiffe://cluster.local/ns/default/sa/bookinfo-details"
    assert default["notBefore"] < default["rotateAt"] < default["notAfter"]
    assert rootca["name"] == "ROOTCA" and len(rootca["roots"]) == 1
    table = bookinfo.cli("proxy-config", "secret", "details-v1").stdout
    assert "spiffe://cluster.local/ns/default/sa/bookinfo-details" in table
    assert "PRIVATE KEY" not in json.dumps(view) + table


def test_mutual_tls_migration_strict_refuses_plaintext_only(bookinfo: Mesh, tmp_path: Path) -> None:
    """Istio's task: a client without sidecar works under PERMISSIVE, is refused after STRICT,
    while sidecar clients under steady load see no failed request during the switch."""
    legacy = f"legacy-{uuid.uuid4().hex[:6]}"
    bookinfo.cli("run", legacy, "--no-sidecar", "--", *SLEEPER)
    try:
        details = f"http://{workload_ip(bookinfo, 'details-v1')}:9080/details/0"
        probe = PROBE.format(url=details)
        assert bookinfo.exec_in(legacy, probe).strip() == "200"
        with Load(bookinfo, "productpage-v1", "http://details:9080/details/0", tmp_path) as load:
            bookinfo.apply(STRICT_DEFAULT_NS)
            eventually(
                lambda: bookinfo.exec_in(legacy, probe).startswith("refused"),
                what="the plaintext client to be refused under STRICT",
            )
        assert load.result["failed"] == 0, load.result
        assert load.result["ok"] > 20
    finally:
        bookinfo.cli("delete", "PeerAuthentication", "default", "-n", "default", check=False)
        bookinfo.cli("stop", legacy, check=False)
    status, _ = bookinfo.http("/productpage")
    assert status == 200


def plain_service(name: str) -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n"
        f"spec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 8000}}\n"
    )


def istio_mutual_rule(name: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        f"spec:\n  host: {name}\n  trafficPolicy:\n    tls: {{mode: ISTIO_MUTUAL}}\n"
    )


def test_auto_mtls_calls_a_workload_without_sidecar_in_plaintext(bookinfo: Mesh) -> None:
    """No sidecar behind the service: plaintext, unless a DestinationRule forces ISTIO_MUTUAL."""
    name = f"plain-{uuid.uuid4().hex[:6]}"
    server = [sys.executable, "-m", "http.server", "8000"]
    bookinfo.apply(plain_service(name))
    bookinfo.cli(
        "run", name, "--no-sidecar", "--labels", f"app={name}", "--port", "8000", "--", *server
    )
    probe = PROBE.format(url=f"http://{name}:8000/")
    try:
        eventually(lambda: bookinfo.exec_in("productpage-v1", probe).strip() == "200")
        bookinfo.apply(istio_mutual_rule(name))
        eventually(lambda: bookinfo.exec_in("productpage-v1", probe).strip() != "200")
        bookinfo.cli("delete", "DestinationRule", name, "-n", "default")
        eventually(lambda: bookinfo.exec_in("productpage-v1", probe).strip() == "200")
    finally:
        bookinfo.cli("delete", "DestinationRule", name, "-n", "default", check=False)
        bookinfo.cli("stop", name, check=False)
        bookinfo.cli("delete", "Service", name, "-n", "default", check=False)


def test_xds_stream_without_valid_join_token_is_refused(bookinfo: Mesh) -> None:
    info = json.loads((bookinfo.state_dir / "mesh.json").read_text())
    root = (bookinfo.state_dir / "xds-root-cert.pem").read_bytes()
    node = "sidecar~198.18.0.250~details-v1.default~default.svc.cluster.local"

    async def connect(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
        return await probe_stream(
            f"{info['bridge_ip']}:{info['xds_port']}",
            node,
            metadata={"SERVICE_ACCOUNT": "bookinfo-details"},
            credentials=grpc.ssl_channel_credentials(root_certificates=root),
            call_metadata=metadata,
        )

    assert asyncio.run(connect(())) == grpc.StatusCode.UNAUTHENTICATED
    forged = ((TOKEN_HEADER, "tj1.eyJucyI6ImRlZmF1bHQifQ.AAAA"),)
    assert asyncio.run(connect(forged)) == grpc.StatusCode.UNAUTHENTICATED
    log = (bookinfo.state_dir / "logs" / "trellisd.log").read_text()
    assert "event=xds.unauthenticated proxy=details-v1.default" in log


SERVER_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 8000}
"""

CERTS = """
import json, urllib.request
certs = json.load(urllib.request.urlopen("http://127.0.0.1:15000/certs", timeout=5))
print(json.dumps([c["serial_number"] for e in certs["certificates"] for c in e["cert_chain"]]))
"""


def envoy_serials(mesh: Mesh, workload: str) -> set[str]:
    return {s.lower().lstrip("0") for s in json.loads(mesh.exec_in(workload, CERTS))}


def operator_ca(tmp_path: Path) -> tuple[Path, str]:
    """An operator's CA in Istio's cacerts layout (made here by Trellis's own CA code)."""
    ca = CertificateAuthority.create_self_signed(now=datetime.now(UTC))
    ca_store.save(tmp_path / "operator", ca)
    return ca_store.ca_dir(tmp_path / "operator"), format(ca.material.cert.serial_number, "x")


def test_plugin_ca_certificates_rotate_without_dropping_a_request(tmp_path: Path) -> None:
    """`trellis up --ca-dir` signs with the operator's CA; a 14 s TTL is renewed at 7 s over
    SDS while mTLS traffic keeps flowing."""
    ca_dir, root_serial = operator_ca(tmp_path)
    with own_mesh(tmp_path / "mesh", "--workload-cert-ttl", "14", "--ca-dir", str(ca_dir)) as mesh:
        mesh.apply(SERVER_SERVICE)
        server = [sys.executable, "-m", "http.server", "8000", "--bind", "127.0.0.1"]
        mesh.cli("run", "echo", "--labels", "app=echo", "--port", "8000", "--", *server)
        mesh.cli("run", "client", "--", *SLEEPER)
        first = secret_view(mesh, "echo")["secrets"][0]["serial"]
        assert [r["serial"] for r in secret_view(mesh, "echo")["secrets"][1]["roots"]] == [
            root_serial
        ]
        with Load(mesh, "client", "http://echo:8000/", tmp_path / "load") as load:
            eventually(
                lambda: secret_view(mesh, "echo")["secrets"][0]["serial"] != first,
                timeout=30,
                what="the workload certificate to be reissued",
            )
            second = secret_view(mesh, "echo")["secrets"][0]["serial"]
            eventually(
                lambda: second.lstrip("0") in envoy_serials(mesh, "echo"),
                timeout=30,
                what="Envoy to use the new certificate",
            )
        assert load.result["failed"] == 0, load.result
        assert load.result["ok"] > 20
