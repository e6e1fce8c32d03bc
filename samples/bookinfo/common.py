"""What the four Bookinfo services share: settings, header propagation, upstream calls, logs.

The services run as plain processes, so this module uses only the standard library and aiohttp.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

DEFAULT_PORT = 9080

JsonObject = dict[str, Any]

# Istio's Bookinfo services forward exactly these request headers on every call they make, so
# that traces join up and header-based routing (end-user) works on the next hop. Istio keeps the
# same list in productpage, details and reviews; so do we.
PROPAGATED_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "sw8",
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
)


@dataclass(frozen=True, slots=True)
class Upstreams:
    """Base URLs of the services Bookinfo calls, by Kubernetes service name unless overridden."""

    details: str
    reviews: str
    ratings: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Upstreams:
        return cls(
            details=upstream_base_url("details", env),
            reviews=upstream_base_url("reviews", env),
            ratings=upstream_base_url("ratings", env),
        )


def upstream_base_url(service: str, env: Mapping[str, str]) -> str:
    """`http://<NAME>_HOSTNAME[.SERVICES_DOMAIN]:<NAME>_SERVICE_PORT`, as in Istio's sample."""
    prefix = service.upper()
    host = env.get(f"{prefix}_HOSTNAME") or service
    domain = env.get("SERVICES_DOMAIN")
    if domain:
        host = f"{host}.{domain}"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address
    port = env.get(f"{prefix}_SERVICE_PORT") or str(DEFAULT_PORT)
    return f"http://{host}:{port}"


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Everything one Bookinfo process needs to know, read once at the command line edge."""

    service: str
    version: str
    workload: str
    cluster: str
    upstreams: Upstreams
    # reviews only: the star colour it reports, or None when it does not call ratings (v1).
    star_color: str | None = None


SETTINGS_KEY = web.AppKey("settings", ServiceSettings)
CLIENT_KEY = web.AppKey("client", aiohttp.ClientSession)


def propagated_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    """The subset of a request's headers that must travel on to the next service."""
    return {name: incoming[name] for name in PROPAGATED_HEADERS if name in incoming}


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """An upstream's answer: its status and its body when that was a JSON object."""

    status: int
    body: JsonObject | None


async def get_json(
    session: aiohttp.ClientSession, url: str, *, headers: Mapping[str, str], timeout_s: float
) -> UpstreamReply | None:
    """GET a JSON document; None when the call failed (refused, reset, timed out).

    The timeout bounds connecting and each wait for data, like the connect/read timeouts of the
    HTTP clients Istio's services use, rather than the whole exchange.
    """
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
    try:
        async with session.get(url, headers=dict(headers), timeout=timeout) as response:
            raw = await response.read()
    except (aiohttp.ClientError, TimeoutError):
        return None
    return UpstreamReply(status=response.status, body=parse_json_object(raw))


def parse_json_object(raw: bytes) -> JsonObject | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def client_session(app: web.Application) -> AsyncIterator[None]:
    """One pooled HTTP client per process.

    trust_env makes it honour HTTP_PROXY/NO_PROXY (the runtime's no-capture mode points apps at
    their sidecar that way); the dummy cookie jar keeps one user's cookies out of the next
    request.
    """
    async with aiohttp.ClientSession(
        trust_env=True, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        app[CLIENT_KEY] = session
        yield


def product_id_from(request: web.Request) -> int:
    """The numeric product id in the path; a 400 with a JSON error otherwise."""
    raw = request.match_info["product_id"]
    try:
        return int(raw)
    except ValueError:
        body = json.dumps({"error": f"product id must be a number, got {raw!r}"})
        raise web.HTTPBadRequest(text=body, content_type="application/json") from None


def log_event(**fields: object) -> None:
    """One key=value line on stdout, flushed so that supervisors see it at once."""
    print(" ".join(f"{key}={_log_value(value)}" for key, value in fields.items()), flush=True)


def _log_value(value: object) -> str:
    text = str(value)
    needs_quotes = not text or any(c.isspace() or c in '"=' for c in text)
    return json.dumps(text) if needs_quotes else text


def request_logger(settings: ServiceSettings) -> Middleware:
    """Middleware that logs one line per request (method, path, status, duration)."""

    @web.middleware
    async def log_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            log_event(
                service=settings.service,
                version=settings.version,
                method=request.method,
                path=request.path_qs,
                status=status,
                duration_ms=f"{(time.monotonic() - started) * 1000:.1f}",
                request_id=request.headers.get("x-request-id", "-"),
                end_user=request.headers.get("end-user", "-"),
            )

    return log_request


def new_app(settings: ServiceSettings, *, with_client: bool) -> web.Application:
    """An aiohttp app with the settings, request logging and, if asked, an HTTP client."""
    app = web.Application(middlewares=[request_logger(settings)])
    app[SETTINGS_KEY] = settings
    if with_client:
        app.cleanup_ctx.append(client_session)
    return app


def serve(app: web.Application, settings: ServiceSettings, *, host: str, port: int) -> None:
    """Run until SIGINT/SIGTERM; logs `event=listening` once the socket is bound."""

    def announce(*_: object) -> None:
        log_event(
            event="listening",
            service=settings.service,
            version=settings.version,
            workload=settings.workload,
            address=f"{host}:{port}",
        )

    web.run_app(app, host=host, port=port, access_log=None, print=announce, shutdown_timeout=2.0)
