"""RequestAuthentication + AuthorizationPolicy through a real Envoy with Trellis's inbound filters.

Tokens are minted with PyJWT (RS256, a key generated per module); the JWKS is inline here,
the jwksUri path (fetched by trellisd) is covered in test_jwks_fetch.py.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.envoy_rbac import RunningEnvoy, echo_app, envoy_with_filters
from trellis.api.kinds import parse_documents
from trellis.compiler.inbound_policy import build_inbound_policy_filters
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.snapshot import MeshSnapshot

pytestmark = pytest.mark.e2e

ISSUER = "testing@secure.trellis.dev"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PROXY = Proxy(ProxyType.SIDECAR, "127.0.0.1", "httpbin-v1", "default", {"app": "httpbin"})


def jwks() -> str:
    key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    return json.dumps({"keys": [{**key, "kid": "k1", "alg": "RS256", "use": "sig"}]})


def token(key: rsa.RSAPrivateKey = KEY, **claims: Any) -> str:
    payload = {"iss": ISSUER, "sub": "alice", "exp": int(time.time()) + 3600, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def config(jwt_rule: dict[str, Any], *policies: dict[str, Any]) -> str:
    docs = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "httpbin"}},
                "jwtRules": [{"issuer": ISSUER, "jwks": jwks(), **jwt_rule}],
            },
        },
        *(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": f"authz-{i}", "namespace": "default"},
                "spec": spec,
            }
            for i, spec in enumerate(policies)
        ),
    ]
    return yaml.safe_dump_all(docs)


REQUIRE_TOKEN = {
    "selector": {"matchLabels": {"app": "httpbin"}},
    "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}],
}


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with echo_app() as port:
        yield port


def start(text: str, app_port: int, tmp_path: Path) -> Any:
    resources = tuple(parse_documents(text))
    push = PushContext.build(MeshSnapshot(version=1, resources=resources))
    filters = build_inbound_policy_filters(PROXY, push)
    return envoy_with_filters(filters.http, app_port, tmp_path)


def statuses(envoy: RunningEnvoy, *header_sets: dict[str, str]) -> list[int]:
    return [envoy.request("GET", "/headers", h).status for h in header_sets]


def test_valid_token_passes_invalid_is_401_missing_passes(app_port: int, tmp_path: Path) -> None:
    with start(config({}), app_port, tmp_path) as envoy:
        forged = token(OTHER_KEY)
        expired = token(exp=int(time.time()) - 600)
        assert statuses(envoy, bearer(token()), bearer(forged), bearer(expired), {}) == [
            200,
            401,
            401,
            200,
        ]


def test_policy_requiring_request_principals_denies_missing_token(
    app_port: int, tmp_path: Path
) -> None:
    with start(config({}, REQUIRE_TOKEN), app_port, tmp_path) as envoy:
        assert statuses(envoy, bearer(token()), bearer("not.a.jwt"), {}) == [200, 401, 403]
        reply = envoy.request("GET", "/headers")
        assert reply.body == "RBAC: access denied"


def test_exact_request_principal_and_claim_condition(app_port: int, tmp_path: Path) -> None:
    policy = {
        "rules": [
            {
                "from": [{"source": {"requestPrincipals": [f"{ISSUER}/alice"]}}],
                "when": [{"key": "request.auth.claims[groups]", "values": ["admins"]}],
            }
        ]
    }
    with start(config({}, policy), app_port, tmp_path) as envoy:
        admin = token(groups=["dev", "admins"])
        dev = token(groups=["dev"])
        bob = token(sub="bob", groups=["admins"])
        assert statuses(envoy, bearer(admin), bearer(dev), bearer(bob)) == [200, 403, 403]


def test_from_headers_output_payload_and_forward_original_token(
    app_port: int, tmp_path: Path
) -> None:
    rule = {
        "fromHeaders": [{"name": "x-jwt", "prefix": "Token "}],
        "outputPayloadToHeader": "x-jwt-payload",
        "forwardOriginalToken": True,
    }
    with start(config(rule, REQUIRE_TOKEN), app_port, tmp_path) as envoy:
        value = token()
        reply = envoy.request("GET", "/headers", {"x-jwt": f"Token {value}"})
        assert reply.status == 200, reply.body
        seen = json.loads(reply.body)
        assert seen["x-jwt"] == f"Token {value}"
        padded = seen["x-jwt-payload"] + "=" * (-len(seen["x-jwt-payload"]) % 4)
        assert json.loads(base64.urlsafe_b64decode(padded))["sub"] == "alice"
        # The default location is no longer read: a bearer token there is not a token.
        assert statuses(envoy, bearer(value)) == [403]


def test_token_from_a_query_parameter(app_port: int, tmp_path: Path) -> None:
    with start(config({"fromParams": ["my_token"]}, REQUIRE_TOKEN), app_port, tmp_path) as envoy:
        assert envoy.request("GET", f"/get?my_token={token()}").status == 200
        assert envoy.request("GET", f"/get?my_token={token(OTHER_KEY)}").status == 401
        assert envoy.request("GET", "/get").status == 403


def test_token_is_stripped_unless_forwarded(app_port: int, tmp_path: Path) -> None:
    with start(config({}), app_port, tmp_path) as envoy:
        reply = envoy.request("GET", "/headers", bearer(token()))
        assert reply.status == 200
        assert "authorization" not in json.loads(reply.body)


def test_audiences_must_match(app_port: int, tmp_path: Path) -> None:
    """A well-signed token for another audience is refused with jwt_authn's 403 (as in Istio,
    whose proxy runs the same filter), not 401."""
    with start(config({"audiences": ["httpbin"]}), app_port, tmp_path) as envoy:
        good, bad = token(aud="httpbin"), token(aud="other")
        assert statuses(envoy, bearer(good), bearer(bad)) == [200, 403]
        assert envoy.request("GET", "/", bearer(bad)).body == "Audiences in Jwt are not allowed"
