"""The console's HTTP edge in-process on a real socket: auth on every call, roles, cookies,
tokens never in URLs, static files and /vendor without path traversal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from trellis.console.auth import Role, issue_token, load_or_create_keys
from trellis.console.context import ConsoleSettings
from trellis.console.server import build_app

Client = TestClient[web.Request, web.Application]


@dataclass
class Clock:
    now: float = 1_800_000_000.0
    calls: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now


def make_web_root(root: Path) -> Path:
    web = root / "web"
    (web / "node_modules" / "cytoscape" / "dist").mkdir(parents=True)
    (web / "node_modules" / "left-pad").mkdir(parents=True)
    (web / "package.json").write_text(json.dumps({"dependencies": {"cytoscape": "3.34.4"}}))
    (web / "index.html").write_text("<!doctype html><title>Trellis</title>")
    (web / "node_modules" / "cytoscape" / "dist" / "cytoscape.esm.js").write_text("export {}")
    (web / "node_modules" / "left-pad" / "index.js").write_text("secret")
    return web


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _client(tmp_path: Path, clock: Clock, roles: frozenset[Role]) -> Client:
    settings = ConsoleSettings(
        state_dir=tmp_path / "state",
        allowed_roles=roles,
        session_ttl=60,
        web_root=make_web_root(tmp_path),
        clock=clock,
        scrape_interval=60,
    )
    client = TestClient(TestServer(build_app(settings)))
    await client.start_server()
    return client


@pytest.fixture
async def client(tmp_path: Path, clock: Clock) -> AsyncIterator[Client]:
    c = await _client(tmp_path, clock, frozenset({Role.VIEW}))
    yield c
    await c.close()


def token(tmp_path: Path, role: Role, clock: Clock, ttl: float = 3600) -> str:
    return issue_token(load_or_create_keys(tmp_path / "state"), role, now=clock.now, ttl=ttl)


async def test_api_without_credentials_is_401(client: Client) -> None:
    response = await client.get("/api/namespaces")
    assert response.status == 401
    assert "error" in await response.json()


async def test_encoded_or_dotted_api_paths_are_still_guarded(client: Client) -> None:
    for path in ("/%61pi/namespaces", "/vendor/../api/namespaces", "/api/./namespaces"):
        response = await client.get(path)
        assert response.status in (401, 404), path
        assert "default" not in await response.text()


async def test_public_endpoints_need_no_login(client: Client) -> None:
    info = await (await client.get("/api/auth/info")).json()
    assert info == {"strategy": "token", "sessionInfo": {}}
    spec = await (await client.get("/api/openapi.json")).json()
    assert "/api/namespaces/graph" in spec["paths"]


async def test_token_in_url_is_refused(client: Client, tmp_path: Path, clock: Clock) -> None:
    t = token(tmp_path, Role.CLUSTER_ADMIN, clock)
    response = await client.get("/api/namespaces", params={"token": t})
    assert response.status == 400


async def test_authenticate_sets_encrypted_httponly_strict_cookie(
    client: Client, tmp_path: Path, clock: Clock
) -> None:
    response = await client.post(
        "/api/authenticate", data={"token": token(tmp_path, Role.CLUSTER_ADMIN, clock)}
    )
    assert response.status == 200
    body = await response.json()
    assert body["role"] == "cluster-admin" and body["expiresOn"]
    header = response.headers["Set-Cookie"]
    assert "trellis-session=" in header and "HttpOnly" in header
    assert "SameSite=Strict" in header and "Path=/" in header
    info = await (await client.get("/api/auth/info")).json()
    assert info["sessionInfo"]["role"] == "cluster-admin"


async def test_bad_token_is_401_and_ungranted_role_is_403(tmp_path: Path, clock: Clock) -> None:
    c = await _client(tmp_path, clock, frozenset())
    try:
        assert (await c.post("/api/authenticate", data={"token": "nope"})).status == 401
        view = token(tmp_path, Role.VIEW, clock)
        assert (await c.post("/api/authenticate", data={"token": view})).status == 403
        bearer = {"Authorization": f"Bearer {view}"}
        assert (await c.get("/api/namespaces", headers=bearer)).status == 403
    finally:
        await c.close()


async def test_view_may_not_write_config(client: Client, tmp_path: Path, clock: Clock) -> None:
    bearer = {"Authorization": f"Bearer {token(tmp_path, Role.VIEW, clock)}"}
    for method, path in (
        ("POST", "/api/namespaces/default/istio"),
        ("PUT", "/api/namespaces/default/istio/VirtualService/reviews"),
        ("DELETE", "/api/namespaces/default/istio/VirtualService/reviews"),
    ):
        response = await client.request(method, path, headers=bearer, data="kind: X")
        assert response.status == 403, (method, path)
    # validating writes nothing: view may do it (no trellisd here, so it cannot succeed)
    response = await client.post("/api/istio/validate", headers=bearer, data="kind: X")
    assert response.status not in (401, 403)


async def test_session_expires(client: Client, tmp_path: Path, clock: Clock) -> None:
    response = await client.post(
        "/api/authenticate", data={"token": token(tmp_path, Role.VIEW, clock)}
    )
    assert response.status == 200
    assert (await client.get("/api/nothing-here")).status == 404  # authenticated, no such API
    clock.now += 61
    assert (await client.get("/api/nothing-here")).status == 401


async def test_logout_clears_the_cookie(client: Client, tmp_path: Path, clock: Clock) -> None:
    await client.post("/api/authenticate", data={"token": token(tmp_path, Role.VIEW, clock)})
    assert (await client.get("/api/logout")).status == 204
    assert (await client.get("/api/nothing-here")).status == 401


async def test_static_ui_and_vendor_packages(client: Client) -> None:
    index = await client.get("/")
    assert index.status == 200 and "Trellis" in await index.text()
    assert (await client.get("/vendor/cytoscape/dist/cytoscape.esm.js")).status == 200
    assert (await client.get("/vendor/left-pad/index.js")).status == 404  # not a dependency
    for path in (
        "/vendor/cytoscape/../left-pad/index.js",
        "/vendor/cytoscape/%2e%2e/left-pad/index.js",
        "/node_modules/left-pad/index.js",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
    ):
        response = await client.get(path)
        assert response.status == 404 or "secret" not in await response.text(), path
