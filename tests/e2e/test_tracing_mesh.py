"""Tracing end to end: one Bookinfo request through the ingress gateway is one trace in the
mesh's trace store, with spans from the gateway, productpage, details, reviews and ratings.

`trellis demo` (the shared fixture) starts the trace store and samples 100 % of requests.
Reviews v2 calls ratings: user jason is routed there (DestinationRule from the fixture plus
reviews-test-v2, removed again at the end).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.meshctl import Mesh, eventually

pytestmark = pytest.mark.e2e

SERVICES = {
    "istio-ingressgateway.istio-system",
    "productpage.default",
    "details.default",
    "reviews.default",
    "ratings.default",
}


def _status(mesh: Mesh) -> dict[str, Any]:
    return dict(json.loads(mesh.cli("status", "-o", "json").stdout))


def _trace(query_port: int, trace_id: str) -> dict[str, Any] | None:
    url = f"http://127.0.0.1:{query_port}/api/traces/{trace_id}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.loads(resp.read())["data"]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    return dict(data[0]) if data else None


def _services(trace: dict[str, Any]) -> set[str]:
    processes = trace["processes"]
    return {processes[span["processID"]]["serviceName"] for span in trace["spans"]}


def test_the_trace_store_runs_under_the_supervisor_at_100_percent(bookinfo: Mesh) -> None:
    status = _status(bookinfo)
    assert status["mesh"]["tracing_query_port"] > 0
    assert status["mesh"]["tracing_address"]
    assert status["mesh"]["trace_sampling"] == 100.0
    store = next(c for c in status["components"] if c["name"] == "trace-store")
    assert store["alive"]


def test_a_bookinfo_request_is_one_trace_across_every_service(bookinfo: Mesh) -> None:
    query_port = _status(bookinfo)["mesh"]["tracing_query_port"]
    bookinfo.apply_file("virtual-service-reviews-test-v2.yaml")
    try:
        eventually(lambda: bookinfo.reviews_pod("jason") == "reviews-v2", what="jason -> v2")
        trace_id = secrets.token_hex(16)
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        status, page = bookinfo.http(
            "/productpage", {"cookie": "session=jason", "traceparent": traceparent}
        )
        assert status == 200, page
        found: dict[str, Any] = {}

        def complete() -> bool:
            trace = _trace(query_port, trace_id)
            found["trace"] = trace
            return trace is not None and _services(trace) >= SERVICES

        eventually(complete, timeout=30.0, what=f"trace {trace_id} with {sorted(SERVICES)}")
    finally:
        bookinfo.delete_file("virtual-service-reviews-test-v2.yaml")
    trace = found["trace"]
    spans = trace["spans"]
    assert {span["traceID"] for span in spans} == {trace_id}
    ids = {span["spanID"] for span in spans}
    roots = []
    for span in spans:
        refs = span["references"]
        assert [r["refType"] for r in refs] == ["CHILD_OF"]
        assert refs[0]["traceID"] == trace_id
        if refs[0]["spanID"] not in ids:
            roots.append(span)
    # Only the gateway's span hangs off our client's (unrecorded) span; the rest nest inside.
    assert [trace["processes"][s["processID"]]["serviceName"] for s in roots] == [
        "istio-ingressgateway.istio-system"
    ]


def _healthy(query_port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{query_port}/healthz", timeout=2) as resp:
        return bool(resp.status == 200)


def test_a_killed_trace_store_is_restarted_on_the_same_ports(bookinfo: Mesh) -> None:
    status = _status(bookinfo)
    query_port = status["mesh"]["tracing_query_port"]
    store = next(c for c in status["components"] if c["name"] == "trace-store")
    os.kill(store["pid"], signal.SIGKILL)

    def restarted() -> bool:
        now = next(c for c in _status(bookinfo)["components"] if c["name"] == "trace-store")
        return bool(now["restarts"] > store["restarts"] and now["alive"]) and _healthy(query_port)

    eventually(restarted, timeout=30.0, what="the trace store restarted")


def test_up_without_tracing_runs_no_trace_store(tmp_path: Path) -> None:
    mesh = Mesh(state_dir=tmp_path / "mesh", ingress_port=free_port())
    try:
        mesh.cli("up", "--capture=proxy", "--no-tracing", "--ingress-port", str(mesh.ingress_port))
        status = _status(mesh)
        assert status["mesh"]["tracing_query_port"] == 0
        assert status["mesh"]["tracing_address"] == ""
        assert "trace-store" not in {c["name"] for c in status["components"]}
    finally:
        mesh.cli("down", check=False, timeout=120)
