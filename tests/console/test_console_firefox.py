"""The console web UI in Debian's firefox-esr, against the same API test double as the Chromium tests.

Playwright drives only its own patched Firefox build, which cannot be downloaded here, so
tests/console/firefox/smoke.mjs drives firefox-esr over WebDriver BiDi with puppeteer-core (a
test-only npm package installed by setup.sh): login, graph canvas and node list, keyboard drill-down
to a workload page, Istio config validation shown inline. It prints one JSON line, checked here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.console import canned
from tests.console.conftest import artifacts_dir
from tests.console.fixture_server import TOKENS

pytestmark = pytest.mark.e2e

FIREFOX = "/usr/bin/firefox-esr"
SMOKE_DIR = Path(__file__).resolve().parent / "firefox"
# smoke.mjs stops itself after 120 s; this only catches a hung node process.
TIMEOUT_S = 180


def run_smoke(url: str, token: str, expected_nodes: int) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not Path(FIREFOX).exists():
        pytest.fail("the Firefox console test needs node and Debian's firefox-esr (setup.sh)")
    if not (SMOKE_DIR / "node_modules" / "puppeteer-core").is_dir():
        pytest.fail(f"puppeteer-core is not installed: run `npm ci` in {SMOKE_DIR} (setup.sh does)")
    env = {**os.environ, "TRELLIS_TEST_ARTIFACTS": str(artifacts_dir().parent.resolve())}
    # Own process group, so a hung run takes its firefox with it when killed.
    proc = subprocess.Popen(
        [node, "smoke.mjs", url, token, str(expected_nodes)],
        cwd=SMOKE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"smoke.mjs hung for {TIMEOUT_S} s\nstdout: {out}\nstderr: {err}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"smoke.mjs printed no JSON (exit {proc.returncode})\nstderr: {err}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0 and result["ok"], f"smoke.mjs failed: {json.dumps(result)}\n{err}"
    return result


def test_console_smoke_in_firefox_esr(fixture_console: str) -> None:
    token = next(t for t, role in TOKENS.items() if role == "cluster-admin")
    result = run_smoke(fixture_console, token, canned.GRAPH_NODES)
    assert result["browser"].startswith("firefox/")
    steps = {s["name"]: s for s in result["steps"]}
    assert [s["name"] for s in result["steps"] if s["ok"]] == [
        "login",
        "graph",
        "keyboard",
        "config-validation",
    ]
    assert steps["login"]["user"] == "token-user (cluster-admin)"
    graph = steps["graph"]
    assert graph["nodes"] == graph["listedNodes"] == canned.GRAPH_NODES
    assert graph["edges"] == graph["listedEdges"] > 0
    assert graph["canvasLayers"] > 0
    assert steps["keyboard"]["heading"] == "Workload: istio-ingressgateway"
    checks = steps["config-validation"]
    assert (checks["code"], checks["severity"]) == ("IST0101", "error")
    assert "Referenced host not found: 'nowhere'" in checks["message"]
    assert "spec.http[0].route[0].destination.host" in checks["message"]
    assert result["pageErrors"] == []
    # Nothing tried to leave loopback (the sinkhole proxy in smoke.mjs records any attempt).
    assert result["offsite"] == []
    shots = sorted(Path(p).name for p in result["screenshots"])
    assert shots == [
        "firefox-config-validation.png",
        "firefox-graph.png",
        "firefox-login.png",
        "firefox-workload.png",
    ]
    assert all(Path(p).stat().st_size > 0 for p in result["screenshots"])
