"""A test double of the console API (docs/console-api.md) serving the real web UI files.

Only for the web UI's own browser tests and bench/console_load.py: the UI is real, the answers
are canned (tests/console/canned.py). The real console server is driven by test_console_real.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.console import canned

WEB_DIR = Path(__file__).resolve().parents[2] / "src" / "trellis" / "console" / "web"
TOKENS = {"admin-token": "cluster-admin", "view-token": "view"}
COOKIE = "trellis-session"
KNOWN_HOSTS = set(canned.SERVICES)
INITIAL_CONFIG: dict[tuple[str, str], dict[str, Any]] = {
    ("VirtualService", "svc-01"): {
        "hosts": ["svc-01"],
        "http": [{"route": [{"destination": {"host": "svc-01"}}]}],
    },
    ("DestinationRule", "svc-01"): {
        "host": "svc-01",
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
    },
}


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class FakeConsole:
    """Sessions and Istio config kept in memory; same auth rules as the real server."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}
        self.config: dict[tuple[str, str], dict[str, Any]] = dict(INITIAL_CONFIG)

    def role(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return TOKENS.get(auth[7:])
        return self.sessions.get(request.cookies.get(COOKIE, ""))

    @web.middleware
    async def auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        open_paths = ("/api/auth/info", "/api/authenticate")
        if request.path.startswith("/api/") and request.path not in open_paths:
            role = self.role(request)
            if role is None:
                return _error(401, "unauthorized")
            if (
                request.method in ("POST", "PUT", "DELETE")
                and request.path != "/api/istio/validate"
                and role == "view"
            ):
                return _error(403, "role view may not change config")
        response: web.StreamResponse = await handler(request)
        return response

    async def auth_info(self, request: web.Request) -> web.Response:
        role = self.role(request)
        info = {"username": "token-user", "role": role} if role else {}
        return web.json_response({"strategy": "token", "sessionInfo": info})

    async def authenticate(self, request: web.Request) -> web.Response:
        role = TOKENS.get(str((await request.post()).get("token", "")))
        if role is None:
            return _error(401, "invalid token")
        sid = secrets.token_urlsafe(16)
        self.sessions[sid] = role
        resp = web.json_response(
            {"username": "token-user", "role": role, "expiresOn": "2099-01-01T00:00:00Z"}
        )
        resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        resp = web.Response(status=204)
        resp.del_cookie(COOKIE, path="/")
        return resp

    def _resource(self, kind: str, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": canned.NAMESPACE},
            "spec": self.config[(kind, name)],
        }

    async def config_list(self, request: web.Request) -> web.Response:
        resources = [
            {
                "kind": k,
                "apiVersion": "networking.istio.io/v1",
                "namespace": canned.NAMESPACE,
                "name": n,
                "validation": validate(self._resource(k, n)),
            }
            for k, n in sorted(self.config)
        ]
        return web.json_response({"resources": resources})

    async def config_get(self, request: web.Request) -> web.Response:
        key = (request.match_info["kind"], request.match_info["name"])
        if key not in self.config:
            return _error(404, "not found")
        res = self._resource(*key)
        return web.json_response(
            {
                "resource": res,
                "yaml": yaml.safe_dump(res, sort_keys=False),
                "validation": validate(res),
            }
        )

    async def config_validate(self, request: web.Request) -> web.Response:
        return web.json_response(validate_text(await request.text()))

    async def config_write(self, request: web.Request) -> web.Response:
        result = validate_text(await request.text())
        if not result["valid"]:
            return _error(400, "invalid config", checks=result["checks"])
        doc = yaml.safe_load(await request.text())
        self.config[(doc["kind"], doc["metadata"]["name"])] = doc.get("spec", {})
        return web.json_response({"ok": True})

    async def config_delete(self, request: web.Request) -> web.Response:
        self.config.pop((request.match_info["kind"], request.match_info["name"]), None)
        return web.Response(status=204)


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Unknown destination hosts are IST0101 errors, like `trellis analyze` reports them."""
    checks = []
    for i, http in enumerate((resource.get("spec") or {}).get("http") or []):
        for j, route in enumerate(http.get("route") or []):
            host = (route.get("destination") or {}).get("host", "")
            if host not in KNOWN_HOSTS:
                checks.append(
                    {
                        "code": "IST0101",
                        "severity": "error",
                        "resource": resource.get("kind"),
                        "message": f"Referenced host not found: {host!r}",
                        "path": f"spec.http[{i}].route[{j}].destination.host",
                    }
                )
    return {"valid": not checks, "checks": checks}


def validate_text(text: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return {
            "valid": False,
            "checks": [{"code": "YAML", "severity": "Error", "message": str(e), "path": ""}],
        }
    if not isinstance(doc, dict):
        return {
            "valid": False,
            "checks": [
                {"code": "YAML", "severity": "Error", "message": "not a mapping", "path": ""}
            ],
        }
    return validate(doc)


def _canned(producer: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(producer(request))

    return handler


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def _vendor(request: web.Request) -> web.StreamResponse:
    package, rest = request.match_info["package"], request.match_info["path"]
    allowed = json.loads((WEB_DIR / "package.json").read_text())["dependencies"]
    root = (WEB_DIR / "node_modules" / package).resolve()
    target = (root / rest).resolve()
    if package not in allowed or not target.is_relative_to(root) or not target.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(target)


def build_fixture_app() -> web.Application:
    fake = FakeConsole()
    app = web.Application(middlewares=[fake.auth])
    q = lambda r, k, d: r.query.get(k, d)  # noqa: E731
    mi = lambda r, k: r.match_info[k]  # noqa: E731
    ns = "/api/namespaces/{ns}"
    app.router.add_get("/", _index)
    app.router.add_static("/js/", WEB_DIR / "js")
    app.router.add_static("/css/", WEB_DIR / "css")
    app.router.add_get("/vendor/{package}/{path:.+}", _vendor)
    app.router.add_get("/api/auth/info", fake.auth_info)
    app.router.add_post("/api/authenticate", fake.authenticate)
    app.router.add_get("/api/logout", fake.logout)
    app.router.add_get(
        "/api/namespaces", _canned(lambda r: [{"name": canned.NAMESPACE}, {"name": "istio-system"}])
    )
    app.router.add_get(
        "/api/namespaces/graph",
        _canned(lambda r: canned.graph(q(r, "graphType", "versionedApp"), q(r, "duration", "60s"))),
    )
    app.router.add_get(
        ns + "/workloads",
        _canned(
            lambda r: canned.workloads() if mi(r, "ns") == canned.NAMESPACE else {"workloads": []}
        ),
    )
    app.router.add_get(
        ns + "/services",
        _canned(
            lambda r: canned.services() if mi(r, "ns") == canned.NAMESPACE else {"services": []}
        ),
    )
    app.router.add_get(
        ns + "/apps",
        _canned(
            lambda r: canned.apps() if mi(r, "ns") == canned.NAMESPACE else {"applications": []}
        ),
    )
    app.router.add_get(ns + "/workloads/{name}", _canned(lambda r: canned.workload(mi(r, "name"))))
    app.router.add_get(ns + "/services/{name}", _canned(lambda r: canned.service(mi(r, "name"))))
    app.router.add_get(ns + "/apps/{name}", _canned(lambda r: canned.app(mi(r, "name"))))
    app.router.add_get(ns + "/{kind}/{name}/metrics", _canned(lambda r: canned.metrics()))
    app.router.add_get(ns + "/pods/{pod}/config_dump", _canned(lambda r: canned.config_dump()))
    app.router.add_get(
        ns + "/pods/{pod}/logs", _canned(lambda r: canned.logs(q(r, "container", "app")))
    )
    app.router.add_get(
        ns + "/workloads/{name}/traces", _canned(lambda r: canned.traces(mi(r, "name")))
    )
    app.router.add_get("/api/istio/config", fake.config_list)
    app.router.add_post("/api/istio/validate", fake.config_validate)
    app.router.add_get(ns + "/istio/{kind}/{name}", fake.config_get)
    app.router.add_post(ns + "/istio", fake.config_write)
    app.router.add_put(ns + "/istio/{kind}/{name}", fake.config_write)
    app.router.add_delete(ns + "/istio/{kind}/{name}", fake.config_delete)
    return app


class AppThread:
    """Runs an aiohttp app on a free loopback port in a thread, so sync Playwright can drive it."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner = web.AppRunner(app, access_log=None)
        self.url = ""

    def __enter__(self) -> AppThread:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(sock), self._loop).result(timeout=30)
        return self

    async def _start(self, sock: socket.socket) -> None:
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
