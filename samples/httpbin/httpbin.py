"""httpbin: echoes requests back as JSON, for Istio's security and traffic tasks.

`python samples/httpbin/httpbin.py [--port 8000]`. Responses follow go-httpbin, the image
Istio's httpbin sample runs: header values and query args are lists of strings, header names
are in canonical form (`X-B3-Traceid`), and `origin` is the first X-Forwarded-For entry or the
peer address. Standard library and aiohttp only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

DEFAULT_PORT = 8000
MAX_DELAY_S = 10.0
JsonObject = dict[str, Any]
RANDOM_KEY = web.AppKey("random", random.Random)


@dataclass
class Failures:
    """An instance told to fail: every `every`-th request is answered with `status`.

    `--fail-every 1` makes an instance that always fails (outlier-detection tasks); 2 makes a
    flaky one that fails every other request, so one retry always succeeds (retry tasks).
    """

    every: int = 0
    status: int = 503
    seen: int = 0

    def next_fails(self) -> bool:
        if self.every <= 0:
            return False
        self.seen += 1
        return self.seen % self.every == 0


FAILURES_KEY = web.AppKey("failures", Failures)


def canonical_header_name(name: str) -> str:
    """`x-b3-traceid` -> `X-B3-Traceid`: each dash-separated word capitalised, as Go does."""
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


def header_lists(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Request headers as canonical name -> all values in arrival order."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(canonical_header_name(name), []).append(value)
    return grouped


def query_lists(request: web.Request) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in request.query.items():
        grouped.setdefault(name, []).append(value)
    return grouped


def client_origin(request: web.Request) -> str:
    """The client address: first hop of X-Forwarded-For if a proxy set it, else the peer."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    first = forwarded.split(",")[0].strip()
    return first or request.remote or ""


def request_url(request: web.Request) -> str:
    scheme = request.headers.get("X-Forwarded-Proto") or request.scheme
    return f"{scheme}://{request.host}{request.path_qs}"


def echo_without_body(request: web.Request) -> JsonObject:
    return {
        "args": query_lists(request),
        "headers": header_lists(request.headers.items()),
        "method": request.method,
        "origin": client_origin(request),
        "url": request_url(request),
    }


async def echo_with_body(request: web.Request) -> JsonObject:
    """The echo plus the body: raw text, form fields and parsed JSON when it is JSON."""
    raw = await request.read()
    echo = echo_without_body(request)
    echo["data"] = raw.decode("utf-8", errors="replace")
    echo["files"] = {}
    echo["form"] = {}
    echo["json"] = None
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        echo["form"] = {name: form.getall(name) for name in form}
    elif request.content_type == "application/json":
        try:
            echo["json"] = json.loads(raw)
        except ValueError:
            echo["json"] = None
    return echo


def choose_status(spec: str, rng: random.Random) -> int:
    """One code out of `200`, `200,503` or weighted `200:0.9,503:0.1` (ValueError if bad)."""
    codes: list[int] = []
    weights: list[float] = []
    for part in spec.split(","):
        code, _, weight = part.partition(":")
        codes.append(int(code))
        weights.append(float(weight) if weight else 1.0)
    if any(not 100 <= code <= 599 for code in codes) or sum(weights) <= 0:
        raise ValueError(spec)
    return rng.choices(codes, weights=weights)[0] if len(codes) > 1 else codes[0]


def status_response(code: int) -> web.Response:
    """An empty response with the code, plus what clients expect with some codes."""
    headers: dict[str, str] = {}
    if 300 <= code < 400:
        headers["Location"] = "/redirect/1"
    if code == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Fake Realm"'
    text = "I'm a teapot!" if code == 418 else None
    return web.Response(status=code, headers=headers, text=text)


def bad_request(message: str) -> web.Response:
    body = {"status_code": 400, "error": "Bad Request", "detail": message}
    return web.json_response(body, status=400)


async def get_status(request: web.Request) -> web.Response:
    spec = request.match_info["codes"]
    try:
        code = choose_status(spec, request.app[RANDOM_KEY])
    except ValueError:
        return bad_request(f"invalid status code(s): {spec}")
    return status_response(code)


def delay_seconds(raw: str) -> float:
    """The delay asked for, capped at 10 s as httpbin does (ValueError if not a number >= 0)."""
    seconds = float(raw)
    if not seconds >= 0:  # also rejects NaN
        raise ValueError(raw)
    return min(seconds, MAX_DELAY_S)


