"""The graph view's pure helpers (web/js/graph-model.js) run in Node: labels, drill-down links
and the mTLS marker, with edge data shaped as the console's graph API returns it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.console.fixture_server import WEB_DIR

MODEL = (WEB_DIR / "js" / "graph-model.js").as_uri()


def run_model(expression: str) -> object:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the console UI's tests (setup.sh installs npm and node)")
    script = f"import * as m from {json.dumps(MODEL)};\nconsole.log(JSON.stringify({expression}));"
    out = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


EDGE = {
    "traffic": {"protocol": "http", "rates": {"http": "3.02", "httpPercentErr": "12.5"}},
    "responseTime": "197",
    "isMTLS": "100",
    "healthStatus": "Failure",
}


def test_edge_label_shows_rate_errors_p95_and_mtls_lock() -> None:
    assert run_model(f"m.edgeLabel({json.dumps(EDGE)})") == "[mTLS] 3.02 rps 12.5% p95 197ms"


def test_plaintext_edge_has_no_lock_and_tcp_shows_bytes() -> None:
    plain = {**EDGE, "isMTLS": "0"}
    tcp = {"traffic": {"protocol": "tcp", "rates": {"tcp": "512"}}, "isMTLS": "0"}
    labels = run_model(f"[m.edgeLabel({json.dumps(plain)}), m.edgeLabel({json.dumps(tcp)})]")
    assert labels == ["3.02 rps 12.5% p95 197ms", "512.0 B/s"]


def test_edge_description_says_the_same_in_words() -> None:
    assert run_model(f"m.edgeDescription({json.dumps(EDGE)})") == (
        "3.02 requests/s, 12.5% errors, p95 197 ms, mTLS, health Failure"
    )


@pytest.mark.parametrize(
    ("data", "label", "href"),
    [
        (
            {"nodeType": "app", "app": "reviews", "version": "v2", "namespace": "default"},
            "reviews v2",
            "#/namespaces/default/apps/reviews",
        ),
        (
            {"nodeType": "workload", "workload": "reviews-v2", "namespace": "default"},
            "reviews-v2",
            "#/namespaces/default/workloads/reviews-v2",
        ),
        (
            {"nodeType": "service", "service": "reviews", "namespace": "default"},
            "reviews",
            "#/namespaces/default/services/reviews",
        ),
        ({"nodeType": "unknown", "id": "unknown", "namespace": "unknown"}, "unknown", None),
    ],
)
def test_node_label_and_drill_down_link(data: dict[str, str], label: str, href: str | None) -> None:
    d = json.dumps(data)
    assert run_model(f"[m.nodeLabel({d}), m.nodeHref({d})]") == [label, href]


def test_unknown_health_is_drawn_as_no_health() -> None:
    assert run_model('m.healthOf({"healthStatus": "Bogus"})') == "NA"
