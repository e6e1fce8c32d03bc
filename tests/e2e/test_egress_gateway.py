"""`trellis up --egress-gateway` runs Istio's egress gateway; without the flag there is none.

Traffic through the egress gateway is tested in test_egress.py; this covers its life cycle:
present, labelled, connected as a router, gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.meshctl import Mesh, as_list, cli_json, eventually, host_objects, own_mesh

pytestmark = pytest.mark.e2e

EGRESS = "istio-egressgateway"
EGRESS_PROXY = f"{EGRESS}.istio-system"


def _proxies(mesh: Mesh) -> dict[str, dict[str, Any]]:
    return {p["proxy"]: p for p in as_list(cli_json(mesh, "proxy-status"))}


def _system_workloads(mesh: Mesh) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in as_list(cli_json(mesh, "ps", "-n", "istio-system"))}


def test_egress_gateway_runs_as_a_router_and_down_removes_it(tmp_path: Path) -> None:
    with own_mesh(tmp_path / "mesh", "--egress-gateway") as mesh:
        prefix = cli_json(mesh, "status")["mesh"]["prefix"]
        gateway = _system_workloads(mesh)[EGRESS]
        assert gateway["labels"]["istio"] == "egressgateway"
        assert gateway["labels"]["app"] == EGRESS
        assert gateway["alive"] and gateway["sidecar"]
        assert gateway["netns"] == f"{prefix}-istio-system-{EGRESS}"

        eventually(lambda: _proxies(mesh)[EGRESS_PROXY]["synced"], what="the egress gateway")
        proxy = _proxies(mesh)[EGRESS_PROXY]
        assert proxy["type"] == "router" and proxy["ip"] == gateway["ip"]
        row = [ln for ln in mesh.cli("proxy-status").stdout.splitlines() if EGRESS_PROXY in ln]
        assert len(row) == 1 and "router" in row[0]

        (service,) = as_list(cli_json(mesh, "get", "svc", EGRESS, "-n", "istio-system"))
        assert service["spec"]["selector"] == {"istio": "egressgateway"}

        assert host_objects(prefix).netns == [gateway["netns"]]
        mesh.cli("down")
        left = host_objects(prefix)
        assert left.netns == [] and left.links == [], left


def test_without_the_flag_there_is_no_egress_gateway(bookinfo: Mesh) -> None:
    assert cli_json(bookinfo, "status")["mesh"]["egress_gateway"] is False
    assert EGRESS not in _system_workloads(bookinfo)
    assert "istio-ingressgateway.istio-system" in _proxies(bookinfo)
    assert EGRESS_PROXY not in _proxies(bookinfo)
    missing = bookinfo.cli("get", "svc", EGRESS, "-n", "istio-system", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
