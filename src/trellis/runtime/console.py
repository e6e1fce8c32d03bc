"""The console (`trellis console`) as a supervised child of `trellis up`.

It listens on the host's loopback, Kiali's 20001 when free (else a port the OS picks, so two
meshes or a test suite beside a demo never collide); mesh.json records where.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import aiohttp

from trellis.errors import TrellisError
from trellis.runtime.children import Child
from trellis.runtime.layout import Layout
from trellis.runtime.loopback import HOST_ADDRESS, free_port

CONSOLE_PORT = 20001


def plan_console_port() -> int:
    with socket.socket() as s:
        try:
            s.bind((HOST_ADDRESS, CONSOLE_PORT))
        except OSError:
            return free_port(HOST_ADDRESS)
    return CONSOLE_PORT


def console_child(layout: Layout, port: int, roles: str, prometheus_port: int = 0) -> Child:
    """`prometheus_port`: the mesh's own Prometheus, read with PromQL (0: scrape the proxies)."""
    argv = [
        sys.executable,
        "-m",
        "trellis.cli.console",
        "--port",
        str(port),
        "--address",
        HOST_ADDRESS,
        "--console-roles",
        roles,
        "--state-dir",
        str(layout.root),
    ]
    if prometheus_port:
        argv += ["--prometheus-url", f"http://{HOST_ADDRESS}:{prometheus_port}"]
    return Child(name="console", argv=argv, log_path=layout.logs / "console.log")


async def wait_console(child: Child, port: int, timeout: float) -> None:
    """Poll /api/auth/info (public) until it answers 200, or the child dies."""
    url = f"http://{HOST_ADDRESS}:{port}/api/auth/info"
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        while time.monotonic() < deadline:
            if not child.alive():
                raise TrellisError(f"the console exited; see {child.log_path}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise TrellisError(f"the console did not become ready in {timeout:.0f}s")
