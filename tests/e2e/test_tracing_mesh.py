"""Tracing end to end: one Bookinfo request through the ingress gateway is one trace in the
mesh's trace store, with spans from the gateway, productpage, details, reviews and ratings.

`trellis demo` (the shared fixture) starts the trace store and samples 100 % of requests.
Reviews v2 calls ratings: user jason is routed there (DestinationRule from the fixture plus
reviews-test-v2, removed again at the end).

Every Jaeger API answer read here is validated against Jaeger's schema (tests/jaeger_api_schema).
The gateway is the edge: like Envoy (and Istio's gateway) it replaces an external client's
x-request-id, so requests are told apart by their User-Agent, which Envoy records on every span
(`user_agent`) and Bookinfo forwards.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.meshctl import Mesh, eventually
from tests.jaeger_api_schema import validate_answer

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


def jaeger(query_port: int, path: str) -> tuple[int, Any]:
    """GET a Jaeger API path from the mesh's trace store; the answer must be in Jaeger's shape."""
    url = f"http://127.0.0.1:{query_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status, body = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        status, body = e.code, json.loads(e.read())
    validate_answer(path, status, body)
    return status, body


def _trace(query_port: int, trace_id: str) -> dict[str, Any] | None:
    status, body = jaeger(query_port, f"/api/traces/{trace_id}")
    if status == 404:
        return None
    assert status == 200, body
    return dict(body["data"][0]) if body["data"] else None


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


# --- N requests, N complete traces; dependencies; Telemetry tags and sampling ----------------

GATEWAY = "istio-ingressgateway.istio-system"
REQUESTS = 12
RUN = secrets.token_hex(4)  # tells this run's requests from any other's


def _query_port(mesh: Mesh) -> int:
    return int(_status(mesh)["mesh"]["tracing_query_port"])


def _tags_query(tags: dict[str, str]) -> str:
    return urllib.parse.quote(json.dumps(tags))


def _traces_tagged(query_port: int, service: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    path = f"/api/traces?service={service}&lookback=1h&limit=1000&tags={_tags_query(tags)}"
    status, body = jaeger(query_port, path)
    assert status == 200, body
    return list(body["data"])


def _service_of(trace: dict[str, Any], span: dict[str, Any]) -> str:
    return str(trace["processes"][span["processID"]]["serviceName"])


def _tag(span: dict[str, Any], key: str) -> Any:
    return next((t["value"] for t in span["tags"] if t["key"] == key), None)


def _complete_bookinfo_trace(trace: dict[str, Any]) -> bool:
    """Gateway, productpage, details and reviews, plus ratings when reviews v2/v3 answered."""
    services = {_service_of(trace, span) for span in trace["spans"]}
    reviews_nodes = {
        str(_tag(s, "node_id"))
        for s in trace["spans"]
        if _service_of(trace, s) == "reviews.default"
    }
    wanted = {GATEWAY, "productpage.default", "details.default", "reviews.default"}
    if reviews_nodes and not any("~reviews-v1." in node for node in reviews_nodes):
        wanted.add("ratings.default")
    return services >= wanted and (("ratings.default" in services) == ("ratings.default" in wanted))


def _assert_one_rooted_tree(trace: dict[str, Any]) -> None:
    """One root span, from the gateway; every other span's parent is in the trace."""
    ids = {span["spanID"] for span in trace["spans"]}
    roots = [span for span in trace["spans"] if not span["references"]]
    assert [_service_of(trace, span) for span in roots] == [GATEWAY]
    for span in trace["spans"]:
        for ref in span["references"]:
            assert ref["traceID"] == trace["traceID"] and ref["spanID"] in ids, span
    request_ids = {_tag(span, "guid:x-request-id") for span in trace["spans"]}
    assert len(request_ids) == 1 and None not in request_ids  # one request, end to end


