"""`trellis tracing` as a process: one store, four listeners, one event loop.

Ports (Jaeger all-in-one's): 4318 OTLP/HTTP, 4317 OTLP/gRPC, 9411 Zipkin v2, 16686 query API.
A port of 0 lets the OS choose; the chosen ports are logged (`event=listening`) and returned by
`start`. `serve(settings)` runs until SIGTERM/SIGINT or until the given `stop` event is set.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

import grpc
from aiohttp import web

from trellis.errors import RuntimeProblem
from trellis.tracing.ingest_grpc import start_otlp_grpc
from trellis.tracing.ingest_http import otlp_http_app, zipkin_app
from trellis.tracing.query_api import Clock, query_app
from trellis.tracing.store import DEFAULT_MAX_SPANS_PER_TRACE, DEFAULT_MAX_TRACES, TraceStore

log = logging.getLogger("trellis.tracing")


@dataclass(frozen=True, slots=True)
class TracingSettings:
    host: str = "127.0.0.1"
    otlp_http_port: int = 4318
    otlp_grpc_port: int = 4317
    zipkin_port: int = 9411
    query_port: int = 16686
    # Where the Jaeger query API binds; empty: `host`. `trellis up` keeps ingest on the mesh's
    # bridge (pods reach it) and the query API on the host's loopback.
    query_host: str = ""
    max_traces: int = DEFAULT_MAX_TRACES
    max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE


@dataclass(frozen=True, slots=True)
class TracingPorts:
    """The ports actually bound (differ from the settings only where those said 0)."""

    otlp_http: int
    otlp_grpc: int
    zipkin: int
    query: int


class RunningTraceStore:
    """A started trace store: its store, its bound ports, and how to stop it."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self.ports = TracingPorts(0, 0, 0, 0)
        self._runners: list[web.AppRunner] = []
        self.grpc_server: grpc.aio.Server | None = None

    async def stop(self, grace_s: float = 1.0) -> None:
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace_s)
            self.grpc_server = None
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def add_http_listener(self, app: web.Application, host: str, port: int) -> int:
        """Serve `app` on host:port; returns the bound port. `stop` cleans it up."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port).start()
        return int(runner.addresses[0][1])


async def start(settings: TracingSettings, *, clock: Clock = time.time) -> RunningTraceStore:
    """Start every listener; on any failure stop what started and raise RuntimeProblem."""
    store = TraceStore(
        max_traces=settings.max_traces, max_spans_per_trace=settings.max_spans_per_trace
    )
    running = RunningTraceStore(store)
    host = settings.host
    try:
        otlp_http = await running.add_http_listener(
            otlp_http_app(store), host, settings.otlp_http_port
        )
        grpc_server, otlp_grpc = await start_otlp_grpc(store, host, settings.otlp_grpc_port)
        running.grpc_server = grpc_server
        zipkin = await running.add_http_listener(zipkin_app(store), host, settings.zipkin_port)
        query = await running.add_http_listener(
            query_app(store, clock=clock), settings.query_host or host, settings.query_port
        )
    except OSError as e:
        await running.stop(0)
        raise RuntimeProblem(f"trellis tracing cannot listen on {host}: {e}") from e
    running.ports = TracingPorts(otlp_http, otlp_grpc, zipkin, query)
    _log_listening(host, running.ports, settings)
    return running


async def serve(settings: TracingSettings, *, stop: asyncio.Event | None = None) -> None:
    """Run the trace store until SIGTERM/SIGINT (or `stop` is set), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start(settings)
    try:
        await stop.wait()
    finally:
        log.info("event=stopping")
        await running.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _log_listening(host: str, ports: TracingPorts, settings: TracingSettings) -> None:
    for protocol, address, port in (
        ("otlp-http", host, ports.otlp_http),
        ("otlp-grpc", host, ports.otlp_grpc),
        ("zipkin", host, ports.zipkin),
        ("jaeger-query", settings.query_host or host, ports.query),
    ):
        log.info("event=listening protocol=%s address=%s:%d", protocol, address, port)
    log.info(
        "event=ready max_traces=%d max_spans_per_trace=%d",
        settings.max_traces,
        settings.max_spans_per_trace,
    )
