"""The trace store's listeners in-process on loopback: answers and error answers of each API."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from tests.tracing_payloads import BASE_NS, chain_trace, otlp_json, otlp_request, zipkin_spans

from trellis.errors import RuntimeProblem
from trellis.tracing.server import RunningTraceStore, TracingSettings, start

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
async def tracing() -> AsyncIterator[RunningTraceStore]:
    settings = TracingSettings(
        otlp_http_port=0,
        otlp_grpc_port=0,
        zipkin_port=0,
        query_port=0,
        max_traces=50,
        max_spans_per_trace=3,
    )
    running = await start(settings, clock=lambda: BASE_NS / 1e9 + 60)
    try:
        yield running
    finally:
        await running.stop(0)


def url(running: RunningTraceStore, port_name: str, path: str) -> str:
    return f"http://127.0.0.1:{getattr(running.ports, port_name)}{path}"


async def test_otlp_protobuf_export_is_acknowledged_with_an_empty_response(
    tracing: RunningTraceStore,
) -> None:
    body = otlp_request(chain_trace(1)).SerializeToString()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(tracing, "otlp_http", "/v1/traces"), data=body, headers=PROTOBUF) as r,
    ):
        assert r.status == 200 and r.content_type == "application/x-protobuf"
        response = ExportTraceServiceResponse.FromString(await r.read())
    assert not response.HasField("partial_success")
    assert tracing.store.stats().spans == 2


async def test_otlp_export_reports_refused_spans_as_partial_success(
    tracing: RunningTraceStore,
) -> None:
    too_long = chain_trace(2, ("a", "b", "c", "d", "e"))  # the fixture keeps 3 spans a trace
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url(tracing, "otlp_http", "/v1/traces"),
            data=otlp_request(too_long).SerializeToString(),
            headers=PROTOBUF,
        ) as r:
            response = ExportTraceServiceResponse.FromString(await r.read())
        assert response.partial_success.rejected_spans == 2
        async with session.post(
            url(tracing, "otlp_http", "/v1/traces"), json=otlp_json(otlp_request(too_long))
        ) as r:
            assert r.status == 200
            assert (await r.json())["partialSuccess"]["rejectedSpans"] == "5"


async def test_malformed_otlp_bodies_get_400_with_a_status(tracing: RunningTraceStore) -> None:
    endpoint = url(tracing, "otlp_http", "/v1/traces")
    async with aiohttp.ClientSession() as session:
        async with session.post(endpoint, data=b"\xff\xff", headers=PROTOBUF) as r:
            assert r.status == 400
            assert Status.FromString(await r.read()).code == 3
        async with session.post(
            endpoint, data=b"{", headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400 and (await r.json())["code"] == 3
        async with session.post(endpoint, data=b"x", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415


async def test_zipkin_post_is_accepted_and_bad_json_refused(tracing: RunningTraceStore) -> None:
    endpoint = url(tracing, "zipkin", "/api/v2/spans")
    async with aiohttp.ClientSession() as session:
        async with session.post(endpoint, json=zipkin_spans(chain_trace(3))) as r:
            assert r.status == 202
        async with session.post(endpoint, data=b"{}") as r:
            assert r.status == 400
    assert tracing.store.get(3) is not None


async def test_otlp_grpc_export_stores_spans(tracing: RunningTraceStore) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tracing.ports.otlp_grpc}") as channel:
        response = await TraceServiceStub(channel).Export(otlp_request(chain_trace(4)))
    assert not response.HasField("partial_success")
    trace = tracing.store.get(4)
    assert trace is not None and len(trace.spans) == 2


async def test_query_errors_use_jaegers_envelope(tracing: RunningTraceStore) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(url(tracing, "query", "/api/traces")) as r:
            assert r.status == 400
            body = await r.json()
        assert body["data"] is None
        assert body["errors"] == [{"code": 400, "msg": "parameter 'service' is required"}]
        async with session.get(url(tracing, "query", "/api/traces/00000000000000ff")) as r:
            assert r.status == 404
            assert (await r.json())["errors"] == [{"code": 404, "msg": "trace not found"}]
        async with session.get(url(tracing, "query", "/api/traces/nothex")) as r:
            assert r.status == 400


async def test_trace_id_search_reports_missing_ids_beside_found_traces(
    tracing: RunningTraceStore,
) -> None:
    async with aiohttp.ClientSession() as session:
        await session.post(
            url(tracing, "zipkin", "/api/v2/spans"), json=zipkin_spans(chain_trace(5))
        )
        params = [("traceID", "5"), ("traceID", "6")]
        async with session.get(url(tracing, "query", "/api/traces"), params=params) as r:
            body = json.loads(await r.text())
    assert [t["traceID"] for t in body["data"]] == ["0000000000000005"]
    assert body["errors"] == [{"msg": "trace not found", "traceID": "0000000000000006"}]


async def test_health_reports_the_store_counters(tracing: RunningTraceStore) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(tracing, "query", "/healthz")) as r,
    ):
        assert await r.json() == {
            "status": "ok",
            "traces": 0,
            "spans": 0,
            "maxTraces": 50,
            "evictedTraces": 0,
            "rejectedSpans": 0,
        }


@pytest.mark.parametrize("taken", ["query", "otlp_grpc"])
async def test_a_port_in_use_is_a_clear_error(tracing: RunningTraceStore, taken: str) -> None:
    ports = {"otlp_http_port": 0, "otlp_grpc_port": 0, "zipkin_port": 0, "query_port": 0}
    ports[f"{taken}_port"] = getattr(tracing.ports, taken)
    with pytest.raises(RuntimeProblem, match="cannot listen"):
        await start(TracingSettings(**ports))


async def test_gzip_compressed_otlp_is_accepted(tracing: RunningTraceStore) -> None:
    """OTLP exporters compress with gzip by default in several SDKs and in the Collector."""
    body = gzip.compress(otlp_request(chain_trace(8)).SerializeToString())
    headers = {**PROTOBUF, "Content-Encoding": "gzip"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(tracing, "otlp_http", "/v1/traces"), data=body, headers=headers) as r,
    ):
        assert r.status == 200
    assert tracing.store.get(8) is not None