def test_n_gateway_requests_are_n_complete_traces(bookinfo: Mesh) -> None:
    query_port = _query_port(bookinfo)
    agents = [f"trellis-trace-{RUN}-{i}" for i in range(REQUESTS)]
    for agent in agents:
        headers = {"user-agent": agent, "x-request-id": f"{agent}-{secrets.token_hex(8)}"}
        status, page = bookinfo.http("/productpage", headers)
        assert status == 200, page
    found: dict[str, dict[str, Any]] = {}

    def all_complete() -> bool:
        for agent in agents:
            traces = _traces_tagged(query_port, "productpage.default", {"user_agent": agent})
            assert len(traces) <= 1, f"{agent}: {len(traces)} traces"
            if not traces or not _complete_bookinfo_trace(traces[0]):
                return False
            found[agent] = traces[0]
        return True

    eventually(all_complete, timeout=30.0, what=f"{REQUESTS} complete Bookinfo traces")
    assert len({trace["traceID"] for trace in found.values()}) == REQUESTS
    request_ids = set()
    for trace in found.values():
        _assert_one_rooted_tree(trace)
        request_ids.add(_tag(trace["spans"][0], "guid:x-request-id"))
    assert len(request_ids) == REQUESTS

    # The same N, and only they, in a plain service search over this run's window.
    status, body = jaeger(query_port, "/api/traces?service=productpage.default&limit=10000")
    ours = [
        t
        for t in body["data"]
        if str(_tag(t["spans"][0], "user_agent")).startswith(f"trellis-trace-{RUN}-")
    ]
    assert sorted(t["traceID"] for t in ours) == sorted(t["traceID"] for t in found.values())


def test_dependencies_show_the_bookinfo_call_graph(bookinfo: Mesh) -> None:
    query_port = _query_port(bookinfo)
    status, page = bookinfo.http("/productpage", {"cookie": "session=jason"})
    assert status == 200, page
    wanted = {
        (GATEWAY, "productpage.default"),
        ("productpage.default", "details.default"),
        ("productpage.default", "reviews.default"),
        ("reviews.default", "ratings.default"),
    }

    def edges() -> bool:
        end_ms = int(time.time() * 1000) + 60_000
        status, body = jaeger(query_port, f"/api/dependencies?endTs={end_ms}&lookback=3600000")
        assert status == 200, body
        links = {(d["parent"], d["child"]): d["callCount"] for d in body["data"]}
        return wanted <= set(links) and all(links[edge] > 0 for edge in wanted)

    eventually(edges, timeout=30.0, what=f"dependency links {sorted(wanted)}")
    _, services = jaeger(query_port, "/api/services")
    assert set(services["data"]) >= SERVICES
    _, operations = jaeger(query_port, "/api/services/productpage.default/operations")
    assert operations["data"]
    _, kinds = jaeger(query_port, "/api/operations?service=productpage.default&spanKind=server")
    assert {op["spanKind"] for op in kinds["data"]} == {"server"}


CUSTOM_TAGS = f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: trace-tags-{RUN}, namespace: default}}
spec:
  tracing:
  - customTags:
      trellis.team: {{literal: {{value: bookstore}}}}
      trellis.caller: {{header: {{name: x-trellis-caller, defaultValue: nobody}}}}
