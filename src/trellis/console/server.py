"""The console's HTTP server: auth middleware, the JSON API, the static UI and /vendor.

`build_app(settings)` is the whole console; `trellis console` runs it, tests run it in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from trellis.console import api_config, api_mesh
from trellis.console.auth import (
    SESSION_COOKIE,
    AuthError,
    Claims,
    check_granted,
    check_write,
    load_or_create_keys,
    open_session,
    read_session,
    session_expiry,
    verify_token,
)
from trellis.console.context import CONTEXT, ConsoleContext, ConsoleSettings, context_of
from trellis.console.mesh_client import MeshClient, ScrapeTargetsFromRuntime
from trellis.console.metrics_source import EmbeddedSource, MetricsSource, PrometheusSource
from trellis.console.openapi import openapi_document
from trellis.errors import BadRequest, Conflict, NotFound, TrellisError, ValidationError
from trellis.runtime.layout import Layout

log = logging.getLogger("trellis.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_API = frozenset({"/api/auth/info", "/api/authenticate", "/api/openapi.json"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_ONLY_POSTS = frozenset({"/api/istio/validate"})
CLAIMS = web.RequestKey("console_claims", Claims)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _credentials(ctx: ConsoleContext, request: web.Request) -> Claims:
    """Bearer token first, else the session cookie; neither is 401."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return verify_token(ctx.keys, header[7:], now=ctx.now())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return read_session(ctx.keys, cookie, now=ctx.now())
    raise AuthError(
        401, "log in: POST /api/authenticate with a token, or send Authorization: Bearer"
    )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every API call is authenticated and authorised here, server-side, every time."""
    if "token" in request.query:
        return error(
            400,
            "tokens are not accepted in URLs; use POST /api/authenticate or "
            "the Authorization header",
        )
    path = request.path
    if path.startswith("/api/") and path not in PUBLIC_API:
        ctx = context_of(request)
        try:
            claims = _credentials(ctx, request)
            check_granted(claims.role, ctx.settings.allowed_roles)
            if request.method in WRITE_METHODS and path not in READ_ONLY_POSTS:
                check_write(claims.role)
        except AuthError as e:
            return error(e.status, str(e))
        request[CLAIMS] = claims
    response = await handler(request)
    response.headers.update(SECURITY_HEADERS)
    return response


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A mesh-side refusal becomes `{"error"}` with the right status, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if request.path.startswith("/api/") and e.status >= 400:
            return error(e.status, e.reason)  # aiohttp's own 404/405 as JSON, like ours
        raise
    except BadRequest as e:
        return error(e.status, str(e))  # trellisd refused the request: relay its 4xx
    except NotFound as e:
        return error(404, str(e))
    except Conflict as e:
        return error(409, str(e))
    except ValidationError as e:
        return error(400, str(e))
    except TrellisError as e:
        return error(502, str(e))
    except (ValueError, KeyError) as e:
        return error(400, f"bad request: {e}")
    except Exception:
        log.exception("event=console-error path=%s", request.path)
        return error(500, "internal error; see the console's log")


# -- auth endpoints ---------------------------------------------------------------------------


async def auth_info(request: web.Request) -> web.Response:
    ctx = context_of(request)
    session: dict[str, Any] = {}
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with contextlib.suppress(AuthError):
            c = read_session(ctx.keys, cookie, now=ctx.now())
            session = {
                "username": c.username,
                "role": c.role.value,
                "expiresOn": _iso(c.expires_at),
            }
    return web.json_response({"strategy": "token", "sessionInfo": session})


async def authenticate(request: web.Request) -> web.Response:
    """Kiali's token login: form `token=...` (or JSON) -> encrypted HttpOnly session cookie."""
    ctx = context_of(request)
    token = await _posted_token(request)
    try:
        claims = verify_token(ctx.keys, token, now=ctx.now())
        check_granted(claims.role, ctx.settings.allowed_roles)
    except AuthError as e:
        return error(e.status, str(e))
    ttl = ctx.settings.session_ttl
    cookie = open_session(ctx.keys, claims, now=ctx.now(), ttl=ttl)
    expires = session_expiry(claims, now=ctx.now(), ttl=ttl)
    response = web.json_response(
        {"username": claims.username, "role": claims.role.value, "expiresOn": _iso(expires)}
    )
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="Strict",
        path="/",
        max_age=max(1, int(expires - ctx.now())),
        secure=ctx.settings.secure_cookie,
    )
    return response


