"""The agent's :15090/stats/prometheus: Envoy's own stats plus Istio's standard metrics.

Envoy's admin stays on loopback; on every scrape the agent reads the admin's Prometheus text,
appends the Istio metrics translated from it (telemetry/istio_metrics.py) and returns both, as
Istio's agent merges metrics. Nothing is computed between scrapes, so an idle proxy costs nothing.
The Telemetry metrics overrides in force come from the listener metadata trellisd compiled
(compiler/telemetry.py), and who answers behind each busy outbound cluster from its endpoints'
metadata (telemetry/destinations.py), both read from the admin's config dump on the same scrape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from trellis.telemetry.destinations import (
    DestinationWorkload,
    destinations_from_dump,
    eds_dump_path,
)
from trellis.telemetry.istio_metrics import (
    Workload,
    clusters_with_traffic,
    parse_envoy_text,
    translate,
)
from trellis.telemetry.metric_config import METRICS_METADATA_KEY, MetricsConfig

STATS_PATH = "/stats/prometheus"
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Sidecars with capture carry the overrides on virtualInbound (a small dump); gateways and
# sidecars without capture on every listener, so any of theirs will do.
_CONFIG_DUMP = "/config_dump?resource=dynamic_listeners"
_INBOUND_ONLY = "&name_regex=^virtualInbound$"


class StatsServer:
    """An aiohttp server on `host:port` that serves merged metrics for one workload."""

    def __init__(self, *, workload: Workload, admin_port: int, port: int, host: str = "0.0.0.0"):
        self.workload = workload
        self.admin_url = f"http://127.0.0.1:{admin_port}{STATS_PATH}"
        self.admin_base = f"http://127.0.0.1:{admin_port}"
        self.config_url = f"{self.admin_base}{_CONFIG_DUMP}"
        self.inbound_config_url = self.config_url + _INBOUND_ONLY
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
        samples = list(parse_envoy_text(envoy_text))
        config = await self._metrics_config()
        destinations = await self._destinations(clusters_with_traffic(samples))
        istio = translate(self.workload, samples, config, destinations)
        body = istio + envoy_text
        return web.Response(body=body.encode(), headers={"Content-Type": _CONTENT_TYPE})

    async def _metrics_config(self) -> MetricsConfig:
        """The Telemetry metrics overrides; none when Envoy cannot say (never fail a scrape)."""
        dump = await self._admin_json(self.inbound_config_url)
        if not (isinstance(dump, Mapping) and dump.get("configs")):  # no virtualInbound
            dump = await self._admin_json(self.config_url)
        return MetricsConfig.from_json(find_metrics_metadata(dump))

    async def _destinations(self, clusters: set[str]) -> dict[str, DestinationWorkload]:
        """Who answers behind the clusters that carried traffic (their EDS endpoints)."""
        path = eds_dump_path(clusters)
        if path is None:
            return {}
        return destinations_from_dump(await self._admin_json(self.admin_base + path), clusters)

    async def _admin_json(self, url: str) -> Any:
        assert self._session is not None
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    return None
                return json.loads(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None


def find_metrics_metadata(dump: Any) -> Mapping[str, Any] | None:
    """The first `trellis.metrics` listener metadata anywhere in a config dump."""
    if isinstance(dump, Mapping):
        found = dump.get(METRICS_METADATA_KEY)
        if isinstance(found, Mapping):
            return found
        items: Any = dump.values()
    elif isinstance(dump, list):
        items = dump
    else:
        return None
    for item in items:
        found = find_metrics_metadata(item)
        if found is not None:
            return found
    return None