"""


def test_telemetry_custom_tags_land_on_new_spans(bookinfo: Mesh) -> None:
    query_port = _query_port(bookinfo)
    bookinfo.apply(CUSTOM_TAGS)
    try:
        attempt = iter(range(1000))

        def tagged() -> bool:
            agent = f"trellis-tags-{RUN}-{next(attempt)}"
            headers = {"user-agent": agent, "x-trellis-caller": f"caller-{RUN}"}
            assert bookinfo.http("/productpage", headers)[0] == 200

            def spans_in() -> list[tuple[str, dict[str, Any]]]:
                traces = _traces_tagged(query_port, GATEWAY, {"user_agent": agent})
                assert traces and _complete_bookinfo_trace(traces[0])
                return [(_service_of(traces[0], s), s) for s in traces[0]["spans"]]

            found: dict[str, Any] = {}
            eventually(lambda: bool(found.setdefault("spans", spans_in())), timeout=30.0)
            spans = found["spans"]
            mesh_spans = [span for service, span in spans if service.endswith(".default")]
            if not all(_tag(span, "trellis.team") == "bookstore" for span in mesh_spans):
                return False  # the Telemetry had not reached every proxy yet: next request
            server = [
                span
                for service, span in spans
                if service == "productpage.default" and _tag(span, "span.kind") == "server"
            ]
            assert [_tag(span, "trellis.caller") for span in server] == [f"caller-{RUN}"]
            gateway = [span for service, span in spans if service == GATEWAY]
            assert all(_tag(span, "trellis.team") is None for span in gateway)  # other namespace
            return True

        eventually(tagged, timeout=60.0, what="custom tags on new spans")
    finally:
        bookinfo.cli("delete", "-f", "-", input=CUSTOM_TAGS, check=False)


ZERO_SAMPLING = f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: trace-zero-{RUN}, namespace: default}}
spec:
  tracing:
  - randomSamplingPercentage: 0
"""

_CALL_DETAILS = """
import sys, urllib.request
for agent in sys.argv[1:]:
    request = urllib.request.Request("http://details:9080/details/0", headers={"user-agent": agent})
    assert urllib.request.urlopen(request, timeout=10).status == 200
"""


def _call_details_from_productpage(mesh: Mesh, agents: list[str]) -> None:
    """Requests that start at productpage's sidecar, so its namespace's sampling decides."""
    mesh.cli("exec", "productpage-v1", "--", sys.executable, "-c", _CALL_DETAILS, *agents)


def _traced(query_port: int, agent: str) -> bool:
    return bool(_traces_tagged(query_port, "details.default", {"user_agent": agent}))


def _gateway_control(mesh: Mesh, query_port: int, name: str) -> None:
    """A gateway request (sampled at the edge, which a namespace Telemetry does not govern)
    crosses the same productpage and details sidecars; once its spans are stored, any span
    those sidecars recorded before it has been exported too (Envoy flushes in order)."""
    agent = f"{name}-control"
    assert mesh.http("/productpage", {"user-agent": agent})[0] == 200

    def stored() -> bool:
        traces = _traces_tagged(query_port, "details.default", {"user_agent": agent})
        return bool(traces) and _complete_bookinfo_trace(traces[0])

    eventually(stored, timeout=30.0, what=f"control trace {agent}")


def test_zero_percent_sampling_from_telemetry_stops_new_traces(bookinfo: Mesh) -> None:
    query_port = _query_port(bookinfo)
    before = f"trellis-sampled-{RUN}"
    _call_details_from_productpage(bookinfo, [before])
    eventually(lambda: _traced(query_port, before), timeout=30.0, what="a 100 % sampled call")
    bookinfo.apply(ZERO_SAMPLING)
    try:
        rounds = iter(range(1000))

        def unsampled_round() -> bool:
            name = f"trellis-zero-{RUN}-{next(rounds)}"
            agents = [f"{name}-{i}" for i in range(5)]
            _call_details_from_productpage(bookinfo, agents)
            _gateway_control(bookinfo, query_port, name)
            return not any(_traced(query_port, agent) for agent in agents)

        # The first round may race the config push; a round after it must trace nothing.
        eventually(unsampled_round, timeout=60.0, what="0 % sampling to apply")
        assert unsampled_round()
    finally:
        bookinfo.cli("delete", "-f", "-", input=ZERO_SAMPLING, check=False)
    attempt = iter(range(1000))

    def sampled_again() -> bool:
        agent = f"trellis-restored-{RUN}-{next(attempt)}"
        _call_details_from_productpage(bookinfo, [agent])
        _gateway_control(bookinfo, query_port, agent)
        return _traced(query_port, agent)

    eventually(sampled_again, timeout=60.0, what="sampling restored after the Telemetry is gone")