async def _posted_token(request: web.Request) -> str:
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return ""
        return str(body.get("token", "")) if isinstance(body, dict) else ""
    form = await request.post()
    return str(form.get("token", ""))


async def logout(_: web.Request) -> web.Response:
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def status(request: web.Request) -> web.Response:
    ctx = context_of(request)
    up = await ctx.mesh.trellisd_up()
    info = ctx.mesh.info()
    mesh: dict[str, Any] = {"trellisd": "up" if up else "down"}
    if info is not None:
        mesh["tracing"] = "up" if info.tracing_query_port else "off"
    mesh["prometheus"] = ctx.metrics.description
    return web.json_response({"status": {"Kiali state": "running"}, "mesh": mesh})


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# -- static UI and /vendor ---------------------------------------------------------------------


def _inside(root: Path, relative: str) -> Path | None:
    """root/relative when it stays inside root (no `..`, no symlink out), else None."""
    root = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root and not candidate.is_relative_to(root):
        return None
    return candidate if candidate.is_file() else None


def vendor_packages(web_root: Path) -> frozenset[str]:
    """Only what web/package.json depends on is served: node_modules holds far more."""
    try:
        manifest = json.loads((web_root / "package.json").read_text())
    except (OSError, ValueError):
        return frozenset()
    return frozenset(manifest.get("dependencies", {}))


async def vendor(request: web.Request) -> web.StreamResponse:
    root = context_of(request).settings.web_root
    rest = request.match_info["rest"]
    parts = rest.split("/")
    n = 2 if parts[0].startswith("@") else 1
    package, inner = "/".join(parts[:n]), "/".join(parts[n:])
    if package not in vendor_packages(root) or not inner:
        raise web.HTTPNotFound()
    found = _inside(root / "node_modules" / package, inner)
    if found is None:
        raise web.HTTPNotFound()
    return web.FileResponse(found)


async def static(request: web.Request) -> web.StreamResponse:
    root = context_of(request).settings.web_root
    rest = request.match_info.get("rest", "") or "index.html"
    if rest.startswith("node_modules") or rest.startswith("api/"):
        raise web.HTTPNotFound()
    found = _inside(root, rest)
    if found is None and "." not in rest.rsplit("/", 1)[-1]:
        found = _inside(root, "index.html")  # client-side routes load the app
    if found is None or "node_modules" in found.relative_to(root.resolve()).parts:
        raise web.HTTPNotFound()
    return web.FileResponse(found, headers={"Cache-Control": "no-cache"})


# -- the application ---------------------------------------------------------------------------


def metrics_source(settings: ConsoleSettings, mesh: MeshClient) -> MetricsSource:
    info = mesh.info()
    url = settings.prometheus_url
    if not url and info is not None and info.prometheus_port:
        url = f"http://127.0.0.1:{info.prometheus_port}"
    if url:
        return PrometheusSource(url, clock=settings.clock)
    return EmbeddedSource(
        ScrapeTargetsFromRuntime(mesh), interval=settings.scrape_interval, clock=settings.clock
    )


def build_app(settings: ConsoleSettings) -> web.Application:
    mesh = MeshClient(Layout(settings.state_dir))
    ctx = ConsoleContext(
        settings, load_or_create_keys(settings.state_dir), mesh, metrics_source(settings, mesh)
    )
    app = web.Application(middlewares=[guard, errors_as_json], client_max_size=2 * 1024 * 1024)
    app[CONTEXT] = ctx
    app.router.add_get("/api/auth/info", auth_info)
    app.router.add_post("/api/authenticate", authenticate)
    app.router.add_get("/api/logout", logout)
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/openapi.json", openapi)
    api_mesh.add_routes(app.router)
    api_config.add_routes(app.router)
    app.router.add_route("*", "/api/{rest:.*}", _no_such_api)
    app.router.add_get("/vendor/{rest:.+}", vendor)
    app.router.add_get("/{rest:.*}", static)
    app.cleanup_ctx.append(_scraper)
    return app


async def _no_such_api(request: web.Request) -> web.Response:
    return error(404, f"no API at {request.path}")


async def _scraper(app: web.Application) -> AsyncIterator[None]:
    """The embedded scrape runs as long as the app does (one task, kept, cancelled at exit)."""
    source = app[CONTEXT].metrics
    task = asyncio.create_task(source.run()) if isinstance(source, EmbeddedSource) else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
