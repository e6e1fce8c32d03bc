"""`trellis tracing` as a real process: every ingest format in, Jaeger's API out, bounded memory.

Shapes are checked against Jaeger's HTTP JSON API (the `structuredResponse` envelope and the
UI trace model), which is what Jaeger's UI and Grafana's Jaeger datasource parse.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from tests.jaeger_api_schema import validate_answer
from tests.tracing_payloads import (
    CLIENT,
    SpanSpec,
    chain_trace,
    otlp_json,
    otlp_request,
    zipkin_spans,
)

pytestmark = pytest.mark.e2e

TRELLIS = str(Path(sys.executable).parent / "trellis")
PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACE_KEYS = {"traceID", "spans", "processes", "warnings"}
SPAN_KEYS = {
    "traceID",
    "spanID",
    "operationName",
    "references",
    "startTime",
    "duration",
    "tags",
    "logs",
    "processID",
    "warnings",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TracingProcess:
    proc: subprocess.Popen[bytes]
    otlp_http: int
    otlp_grpc: int
    zipkin: int
    query: int

    def url(self, port: int, path: str) -> str:
        return f"http://127.0.0.1:{port}{path}"

    def get(self, path: str) -> tuple[int, Any]:
        """GET from the query port; every Jaeger API answer must meet Jaeger's schema."""
        try:
            with urllib.request.urlopen(self.url(self.query, path), timeout=10) as r:
                status, body = r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            status, body = e.code, json.loads(e.read())
        if path.startswith("/api/"):
            validate_answer(path, status, body)
        return status, body

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tracing")


