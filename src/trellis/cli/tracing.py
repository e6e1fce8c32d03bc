"""`trellis tracing`: run the in-memory trace store in the foreground (Jaeger all-in-one's role)."""

from __future__ import annotations

import asyncio
import logging

import typer

from trellis.tracing.server import TracingSettings, serve
from trellis.tracing.store import DEFAULT_MAX_SPANS_PER_TRACE, DEFAULT_MAX_TRACES


def tracing(
    host: str = typer.Option("127.0.0.1", "--host", help="Address every listener binds"),
    otlp_http_port: int = typer.Option(4318, "--otlp-http-port", help="OTLP/HTTP (protobuf, JSON)"),
    otlp_grpc_port: int = typer.Option(4317, "--otlp-grpc-port", help="OTLP/gRPC"),
    zipkin_port: int = typer.Option(9411, "--zipkin-port", help="Zipkin v2 JSON"),
    query_port: int = typer.Option(16686, "--query-port", help="Jaeger query API"),
    query_host: str = typer.Option(
        "", "--query-host", help="Address the Jaeger query API binds (default: --host)"
    ),
    max_traces: int = typer.Option(
        DEFAULT_MAX_TRACES, "--max-traces", min=1, help="Traces kept; the oldest is evicted"
    ),
    max_spans_per_trace: int = typer.Option(
        DEFAULT_MAX_SPANS_PER_TRACE,
        "--max-spans-per-trace",
        min=1,
        help="Spans kept per trace; more are refused (reported to OTLP senders)",
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    """Run the trace store: OTLP and Zipkin in, Jaeger's query API out (Ctrl-C stops it).

    Point Jaeger's UI or Grafana's Jaeger datasource at http://HOST:QUERY_PORT. Port 0 lets the
    OS choose; the chosen ports are logged.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = TracingSettings(
        host=host,
        otlp_http_port=otlp_http_port,
        otlp_grpc_port=otlp_grpc_port,
        zipkin_port=zipkin_port,
        query_port=query_port,
        query_host=query_host,
        max_traces=max_traces,
        max_spans_per_trace=max_spans_per_trace,
    )
    asyncio.run(serve(settings))


if __name__ == "__main__":  # how the runtime's supervisor runs it as a child
    typer.run(tracing)
