"""RequestAuthentication -> jwt_authn, and trellisd's JWKS fetching for jwksUri."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf.json_format import MessageToDict

from trellis.api.security import RequestAuthentication
from trellis.compiler.jwt import UNUSABLE_JWKS, JwtInputs, build_jwt_filter
from trellis.controlplane.jwks import fetch_for_apply, refresh_forever, refresh_once
from trellis.controlplane.state import MeshState
from trellis.errors import ValidationErrors
from trellis.model.snapshot import MeshConfig
from trellis.store.sqlite import SqliteStore

KEYS = '{"keys":[{"kty":"RSA","kid":"k1","e":"AQAB","n":"AQAB"}]}'


def ra(rules: list[dict[str, Any]], name: str = "jwt") -> RequestAuthentication:
    return RequestAuthentication.model_validate(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"jwtRules": rules},
        }
    )


def jwt_config(inputs: JwtInputs) -> dict[str, Any]:
    built = build_jwt_filter(inputs)
    assert built is not None
    config = jwt_pb2.JwtAuthentication()
    built.typed_config.Unpack(config)
    return MessageToDict(config, preserving_proto_field_name=True)


def test_no_jwt_rules_no_filter() -> None:
    assert build_jwt_filter(JwtInputs()) is None
    assert build_jwt_filter(JwtInputs(policies=(ra([]),))) is None


def test_missing_token_is_allowed_invalid_token_is_not() -> None:
    config = jwt_config(JwtInputs(policies=(ra([{"issuer": "a"}, {"issuer": "b"}]),)))
    assert config["rules"][0]["requires"] == {
        "requires_any": {
            "requirements": [
                {"provider_name": "ns[default]-ra[jwt]-rule[0]"},
                {"provider_name": "ns[default]-ra[jwt]-rule[1]"},
                {"allow_missing": {}},
            ]
        }
    }


def test_provider_stores_payload_under_its_issuer_and_strips_the_token() -> None:
    config = jwt_config(JwtInputs(policies=(ra([{"issuer": "iss", "jwks": KEYS}]),)))
    provider = config["providers"]["ns[default]-ra[jwt]-rule[0]"]
    assert provider["payload_in_metadata"] == "iss"
    assert "forward" not in provider  # false: the token does not reach the app
    assert provider["local_jwks"] == {"inline_string": KEYS}


def test_jwks_uri_uses_the_fetched_document_else_fails_closed() -> None:
    rule = {"issuer": "iss", "jwksUri": "https://idp/jwks"}
    fetched = jwt_config(JwtInputs(policies=(ra([rule]),), fetched_jwks={"https://idp/jwks": KEYS}))
    assert fetched["providers"]["ns[default]-ra[jwt]-rule[0]"]["local_jwks"] == {
        "inline_string": KEYS
    }
    missing = jwt_config(JwtInputs(policies=(ra([rule]),)))
    assert missing["providers"]["ns[default]-ra[jwt]-rule[0]"]["local_jwks"] == {
        "inline_string": UNUSABLE_JWKS
    }


def test_a_key_set_without_keys_fails_closed_instead_of_being_nacked() -> None:
    """Envoy refuses a listener whose inline JWKS has no valid key."""
    config = jwt_config(JwtInputs(policies=(ra([{"issuer": "iss", "jwks": '{"keys":[]}'}]),)))
    provider = config["providers"]["ns[default]-ra[jwt]-rule[0]"]
    assert provider["local_jwks"] == {"inline_string": UNUSABLE_JWKS}


def test_issuers_are_distinct_in_policy_order() -> None:
    inputs = JwtInputs(policies=(ra([{"issuer": "b"}, {"issuer": "a"}]), ra([{"issuer": "b"}])))
    assert inputs.issuers == ("b", "a")


# --- fetching ---------------------------------------------------------------------------


@pytest.fixture
async def idp() -> AsyncIterator[str]:
    """A loopback JWKS server: /jwks is a JWK Set, /html is not, /500 fails."""

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": [{"kty": "RSA", "kid": "k1"}]})

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500)

    app = web.Application()
    app.add_routes([web.get("/jwks", jwks), web.get("/html", html), web.get("/500", fail)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_fetch_for_apply_returns_new_documents(idp: str) -> None:
    policy = ra([{"issuer": "iss", "jwksUri": f"{idp}/jwks"}])
    fetched = await fetch_for_apply([policy], {})
    assert json.loads(fetched[f"{idp}/jwks"]) == {"keys": [{"kid": "k1", "kty": "RSA"}]}
    assert await fetch_for_apply([policy], fetched) == {}  # already held: not fetched again


async def test_unreachable_or_wrong_jwks_uri_names_the_field(idp: str) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/jwks"
    policy = ra(
        [
            {"issuer": "a", "jwksUri": dead},
            {"issuer": "b", "jwksUri": f"{idp}/html"},
            {"issuer": "c", "jwksUri": f"{idp}/500"},
        ],
        name="idp",
    )
    with pytest.raises(ValidationErrors) as caught:
        await fetch_for_apply([policy], {}, timeout=5)
    lines = [str(e) for e in caught.value.errors]
    assert lines[0].startswith("RequestAuthentication default/idp: spec.jwtRules[0].jwksUri: GET")
    assert "did not return JSON" in lines[1]
    assert "answered 500" in lines[2]


async def test_refresh_keeps_going_past_a_failed_uri(idp: str) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}/jwks"
    refreshed = await refresh_once([dead, f"{idp}/jwks"])
    assert list(refreshed) == [f"{idp}/jwks"]


def test_refreshed_jwks_push_only_when_changed(tmp_path: Path) -> None:
    pushes: list[str] = []
    store = SqliteStore(tmp_path / "config.db")
    state = MeshState(store=store, mesh=MeshConfig(), notify=lambda v, *_: pushes.append(v))
    try:
        policy = ra([{"issuer": "iss", "jwksUri": "https://idp/jwks"}])
        state.apply([policy], {"https://idp/jwks": '{"keys":[]}'})
        assert state.push.fetched_jwks == (("https://idp/jwks", '{"keys":[]}'),)
        before = len(pushes)
        state.update_jwks({"https://idp/jwks": '{"keys":[]}'})
        assert len(pushes) == before
        state.update_jwks({"https://idp/jwks": '{"keys":[{}]}'})
        assert len(pushes) == before + 1
        assert state.push.fetched_jwks == (("https://idp/jwks", '{"keys":[{}]}'),)
    finally:
        store.close()


class _Holder:
    """Stands in for MeshState: one stored RequestAuthentication, records updates."""

    def __init__(self, uri: str) -> None:
        self.policy = ra([{"issuer": "iss", "jwksUri": uri}])
        self.updates: list[dict[str, str]] = []

    def resources(self, kind: str | None = None, namespace: str | None = None) -> list[Any]:
        return [self.policy] if kind == "RequestAuthentication" else []

    def update_jwks(self, documents: Mapping[str, str]) -> None:
        self.updates.append(dict(documents))


async def test_refresh_loop_fetches_at_start_then_waits(idp: str) -> None:
    holder = _Holder(f"{idp}/jwks")
    task = asyncio.create_task(refresh_forever(holder, interval=3600))
    try:
        for _ in range(200):
            if holder.updates:
                break
            await asyncio.sleep(0.01)
        assert list(holder.updates[0]) == [f"{idp}/jwks"]
    finally:
        task.cancel()
