"""The mesh's trace store (`trellis tracing`) as a supervised child of `trellis up`.

Ingest (OTLP/gRPC, OTLP/HTTP, Zipkin) listens where sidecars can reach it: the mesh's bridge
address with capture (unique per mesh, so the standard ports never collide between meshes;
Envoy's own uid-1337 traffic is not captured), the host's loopback on free ports without.
The Jaeger query API is for the user's browser: loopback, 16686 when free.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from dataclasses import dataclass

import aiohttp

from trellis.errors import TrellisError
from trellis.runtime.children import Child
from trellis.runtime.layout import Layout
from trellis.runtime.loopback import HOST_ADDRESS, free_port

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
ZIPKIN_PORT = 9411
QUERY_PORT = 16686


@dataclass(frozen=True, slots=True)
class TracePlan:
    """Where the trace store listens; decided once by the supervisor, kept across restarts."""

    host: str
    otlp_grpc_port: int
    otlp_http_port: int
    zipkin_port: int
    query_port: int

    @property
    def otlp_address(self) -> str:
        """HOST:PORT the proxies export spans to (trellisd's --tracing-address)."""
        return f"{self.host}:{self.otlp_grpc_port}"


def plan_trace_store(bridge_ip: str, proxy_mode: bool) -> TracePlan:
    """Standard ports where free (the bridge must exist already), else the OS's pick."""
    host = HOST_ADDRESS if proxy_mode else bridge_ip

    def port(standard: int) -> int:
        if not proxy_mode and _port_free(host, standard):
            return standard
        return free_port(host)

    query = QUERY_PORT if _port_free(HOST_ADDRESS, QUERY_PORT) else free_port(HOST_ADDRESS)
    return TracePlan(host, port(OTLP_GRPC_PORT), port(OTLP_HTTP_PORT), port(ZIPKIN_PORT), query)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def trace_store_child(layout: Layout, plan: TracePlan) -> Child:
    argv = [
        sys.executable,
        "-m",
        "trellis.cli.tracing",
        "--host",
        plan.host,
        "--otlp-grpc-port",
        str(plan.otlp_grpc_port),
        "--otlp-http-port",
        str(plan.otlp_http_port),
        "--zipkin-port",
        str(plan.zipkin_port),
        "--query-host",
        HOST_ADDRESS,
        "--query-port",
        str(plan.query_port),
    ]
    return Child(name="trace-store", argv=argv, log_path=layout.logs / "tracing.log")


async def wait_trace_store(child: Child, plan: TracePlan, timeout: float) -> None:
    """Poll the query API's /healthz until it answers 200 (or the child dies)."""
    url = f"http://{HOST_ADDRESS}:{plan.query_port}/healthz"
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        while time.monotonic() < deadline:
            if not child.alive():
                raise TrellisError(f"the trace store exited; see {child.log_path}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise TrellisError(f"the trace store did not become ready in {timeout:.0f}s")
