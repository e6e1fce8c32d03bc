"""Trace-store ingest benchmark: spans/s that a real `trellis tracing` process stores.

    python bench/tracing_ingest.py                    # 50 000 spans per format, 3 runs each
    python bench/tracing_ingest.py --spans 20000 --batch 100 --concurrency 4 --json

One `trellis tracing` process on free loopback ports; for each format (OTLP/HTTP protobuf,
OTLP/HTTP JSON, OTLP/gRPC, Zipkin v2 JSON) the same Envoy-sized spans (15 tags, 5 spans a
trace) are encoded up front, then sent in batches by `--concurrency` concurrent senders; a run
ends when the last batch is acknowledged (acknowledged = stored). Reported per format: the
median spans/s over `--repeats` runs with min..max, the server's CPU seconds per 10 000 spans
(the client shares the machine, so this is the steadier figure) and its RSS after the runs.

Baseline, in the same run and interleaved with the store's runs: the same OTLP/HTTP protobuf
bodies POSTed by the same client to a trivial aiohttp server in its own process that reads the
body and answers an empty 200 (`baseline-http-post`). Its spans/s is the most the client and
aiohttp's HTTP path carry here; the store's `x base` column is its share of that.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench`, `tests` and `trellis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from tests.tracing_payloads import SpanSpec, chain_trace, otlp_json, otlp_request, zipkin_spans

from bench.common import (
    Spread,
    cpu_seconds,
    emit_json,
    free_port,
    log,
    machine,
    memory_mb,
    table,
)

SPANS_PER_TRACE = 5
SERVICES = tuple(f"bench-{i}" for i in range(SPANS_PER_TRACE))
FORMATS = ("otlp-http-protobuf", "otlp-http-json", "otlp-grpc", "zipkin-v2-json")
BASELINE = "baseline-http-post"

# The baseline server: aiohttp, reads each body, stores nothing, answers 200 with no body.
_BASELINE_SERVER = """
import sys
from aiohttp import web

async def accept(request):
    await request.read()
    return web.Response(content_type="application/x-protobuf")

app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/v1/traces", accept)
app.router.add_get("/healthz", accept)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

Send = Callable[[Any], Awaitable[None]]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/tracing_ingest.py", description=__doc__.split("\n")[0])
    p.add_argument("--spans", type=int, default=50_000, help="spans sent per run")
    p.add_argument("--batch", type=int, default=500, help="spans per request")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent senders")
    p.add_argument("--repeats", type=int, default=3, help="runs per format")
    p.add_argument("--max-traces", type=int, default=10_000, help="the store's bound")
    p.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    args = p.parse_args(argv)
    if min(args.spans, args.batch, args.concurrency, args.repeats) < 1:
        p.error("--spans, --batch, --concurrency and --repeats must be positive")
    # Whole traces per request, so every acknowledged trace is complete in the store.
    args.batch = max(args.batch - args.batch % SPANS_PER_TRACE, SPANS_PER_TRACE)
    return args


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    otlp_http: int
    otlp_grpc: int
    zipkin: int
    query: int

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.query}/healthz"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read()
            health: dict[str, Any] = json.loads(body) if body else {}
            return health


def start_server(max_traces: int, log_path: Path) -> Server:
    ports = [free_port() for _ in range(4)]
    trellis = str(Path(sys.executable).parent / "trellis")
    argv = [trellis, "tracing", "--max-traces", str(max_traces), "--log-level", "WARNING"]
    for flag, port in zip(
        ("--otlp-http-port", "--otlp-grpc-port", "--zipkin-port", "--query-port"),
        ports,
        strict=True,
    ):
        argv += [flag, str(port)]
    return _until_healthy(argv, ports, log_path)


def start_baseline(log_path: Path) -> Server:
    """The trivial aiohttp endpoint: one port serves both the POSTs and the health check."""
    port = free_port()
    argv = [sys.executable, "-c", _BASELINE_SERVER, str(port)]
    return _until_healthy(argv, [port, 0, 0, port], log_path)


def _until_healthy(argv: list[str], ports: list[int], log_path: Path) -> Server:
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, *ports)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{argv[0]} exited:\n{log_path.read_text()}")
        try:
            server.health()
            return server
        except OSError:
            time.sleep(0.05)
    stop_server(server)
    raise SystemExit(f"{argv[0]} did not become ready in 30 s")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


