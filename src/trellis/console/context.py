"""What every console handler shares: settings, keys, the mesh client and the metrics source."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from trellis.console.auth import DEFAULT_SESSION_TTL_S, ConsoleKeys, Role
from trellis.console.mesh_client import MeshClient
from trellis.console.metrics_source import DEFAULT_SCRAPE_INTERVAL_S, MetricsSource

WEB_ROOT = Path(__file__).resolve().parent / "web"


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """One frozen object with every choice the operator made (`trellis console` flags)."""

    state_dir: Path
    allowed_roles: frozenset[Role] = frozenset()
    session_ttl: float = DEFAULT_SESSION_TTL_S
    prometheus_url: str = ""  # "" = the embedded scrape
    scrape_interval: float = DEFAULT_SCRAPE_INTERVAL_S
    web_root: Path = WEB_ROOT
    secure_cookie: bool = False  # set when served over TLS (behind a proxy)
    clock: Callable[[], float] = field(default=time.time, compare=False)


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    settings: ConsoleSettings
    keys: ConsoleKeys
    mesh: MeshClient
    metrics: MetricsSource

    def now(self) -> float:
        return self.settings.clock()


CONTEXT = web.AppKey("console_context", ConsoleContext)


def context_of(request: web.Request) -> ConsoleContext:
    return request.app[CONTEXT]