async def get_delay(request: web.Request) -> web.Response:
    """Wait the given seconds (at most 10) before answering like /anything."""
    try:
        seconds = delay_seconds(request.match_info["seconds"])
    except ValueError:
        return bad_request("delay must be a number of seconds, at least 0")
    await asyncio.sleep(seconds)
    return web.json_response(await echo_with_body(request))


async def get_echo(request: web.Request) -> web.Response:
    return web.json_response(echo_without_body(request))


async def any_echo(request: web.Request) -> web.Response:
    return web.json_response(await echo_with_body(request))


async def get_headers(request: web.Request) -> web.Response:
    return web.json_response({"headers": header_lists(request.headers.items())})


async def get_ip(request: web.Request) -> web.Response:
    return web.json_response({"origin": client_origin(request)})


def instance_name() -> str:
    """The workload's name (Trellis sets it; a pod's HOSTNAME on Kubernetes)."""
    return (
        os.environ.get("TRELLIS_WORKLOAD_NAME")
        or os.environ.get("HOSTNAME")
        or socket.gethostname()
    )


async def get_hostname(request: web.Request) -> web.Response:
    """Which instance answered, as go-httpbin's /hostname: load-balancing tests need it."""
    return web.json_response({"hostname": instance_name()})


async def get_user_agent(request: web.Request) -> web.Response:
    return web.json_response({"user-agent": request.headers.get("User-Agent", "")})


async def get_index(request: web.Request) -> web.Response:
    items = "".join(
        f"<li><code>{path}</code> {what}</li>"
        for path, what in (
            ("/get", "the request's args, headers, origin and url"),
            ("/headers", "the request headers"),
            ("/ip", "the client address"),
            ("/user-agent", "the User-Agent header"),
            ("/hostname", "which instance answered"),
            ("/status/{codes}", "that status; several codes (200,503) pick one at random"),
            ("/delay/{seconds}", "answers after a delay of at most 10 s"),
            ("/anything", "echoes any method, its args, body and headers"),
        )
    )
    html = f"<!DOCTYPE html><html><head><title>httpbin</title></head><body><ul>{items}</ul>"
    return web.Response(text=html + "</body></html>", content_type="text/html")


@web.middleware
async def log_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One key=value line per request on stdout, flushed (Host shows mirrored copies)."""
    started = time.monotonic()
    status = 500
    try:
        failures = request.app[FAILURES_KEY]
        response = (
            web.Response(status=failures.status, text="injected failure\n")
            if failures.next_fails()
            else await handler(request)
        )
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed_ms = (time.monotonic() - started) * 1000
        print(
            f"service=httpbin method={request.method} path={json.dumps(request.path_qs)} "
            f"status={status} duration_ms={elapsed_ms:.1f} host={json.dumps(request.host)}",
            flush=True,
        )


def build_app(
    *, rng: random.Random | None = None, failures: Failures | None = None
) -> web.Application:
    app = web.Application(middlewares=[log_request])
    app[RANDOM_KEY] = rng or random.Random()
    app[FAILURES_KEY] = failures or Failures()
    routes = app.router
    routes.add_get("/", get_index)
    routes.add_get("/get", get_echo)
    routes.add_get("/headers", get_headers)
    routes.add_get("/ip", get_ip)
    routes.add_get("/user-agent", get_user_agent)
    routes.add_get("/hostname", get_hostname)
    routes.add_route("*", "/status/{codes}", get_status)
    routes.add_route("*", "/delay/{seconds}", get_delay)
    for method in ("post", "put", "patch", "delete"):
        routes.add_route(method.upper(), f"/{method}", any_echo)
    routes.add_route("*", "/anything", any_echo)
    routes.add_route("*", "/anything/{tail:.*}", any_echo)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="httpbin.py", description="HTTP echo service.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--host",
        # Set by Trellis without capture (--capture=proxy): the app's own loopback address.
        default=os.environ.get("TRELLIS_APP_HOST") or "0.0.0.0",
        help="address to bind (default $TRELLIS_APP_HOST, else 0.0.0.0)",
    )
    parser.add_argument(
        "--fail-every",
        type=int,
        default=0,
        metavar="N",
        help="answer every N-th request with --fail-status (1 = all; default 0 = never)",
    )
    parser.add_argument("--fail-status", type=int, default=503, metavar="CODE")
    args = parser.parse_args(argv)

    def announce(*_: object) -> None:
        print(f"event=listening service=httpbin address={args.host}:{args.port}", flush=True)

    web.run_app(
        build_app(failures=Failures(every=args.fail_every, status=args.fail_status)),
        host=args.host,
        port=args.port,
        access_log=None,
        print=announce,
        shutdown_timeout=2.0,
    )


if __name__ == "__main__":
    main()
