"""Run the fake API server on a free loopback port with a kubeconfig pointing at it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import yaml
from aiohttp import web

from tests.kube_fake.server import FakeApiServer


@contextlib.asynccontextmanager
async def running_fake(
    kubeconfig: Path, server: FakeApiServer | None = None
) -> AsyncIterator[FakeApiServer]:
    """Serve a fake on a free loopback port and write a kubeconfig that points at it."""
    fake = server or FakeApiServer()
    runner = web.AppRunner(fake.app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig.write_text(_kubeconfig(f"http://127.0.0.1:{port}"))
    try:
        yield fake
    finally:
        fake.drop_watches()
        await runner.cleanup()


def _kubeconfig(url: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
    )
