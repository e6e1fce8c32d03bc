"""Running the console: bind, serve until stopped, log where (never tokens or cookies)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from trellis.console.auth import Role, parse_roles
from trellis.console.context import ConsoleSettings
from trellis.console.server import build_app

DEFAULT_PORT = 20001  # Kiali's
ROLES_ENV = "TRELLIS_CONSOLE_ALLOWED_ROLES"  # Kubernetes: console.rbac.allowedRoles

log = logging.getLogger("trellis.console")


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Method, path (never the query string) and status: nothing secret reaches the log even
    when a client puts a token where it does not belong."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            'event=http method=%s path="%s" status=%d ms=%.1f',
            request.method,
            request.path,
            response.status,
            time * 1000,
        )


def allowed_roles(flag: str | None, mesh_default: str) -> frozenset[Role]:
    """--console-roles, else $TRELLIS_CONSOLE_ALLOWED_ROLES, else what `trellis up` granted."""
    if flag is not None:
        return parse_roles(flag)
    return parse_roles(os.environ.get(ROLES_ENV, mesh_default))


async def serve(settings: ConsoleSettings, address: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    runner = web.AppRunner(
        build_app(settings), access_log_class=PathOnlyAccessLogger, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    roles = ",".join(sorted(r.value for r in settings.allowed_roles)) or "cluster-admin only"
    source = settings.prometheus_url or "embedded scrape"
    log.info(
        "event=console-ready url=http://%s:%d/ roles=%s metrics=%s", address, port, roles, source
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