def batches(first_trace: int, spans: int, batch: int) -> list[ExportTraceServiceRequest]:
    traces_per_batch = batch // SPANS_PER_TRACE
    total_traces = max(spans // SPANS_PER_TRACE, 1)
    start = time.time_ns()
    requests = []
    for first in range(first_trace, first_trace + total_traces, traces_per_batch):
        last = min(first + traces_per_batch, first_trace + total_traces)
        specs = [
            span
            for trace_id in range(first, last)
            for span in chain_trace(trace_id, SERVICES, start_ns=start, envoy_like=True)
        ]
        requests.append(otlp_request(specs))
    return requests


def encode(fmt: str, requests: list[ExportTraceServiceRequest]) -> list[Any]:
    if fmt == "otlp-http-protobuf":
        return [r.SerializeToString() for r in requests]
    if fmt == "otlp-http-json":
        return [json.dumps(otlp_json(r)).encode() for r in requests]
    if fmt == "zipkin-v2-json":
        return [json.dumps(zipkin_spans(_specs_of(r))).encode() for r in requests]
    return requests  # gRPC sends the messages themselves


def _specs_of(request: ExportTraceServiceRequest) -> list[SpanSpec]:
    """The Zipkin form of a request: rebuild specs from the OTLP spans (same IDs and tags)."""
    specs = []
    for resource_spans in request.resource_spans:
        service = resource_spans.resource.attributes[0].value.string_value
        for span in resource_spans.scope_spans[0].spans:
            specs.append(
                SpanSpec(
                    trace_id=int.from_bytes(span.trace_id, "big"),
                    span_id=int.from_bytes(span.span_id, "big"),
                    parent_id=int.from_bytes(span.parent_span_id, "big") or None,
                    service=service,
                    name=span.name,
                    start_ns=span.start_time_unix_nano,
                    duration_ns=span.end_time_unix_nano - span.start_time_unix_nano,
                    attributes={
                        kv.key: getattr(kv.value, kv.value.WhichOneof("value"))
                        for kv in span.attributes
                    },
                )
            )
    return specs


async def send_all(send: Send, bodies: list[Any], concurrency: int) -> float:
    """Send every body with `concurrency` senders; seconds until the last is acknowledged."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def sender() -> None:
        while not queue.empty():
            await send(queue.get_nowait())

    began = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(sender())
    return time.perf_counter() - began


async def run_format(server: Server, fmt: str, bodies: list[Any], concurrency: int) -> float:
    if fmt == "otlp-grpc":
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.otlp_grpc}") as channel:
            stub = TraceServiceStub(channel)

            async def send_grpc(body: Any) -> None:
                response = await stub.Export(body)
                if response.HasField("partial_success"):
                    raise SystemExit(f"spans refused: {response.partial_success}")

            return await send_all(send_grpc, bodies, concurrency)
    url, content_type, ok = _http_target(server, fmt)
    async with aiohttp.ClientSession() as session:

        async def send_http(body: Any) -> None:
            headers = {"Content-Type": content_type}
            async with session.post(url, data=body, headers=headers) as r:
                if r.status != ok:
                    raise SystemExit(f"{fmt}: HTTP {r.status}: {await r.text()}")
                await r.read()

        return await send_all(send_http, bodies, concurrency)


def _http_target(server: Server, fmt: str) -> tuple[str, str, int]:
    if fmt == "zipkin-v2-json":
        return f"http://127.0.0.1:{server.zipkin}/api/v2/spans", "application/json", 202
    otlp = f"http://127.0.0.1:{server.otlp_http}/v1/traces"
    if fmt == "otlp-http-json":
        return otlp, "application/json", 200
    return otlp, "application/x-protobuf", 200


def measure(args: argparse.Namespace, server: Server, baseline: Server) -> dict[str, Any]:
    """Each repeat runs every format and then the baseline, so load drift hits all alike."""
    rates: dict[str, list[float]] = {fmt: [] for fmt in (*FORMATS, BASELINE)}
    cpu_per_10k: dict[str, list[float]] = {fmt: [] for fmt in rates}
    next_trace = 1
    for _ in range(args.repeats):
        for fmt in (*FORMATS, BASELINE):
            target = baseline if fmt == BASELINE else server
            requests = batches(next_trace, args.spans, args.batch)
            wire = "otlp-http-protobuf" if fmt == BASELINE else fmt
            bodies = encode(wire, requests)
            sent = sum(
                len(s.spans) for r in requests for rs in r.resource_spans for s in rs.scope_spans
            )
            next_trace += sent // SPANS_PER_TRACE + 1
            cpu_before = cpu_seconds(target.proc.pid)
            elapsed = asyncio.run(run_format(target, wire, bodies, args.concurrency))
            rates[fmt].append(sent / elapsed)
            cpu_per_10k[fmt].append((cpu_seconds(target.proc.pid) - cpu_before) / sent * 10_000)
            log(f"{fmt}: {sent} spans in {elapsed:.2f} s ({sent / elapsed:.0f} spans/s)")
    results: dict[str, Any] = {}
    base_median = Spread.of(rates[BASELINE]).as_dict()["median"]
    for fmt, target in [*((f, server) for f in FORMATS), (BASELINE, baseline)]:
        spread = Spread.of(rates[fmt]).as_dict()
        results[fmt] = {
            "spans_per_s": spread,
            "x_baseline": round(spread["median"] / base_median, 3),
            "server_cpu_s_per_10k_spans": Spread.of(cpu_per_10k[fmt]).as_dict(),
            **memory_mb(target.proc.pid),
        }
    health = server.health()
    if health["rejectedSpans"]:
        raise SystemExit(f"the store refused {health['rejectedSpans']} spans")
    results["store"] = health
    return results


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows = [
        (
            fmt,
            args.spans,
            args.batch,
            results[fmt]["spans_per_s"]["median"],
            f"{results[fmt]['spans_per_s']['min']:.0f}..{results[fmt]['spans_per_s']['max']:.0f}",
            results[fmt]["x_baseline"],
            results[fmt]["server_cpu_s_per_10k_spans"]["median"],
            results[fmt]["rss_mb"],
        )
        for fmt in (*FORMATS, BASELINE)
    ]
    headers = (
        "format", "spans/run", "batch", "spans/s", "min..max", "x base", "cpu s/10k", "rss MiB"
    )  # fmt: skip
    print(table(headers, rows))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trellis-bench-tracing-") as tmp:
        server = start_server(args.max_traces, Path(tmp) / "tracing.log")
        try:
            baseline = start_baseline(Path(tmp) / "baseline.log")
            try:
                results = measure(args, server, baseline)
            finally:
                stop_server(baseline)
        finally:
            stop_server(server)
    if not args.json:
        report(args, results)
    emit_json(
        {
            "benchmark": "tracing_ingest",
            "spans_per_run": args.spans,
            "batch": args.batch,
            "concurrency": args.concurrency,
            "repeats": args.repeats,
            "max_traces": args.max_traces,
            "results": results,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
