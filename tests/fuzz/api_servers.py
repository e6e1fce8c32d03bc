"""Real servers for the API fuzz tests: each aiohttp app on a free loopback port, in a thread.

schemathesis calls APIs with `requests` (blocking), so the apps run on their own event loop in
a background thread; `ServedApps.stop` cleans every runner up, also after a failed test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


class ServedApps:
    """One event loop thread serving any number of apps on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._runners: list[web.AppRunner] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the apps' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def serve(self, app: web.Application) -> str:
        """Serve `app`; returns its base URL."""
        return self.run(self._serve(app))

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    def serve_unix(self, app: web.Application, path: str) -> None:
        """Serve `app` on a unix socket, as trellisd serves its API in the state dir."""
        self.run(self._serve_unix(app, path))

    async def _serve_unix(self, app: web.Application, path: str) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.UnixSite(runner, path).start()

    def stop(self) -> None:
        for runner in reversed(self._runners):
            self.run(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
