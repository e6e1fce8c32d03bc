"""RequestAuthentication with a jwksUri on Bookinfo's productpage, through the ingress gateway.

trellisd fetches the JWKS (served here on loopback) and pushes it inline; an AuthorizationPolicy
requiring a request principal turns "no token" into 403. An unreachable jwksUri is refused at
apply and changes nothing.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.meshctl import Mesh, eventually, free_tcp_port

pytestmark = pytest.mark.e2e

ISSUER = "https://idp.trellis.test"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CONSECUTIVE = 6


def _jwks() -> bytes:
    key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    return json.dumps({"keys": [{**key, "kid": "k1", "alg": "RS256"}]}).encode()


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = _jwks()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def jwks_uri() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def token(key: rsa.RSAPrivateKey = KEY, **claims: Any) -> str:
    payload = {"iss": ISSUER, "sub": "alice", "exp": int(time.time()) + 3600, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


def request_authentication(uri: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: productpage-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: productpage}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: {uri}
"""


REQUIRE_TOKEN = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-require-jwt, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  rules:
  - from:
    - source: {requestPrincipals: ["*"]}
"""


def _steady(mesh: Mesh, headers: dict[str, str], status: int) -> bool:
    return all(mesh.http("/productpage", headers)[0] == status for _ in range(CONSECUTIVE))


@pytest.fixture
def cleanup(bookinfo: Mesh) -> Iterator[list[str]]:
    applied: list[str] = []
    try:
        yield applied
    finally:
        for text in reversed(applied):
            bookinfo.cli("delete", "-f", "-", input=text, check=False)
        eventually(lambda: _steady(bookinfo, {}, 200), what="productpage to open again")


def test_jwks_uri_is_fetched_and_tokens_are_checked(
    bookinfo: Mesh, jwks_uri: str, cleanup: list[str]
) -> None:
    for text in (request_authentication(jwks_uri), REQUIRE_TOKEN):
        bookinfo.apply(text)
        cleanup.append(text)
    good = {"authorization": f"Bearer {token()}"}
    forged = {"authorization": f"Bearer {token(OTHER_KEY)}"}
    eventually(lambda: _steady(bookinfo, {}, 403), what="a token to be required")
    denial = (403, "RBAC: access denied")
    eventually(lambda: bookinfo.http("/productpage") == denial, what="RBAC's denial")
    eventually(lambda: _steady(bookinfo, good, 200), what="a valid token to pass")
    eventually(lambda: _steady(bookinfo, forged, 401), what="a forged token to be refused")


def test_unreachable_jwks_uri_is_refused_and_changes_nothing(bookinfo: Mesh) -> None:
    uri = f"http://127.0.0.1:{free_tcp_port()}/jwks"
    result = bookinfo.cli("apply", "-f", "-", input=request_authentication(uri), check=False)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "RequestAuthentication default/productpage-jwt: spec.jwtRules[0].jwksUri" in message
    assert uri in message
    listed = bookinfo.cli("get", "requestauthentication", "-A", check=False)
    assert "productpage-jwt" not in listed.stdout
