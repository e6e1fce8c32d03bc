"""Root rotation on a running mesh (docs/ca.md, "Root rotation"): `trellis ca rotate-root`.

A mesh of its own (self-signed CA), a client calling a server over mTLS in a steady loop while
the root is replaced: no request may fail, every proxy ends up with a certificate from the new
root, and after the overlap the old root leaves every proxy's ROOTCA.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.e2e.meshctl import Mesh, cli_json, eventually, own_mesh
from tests.e2e.test_mtls import SERVER_SERVICE, SLEEPER, Load, envoy_serials, secret_view

pytestmark = pytest.mark.e2e

OVERLAP_SECONDS = 30  # long enough that a slow machine still checks inside the overlap

# Inside a workload: the PEM bundle of the ROOTCA secret its Envoy holds now (config_dump;
# /certs would also list contexts that pooled connections still use).
ROOTCA_DUMP = """
import base64, json, urllib.request
url = "http://127.0.0.1:15000/config_dump?resource=dynamic_active_secrets"
dump = json.load(urllib.request.urlopen(url, timeout=5))
for s in dump["configs"]:
    if s["name"] == "ROOTCA":
        ca = s["secret"]["validation_context"]["trusted_ca"]
        print(ca.get("inline_string") or base64.b64decode(ca["inline_bytes"]).decode())
"""


def envoy_root_serials(mesh: Mesh, workload: str) -> list[str]:
    """Serials (hex) of the roots in the ROOTCA secret the workload's Envoy validates with."""
    pems = x509.load_pem_x509_certificates(mesh.exec_in(workload, ROOTCA_DUMP).encode())
    return [format(c.serial_number, "x") for c in pems]


def ca_status(mesh: Mesh) -> dict[str, Any]:
    body = cli_json(mesh, "ca", "status")
    return dict(body[0] if isinstance(body, list) else body)


def uses_cert(mesh: Mesh, workload: str, serial: str) -> Callable[[], bool]:
    return lambda: serial.lstrip("0") in envoy_serials(mesh, workload)


def issuer_of(secret: dict[str, Any]) -> str:
    leaf = x509.load_pem_x509_certificate(secret["certChain"].encode())
    return leaf.issuer.rfc4514_string()


def test_root_rotation_under_load_drops_no_request(tmp_path: Path) -> None:
    with own_mesh(tmp_path / "mesh") as mesh:
        mesh.apply(SERVER_SERVICE)
        server = [sys.executable, "-m", "http.server", "8000", "--bind", "127.0.0.1"]
        mesh.cli(
            "run", "echo", "--service-account", "echo", "--labels", "app=echo", "--port", "8000",
            "--", *server,
        )  # fmt: skip
        mesh.cli("run", "client", "--service-account", "client", "--", *SLEEPER)
        old = ca_status(mesh)["current"][0]
        assert issuer_of(secret_view(mesh, "echo")["secrets"][0]) == old["subject"]

        with Load(mesh, "client", "http://echo:8000/", tmp_path / "load") as load:
            mesh.cli("ca", "rotate-root", "--overlap", f"{OVERLAP_SECONDS}s", timeout=120)
            new = ca_status(mesh)["current"][0]
            assert new["serial"] != old["serial"]
            for workload in ("echo", "client"):
                default, rootca = secret_view(mesh, workload)["secrets"]
                assert issuer_of(default) == new["subject"]
                assert [r["serial"] for r in rootca["roots"]] == [new["serial"], old["serial"]]
                assert envoy_root_serials(mesh, workload) == [new["serial"], old["serial"]]
                eventually(
                    uses_cert(mesh, workload, default["serial"]),
                    what=f"{workload}'s Envoy to use its certificate from the new root",
                )
        assert load.result["failed"] == 0, load.result
        assert load.result["ok"] > 20

        retired = ca_status(mesh)["retired"]
        assert [r["serial"] for r in retired] == [old["serial"]]
        eventually(
            lambda: envoy_root_serials(mesh, "echo") == [new["serial"]],
            timeout=OVERLAP_SECONDS + 15,
            what="the old root to leave the server's ROOTCA after the overlap",
        )
        rootca = secret_view(mesh, "client")["secrets"][1]
        assert [r["serial"] for r in rootca["roots"]] == [new["serial"]]
        assert ca_status(mesh)["retired"] == []
        with Load(mesh, "client", "http://echo:8000/", tmp_path / "after") as load:
            pass
        assert load.result["failed"] == 0, load.result


def test_rotate_root_refuses_a_plugin_ca(tmp_path: Path) -> None:
    from tests.e2e.test_mtls import operator_ca

    ca_dir, _ = operator_ca(tmp_path)
    with own_mesh(tmp_path / "mesh", "--ca-dir", str(ca_dir)) as mesh:
        proc = mesh.cli("ca", "rotate-root", "--overlap", "1h", check=False)
        assert proc.returncode == 1
        assert "plug-in CA" in proc.stderr and "docs/ca.md" in proc.stderr
        assert "Traceback" not in proc.stderr