def run_tracing(log_path: Path, *extra: str) -> Iterator[TracingProcess]:
    ports = [free_port() for _ in range(4)]
    argv = [TRELLIS, "tracing", "--otlp-http-port", str(ports[0]), "--otlp-grpc-port"]
    argv += [str(ports[1]), "--zipkin-port", str(ports[2]), "--query-port", str(ports[3]), *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    running = TracingProcess(proc, *ports)
    try:
        _wait_ready(running, log_path)
        yield running
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        _keep_log(log_path)


def _wait_ready(running: TracingProcess, log_path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise AssertionError(f"trellis tracing exited:\n{log_path.read_text()}")
        try:
            if running.get("/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)  # readiness poll interval, not a wait for an outcome
    raise AssertionError(f"trellis tracing not ready in {timeout_s}s:\n{log_path.read_text()}")


def _keep_log(log_path: Path) -> None:
    target = Path(os.environ.get("TRELLIS_TEST_ARTIFACTS", "test-artifacts")) / "e2e-logs"
    target.mkdir(parents=True, exist_ok=True)
    (target / f"tracing-{log_path.name}").write_bytes(log_path.read_bytes()[-200_000:])


@pytest.fixture(scope="module")
def tracing(log_dir: Path) -> Iterator[TracingProcess]:
    yield from run_tracing(log_dir / "shape.log")


def now_ns() -> int:
    return time.time_ns()


def assert_jaeger_trace(trace: dict[str, Any], trace_id: int, services: set[str]) -> None:
    assert set(trace) == TRACE_KEYS
    assert trace["traceID"] == f"{trace_id:016x}"
    assert {p["serviceName"] for p in trace["processes"].values()} == services
    for process in trace["processes"].values():
        assert set(process) == {"serviceName", "tags"}
    for span in trace["spans"]:
        assert set(span) == SPAN_KEYS
        assert span["traceID"] == trace["traceID"]
        assert span["processID"] in trace["processes"]
        assert isinstance(span["startTime"], int) and isinstance(span["duration"], int)
        for tag in span["tags"]:
            assert set(tag) == {"key", "type", "value"}
            assert tag["type"] in {"string", "bool", "int64", "float64", "binary"}
        for ref in span["references"]:
            assert set(ref) == {"refType", "traceID", "spanID"}


def assert_envelope(body: dict[str, Any]) -> None:
    assert set(body) == {"data", "total", "limit", "offset", "errors"}


async def post(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> bytes:
    async with session.post(url, **kwargs) as r:
        assert r.status in (200, 202), await r.text()
        return await r.read()


async def test_every_ingest_format_answers_in_jaegers_shape(tracing: TracingProcess) -> None:
    start = now_ns()
    by_format = {
        "otlp-protobuf": chain_trace(0xA1, ("pb-front", "pb-back"), start_ns=start),
        "otlp-json": chain_trace(0xA2, ("json-front", "json-back"), start_ns=start),
        "otlp-grpc": chain_trace(0xA3, ("grpc-front", "grpc-back"), start_ns=start),
        "zipkin": chain_trace(0xA4, ("zip-front", "zip-back"), start_ns=start),
    }
    otlp = tracing.url(tracing.otlp_http, "/v1/traces")
    async with aiohttp.ClientSession() as session:
        body = otlp_request(by_format["otlp-protobuf"]).SerializeToString()
        reply = await post(session, otlp, data=body, headers=PROTOBUF)
        assert not ExportTraceServiceResponse.FromString(reply).HasField("partial_success")
        assert (
            json.loads(
                await post(session, otlp, json=otlp_json(otlp_request(by_format["otlp-json"])))
            )
            == {}
        )
        zipkin = tracing.url(tracing.zipkin, "/api/v2/spans")
        await post(session, zipkin, json=zipkin_spans(by_format["zipkin"]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tracing.otlp_grpc}") as channel:
        await TraceServiceStub(channel).Export(otlp_request(by_format["otlp-grpc"]))

    for specs in by_format.values():
        trace_id = specs[0].trace_id
        status, body = tracing.get(f"/api/traces/{trace_id:032x}")
        assert status == 200
        assert_envelope(body)
        assert (body["total"], body["limit"], body["offset"], body["errors"]) == (0, 0, 0, None)
        [trace] = body["data"]
        assert_jaeger_trace(trace, trace_id, {s.service for s in specs})
        spans = {span["spanID"]: span for span in trace["spans"]}
        assert set(spans) == {f"{s.span_id:016x}" for s in specs}
        child = spans[f"{specs[1].span_id:016x}"]
        assert child["references"] == [
            {
                "refType": "CHILD_OF",
                "traceID": f"{trace_id:016x}",
                "spanID": f"{specs[0].span_id:016x}",
            }
        ]
        assert child["operationName"] == specs[1].name
        assert child["startTime"] == specs[1].start_ns // 1000
        assert child["duration"] == specs[1].duration_ns // 1000
        assert {"key": "http.status_code", "type": "string", "value": "200"} in child["tags"]


async def test_services_operations_and_dependencies(tracing: TracingProcess) -> None:
    specs = chain_trace(0xB1, ("svc-front", "svc-back", "svc-db"), start_ns=now_ns())
    specs.append(SpanSpec(0xB1, 0xFFFF, specs[1].span_id, "svc-back", "SELECT", kind=CLIENT))
    async with aiohttp.ClientSession() as session:
        body = otlp_request(specs).SerializeToString()
        await post(
            session, tracing.url(tracing.otlp_http, "/v1/traces"), data=body, headers=PROTOBUF
        )

    status, services = tracing.get("/api/services")
    assert status == 200
    assert_envelope(services)
    assert {"svc-front", "svc-back", "svc-db"} <= set(services["data"])
    assert services["total"] == len(services["data"])

    _, operations = tracing.get("/api/services/svc-back/operations")
    assert operations["data"] == ["GET /svc-back", "SELECT"]
    assert operations["total"] == 2
    _, client_ops = tracing.get("/api/operations?service=svc-back&spanKind=client")
    assert client_ops["data"] == [{"name": "SELECT", "spanKind": "client"}]

    end_ms = time.time_ns() // 1_000_000 + 60_000
    _, deps = tracing.get(f"/api/dependencies?endTs={end_ms}&lookback=3600000")
    assert_envelope(deps)
    links = {(d["parent"], d["child"]): d["callCount"] for d in deps["data"]}
    assert links[("svc-front", "svc-back")] == 1 and links[("svc-back", "svc-db")] == 1
    assert all(set(d) == {"parent", "child", "callCount"} for d in deps["data"])


async def test_search_filters(tracing: TracingProcess) -> None:
    start = now_ns()
    traces = [
        chain_trace(0xC1, ("search",), start_ns=start, duration_ns=50_000_000),
        chain_trace(0xC2, ("search",), start_ns=start + 1000, duration_ns=1_500_000_000),
        chain_trace(0xC3, ("search",), start_ns=start + 2000, status_code="503"),
        chain_trace(0xC4, ("search",), start_ns=start - 2 * 3600 * 10**9),  # two hours ago
    ]
    async with aiohttp.ClientSession() as session:
        body = otlp_request([s for t in traces for s in t]).SerializeToString()
        await post(
            session, tracing.url(tracing.otlp_http, "/v1/traces"), data=body, headers=PROTOBUF
        )

    def found(query: str) -> list[str]:
        status, body = tracing.get(f"/api/traces?service=search&{query}")
        assert status == 200, body
        return sorted(t["traceID"] for t in body["data"])

    assert found("lookback=1h") == ["00000000000000c1", "00000000000000c2", "00000000000000c3"]
    assert found("lookback=3h") == [f"00000000000000c{i}" for i in range(1, 5)]
    assert found("lookback=1h&minDuration=1.2s") == ["00000000000000c2"]
    assert found("lookback=1h&minDuration=100ms") == ["00000000000000c2"]
    assert found("lookback=1h&maxDuration=100ms") == ["00000000000000c1", "00000000000000c3"]
    tags = urllib.request.quote('{"http.status_code":"503"}')
    assert found(f"tags={tags}") == ["00000000000000c3"]
    assert found("operation=GET%20%2Fsearch&lookback=1h&limit=2") == [
        "00000000000000c2",
        "00000000000000c3",
    ]
    assert found("operation=nope") == []


async def test_unknown_trace_id_is_a_404_json_error(tracing: TracingProcess) -> None:
    status, body = tracing.get("/api/traces/0123456789abcdef")
    assert status == 404
    assert body == {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": 404, "msg": "trace not found"}],
    }
    status, body = tracing.get("/api/traces?lookback=1h")
    assert status == 400 and body["errors"][0]["code"] == 400


async def test_the_oldest_traces_are_evicted_at_the_bound(log_dir: Path) -> None:
    for server in run_tracing(log_dir / "evict.log", "--max-traces", "100"):
        start = now_ns()
        traces = [
            chain_trace(t, ("evict-a", "evict-b", "evict-c"), start_ns=start) for t in range(1, 151)
        ]
        # Each request carries the end of one trace and the start of the next, as batching
        # exporters do, so a trace is only complete once two requests have arrived.
        batches = [traces[0][:2]] + [traces[i - 1][2:] + traces[i][:2] for i in range(1, 150)]
        batches.append(traces[149][2:])
        async with aiohttp.ClientSession() as session:
            for batch in batches:
                body = otlp_request(batch).SerializeToString()
                await post(
                    session, server.url(server.otlp_http, "/v1/traces"), data=body, headers=PROTOBUF
                )
        for trace_id in range(1, 51):
            assert server.get(f"/api/traces/{trace_id:x}")[0] == 404
        for trace_id in range(51, 151):
            status, body = server.get(f"/api/traces/{trace_id:x}")
            assert status == 200 and len(body["data"][0]["spans"]) == 3
        _, health = server.get("/healthz")
        assert (health["traces"], health["spans"], health["evictedTraces"]) == (100, 300, 50)


BURST_TRACES = 10_000
SPANS_PER_TRACE = 5
TRACES_PER_REQUEST = 100
BURST_MAX_TRACES = 1_000


async def test_a_burst_stays_bounded_and_loses_no_stored_trace(log_dir: Path) -> None:
    for server in run_tracing(log_dir / "burst.log", "--max-traces", str(BURST_MAX_TRACES)):
        bodies = _burst_bodies(now_ns())
        await _send_concurrently(server, bodies[:10])  # warm up: allocator, code paths
        rss_before = server.rss_kib()
        await _send_concurrently(server, bodies[10:])
        rss_after = server.rss_kib()

        _, health = server.get("/healthz")
        assert health["traces"] == BURST_MAX_TRACES
        assert health["spans"] == BURST_MAX_TRACES * SPANS_PER_TRACE
        assert health["rejectedSpans"] == 0
        status, body = server.get(f"/api/traces?service=burst-0&lookback=1h&limit={BURST_TRACES}")
        assert status == 200
        assert len(body["data"]) == BURST_MAX_TRACES
        sent_ids = {f"{t:016x}" for t in range(1, BURST_TRACES + 1)}
        for trace in body["data"]:
            assert trace["traceID"] in sent_ids
            assert len(trace["spans"]) == SPANS_PER_TRACE
        # The warm-up already filled the store to its bound, so the 45 000 spans after the
        # baseline should only replace stored ones. Measured here: an unbounded store grows by
        # ~108 MiB over them (~2.4 KiB a span), this one by ~2.5 MiB. The bound is generous
        # (4 KiB for each span the store may hold, plus 28 MiB of allocator slack) and still
        # well below what keeping every span would take.
        bound_kib = BURST_MAX_TRACES * SPANS_PER_TRACE * 4 + 28 * 1024
        assert rss_after - rss_before < bound_kib, (rss_before, rss_after)


def _burst_bodies(start: int) -> list[bytes]:
    services = tuple(f"burst-{i}" for i in range(SPANS_PER_TRACE))
    bodies = []
    for first in range(1, BURST_TRACES + 1, TRACES_PER_REQUEST):
        specs = [
            span
            for trace_id in range(first, first + TRACES_PER_REQUEST)
            for span in chain_trace(trace_id, services, start_ns=start, envoy_like=True)
        ]
        bodies.append(otlp_request(specs).SerializeToString())
    return bodies


async def _send_concurrently(
    server: TracingProcess, bodies: list[bytes], *, senders: int = 8
) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    url = server.url(server.otlp_http, "/v1/traces")

    async def sender(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            reply = await post(session, url, data=queue.get_nowait(), headers=PROTOBUF)
            assert not ExportTraceServiceResponse.FromString(reply).HasField("partial_success")

    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        for _ in range(senders):
            group.create_task(sender(session))


SMALL_BOUND = 100
FLOOD_SPANS = 50_000
FLOOD_TRACES_PER_REQUEST = 50
RSS_LIMIT_KIB = 300 * 1024  # a resource bound, far below what 50 000 stored spans would take


def _flood_bodies(first_trace: int, traces: int, start: int) -> list[bytes]:
    """Whole traces per request (5 Envoy-sized spans each), trace IDs first_trace.. in order."""
    services = tuple(f"flood-{i}" for i in range(SPANS_PER_TRACE))
    bodies = []
    last = first_trace + traces
    for first in range(first_trace, last, FLOOD_TRACES_PER_REQUEST):
        ids = range(first, min(first + FLOOD_TRACES_PER_REQUEST, last))
        specs = [
            span
            for trace_id in ids
            for span in chain_trace(trace_id, services, start_ns=start, envoy_like=True)
        ]
        bodies.append(otlp_request(specs).SerializeToString())
    return bodies


async def test_50000_spans_into_100_traces_bounded_complete_oldest_evicted(log_dir: Path) -> None:
    for server in run_tracing(log_dir / "flood.log", "--max-traces", str(SMALL_BOUND)):
        start = now_ns()
        flood_traces = FLOOD_SPANS // SPANS_PER_TRACE
        rss_before = server.rss_kib()
        await _send_concurrently(server, _flood_bodies(1, flood_traces, start))
        rss_after = server.rss_kib()
        assert rss_after < RSS_LIMIT_KIB, (rss_before, rss_after)

        _, health = server.get("/healthz")
        assert health["traces"] <= SMALL_BOUND
        assert health["evictedTraces"] == flood_traces - health["traces"]
        assert health["rejectedSpans"] == 0
        _assert_listed_traces_complete(server, "flood-0", set(range(1, flood_traces + 1)))

        # Then three requests one after another: the first is evicted, the last two stay.
        tail = _flood_bodies(flood_traces + 1, 3 * FLOOD_TRACES_PER_REQUEST, start)
        await _send_concurrently(server, tail, senders=1)
        kept = range(flood_traces + 1 + FLOOD_TRACES_PER_REQUEST, flood_traces + 1 + 150)
        listed = _assert_listed_traces_complete(server, "flood-0", set(kept))
        assert listed == set(kept)
        assert server.get(f"/api/traces/{flood_traces + 1:x}")[0] == 404


def _assert_listed_traces_complete(
    server: TracingProcess, service: str, sent: set[int]
) -> set[int]:
    """Every trace /api/traces lists was sent and holds all the spans sent for it."""
    status, body = server.get(f"/api/traces?service={service}&lookback=1h&limit=100000")
    assert status == 200
    assert 0 < len(body["data"]) <= SMALL_BOUND
    listed = set()
    for trace in body["data"]:
        trace_id = int(trace["traceID"], 16)
        assert trace_id in sent
        assert len(trace["spans"]) == SPANS_PER_TRACE
        ids = {span["spanID"] for span in trace["spans"]}
        parents = {ref["spanID"] for span in trace["spans"] for ref in span["references"]}
        assert parents <= ids  # no orphans: every parent is in the trace
        listed.add(trace_id)
    return listed
