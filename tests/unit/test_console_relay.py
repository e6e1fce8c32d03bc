"""The console in front of a real trellisd (on its unix socket): trellisd's refusals come back as
4xx with trellisd's message (never 502), every /api/* miss is a JSON 404, names are URL-encoded
on the way to trellisd, and the OpenAPI document lists what the server answers.

Regressions for what tests/fuzz/test_api_schemathesis.py found (2026-11-25)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from trellis.console.auth import Role, issue_token, load_or_create_keys
from trellis.console.context import ConsoleSettings
from trellis.console.mesh_client import MeshClient
from trellis.console.openapi import openapi_document
from trellis.console.server import build_app, errors_as_json
from trellis.controlplane.http_api import build_app as trellisd_app
from trellis.controlplane.state import MeshState
from trellis.errors import BadRequest, NotFound
from trellis.model.snapshot import MeshConfig
from trellis.runtime.layout import Layout
from trellis.store.sqlite import SqliteStore

Client = TestClient[web.Request, web.Application]
SEED = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec: {host: reviews}
"""


@dataclass(frozen=True)
class Mesh:
    state_dir: Path
    client: Client
    headers: dict[str, str]


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    """trellisd over a temporary store on its unix socket, and the console in front of it."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    store = SqliteStore(state_dir / "config.db")
    state = MeshState(store=store, mesh=MeshConfig(), notify=lambda *_: None)
    runner = web.AppRunner(trellisd_app(state, lambda: []))
    await runner.setup()
    await web.UnixSite(runner, str(Layout(state_dir).trellisd_socket)).start()
    settings = ConsoleSettings(
        state_dir=state_dir, allowed_roles=frozenset(Role), scrape_interval=3600
    )
    client: Client = TestClient(TestServer(build_app(settings)))
    await client.start_server()
    keys = load_or_create_keys(state_dir)
    bearer = issue_token(keys, Role.CLUSTER_ADMIN, now=time.time(), ttl=3600)
    try:
        await MeshClient(Layout(state_dir)).apply(SEED, "default")
        yield Mesh(state_dir, client, {"Authorization": f"Bearer {bearer}"})
    finally:
        await client.close()
        await runner.cleanup()
        store.close()


async def _json_error(response: object, status: int) -> str:
    from aiohttp import ClientResponse

    assert isinstance(response, ClientResponse)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    message = (await response.json())["error"]
    assert isinstance(message, str) and message
    return message


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_a_word_that_is_no_istio_kind_is_404_not_502(mesh: Mesh, method: str) -> None:
    for kind in ("apps", "Service", "svc"):
        path = f"/api/namespaces/default/istio/{kind}/reviews"
        response = await mesh.client.request(method, path, headers=mesh.headers, data=SEED)
        assert "Istio config kind" in await _json_error(response, 404)


async def test_a_real_kind_still_answers(mesh: Mesh) -> None:
    path = "/api/namespaces/default/istio/DestinationRule/reviews"
    response = await mesh.client.get(path, headers=mesh.headers)
    assert response.status == 200, await response.text()


async def test_config_dump_of_an_unknown_pod_is_404(mesh: Mesh) -> None:
    for pod in ("nope", "a%2Fb", "x%20y"):
        path = f"/api/namespaces/default/pods/{pod}/config_dump"
        response = await mesh.client.get(path, headers=mesh.headers)
        assert "no pod" in await _json_error(response, 404)


@pytest.mark.parametrize(
    "path",
    [
        "/api/no-such-thing",
        "/api/namespaces/default/work%0Aloads/x/metrics",
        "/api/namespaces/default/%0A/x/traces",
        "/api/namespaces/default/pods/a%0A/config_dump/more",
    ],
)
async def test_every_api_miss_is_a_json_404(mesh: Mesh, path: str) -> None:
    await _json_error(await mesh.client.get(path, headers=mesh.headers), 404)


async def test_trellisd_refusal_is_bad_request_with_its_message(mesh: Mesh) -> None:
    with pytest.raises(BadRequest) as refused:
        await MeshClient(Layout(mesh.state_dir)).resources(kind="bogus")
    assert refused.value.status == 400
    assert "unknown resource type 'bogus'" in str(refused.value)


async def test_console_relays_trellisd_4xx_as_4xx(mesh: Mesh) -> None:
    """A handler that passes a trellisd refusal up answers trellisd's status and message."""
    client = MeshClient(Layout(mesh.state_dir))

    async def listing(_: web.Request) -> web.Response:
        return web.json_response(await client.resources(kind="bogus"))

    app = web.Application(middlewares=[errors_as_json])
    app.router.add_get("/api/listing", listing)
    relay: Client = TestClient(TestServer(app))
    await relay.start_server()
    try:
        assert "bogus" in await _json_error(await relay.get("/api/listing"), 400)
    finally:
        await relay.close()


async def test_names_are_url_encoded_on_the_way_to_trellisd(mesh: Mesh) -> None:
    client = MeshClient(Layout(mesh.state_dir))
    for odd in ("a/b", "a b", "a?kind=x", "a#b", "a%2Fb"):
        with pytest.raises(NotFound):
            await client.proxy_config(odd, "reviews", "listeners")
        assert await client.resources(namespace=odd) == []
    assert len(await client.resources(kind="DestinationRule", namespace="default")) == 1
    assert await client.resources(kind="DestinationRule", namespace="default&x=1") == []


def test_openapi_lists_every_status_the_server_answers() -> None:
    paths = openapi_document()["paths"]
    login = paths["/api/authenticate"]["post"]["responses"]
    assert {"200", "400", "401", "403"} <= set(login)
    for method, op in paths["/api/namespaces/{ns}/istio/{kind}/{name}"].items():
        assert {"400", "401", "403", "404", "502"} <= set(op["responses"])
        assert ("409" in op["responses"]) == (method != "get")
        kinds = next(p for p in op["parameters"] if p["name"] == "kind")["schema"]["enum"]
        assert "VirtualService" in kinds and "apps" not in kinds and "Service" not in kinds
    metrics = paths["/api/namespaces/{ns}/{kind}/{name}/metrics"]["get"]["parameters"]
    assert next(p for p in metrics if p["name"] == "kind")["schema"]["enum"] == [
        "workloads",
        "services",
        "apps",
    ]
