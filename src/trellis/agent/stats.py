"""The agent's :15090/stats/prometheus: Envoy's own stats plus Istio's request metrics.

Envoy's admin stays on loopback; on every scrape the agent reads the admin's Prometheus text,
appends the Istio metrics translated from it (telemetry/istio_metrics.py) and returns both, as
Istio's agent merges metrics. Nothing is computed between scrapes, so an idle proxy costs nothing.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from trellis.telemetry.istio_metrics import Workload, parse_envoy_text, translate

STATS_PATH = "/stats/prometheus"
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=10)


class StatsServer:
    """An aiohttp server on `host:port` that serves merged metrics for one workload."""

    def __init__(self, *, workload: Workload, admin_port: int, port: int, host: str = "0.0.0.0"):
        self.workload = workload
        self.admin_url = f"http://127.0.0.1:{admin_port}{STATS_PATH}"
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(STATS_PATH, self._scrape)
        self._session = aiohttp.ClientSession(timeout=_ADMIN_TIMEOUT)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _scrape(self, request: web.Request) -> web.Response:
        assert self._session is not None
        try:
            async with self._session.get(self.admin_url) as response:
                envoy_text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as err:
            return web.Response(status=503, text=f"envoy admin unreachable: {err}\n")
        if status != 200:
            return web.Response(status=503, text=f"envoy admin answered {status}\n")
        istio = translate(self.workload, parse_envoy_text(envoy_text))
        body = istio + envoy_text
        return web.Response(body=body.encode(), headers={"Content-Type": _CONTENT_TYPE})
