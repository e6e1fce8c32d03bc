"""AuthorizationPolicy on Bookinfo, end to end through real Envoys (Istio's HTTP authz task).

Every test removes its policies again (the mesh is shared) and waits until Bookinfo answers
as before, so the tests that run after it see an open mesh. A listener change applies to new
connections; pooled ones drain after their next response, so each wait asks for several
consecutive answers that show the policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.meshctl import Mesh, Request, eventually, mesh_http

pytestmark = pytest.mark.e2e

DENY_ALL = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: default}
spec: {}
"""

PRODUCTPAGE_GET = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  action: ALLOW
  rules:
  - to:
    - operation: {methods: [GET]}
"""

DETAILS_DENY_PATH = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: details-no-internal, namespace: default}
spec:
  selector: {matchLabels: {app: details}}
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/internal/*", "*.bak"]}
"""

PRODUCTPAGE_HEADER_DENY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-no-blocked, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  action: DENY
  rules:
  - when:
    - key: request.headers[x-block]
      values: ["yes", "always*"]
"""


@pytest.fixture
def policies(bookinfo: Mesh) -> Iterator[list[str]]:
    """Documents a test applies; deleted afterwards, and the mesh checked to be open again."""
    applied: list[str] = []
    try:
        yield applied
    finally:
        for text in reversed(applied):
            bookinfo.cli("delete", "-f", "-", input=text, check=False)
        _until(bookinfo, "/productpage", 200, what="the mesh to reopen")


def _status(mesh: Mesh, path: str, headers: dict[str, str] | None = None) -> int:
    return mesh.http(path, headers)[0]


def _until(
    mesh: Mesh, path: str, status: int, headers: dict[str, str] | None = None, what: str = ""
) -> None:
    """Until CONSECUTIVE requests in a row answer `status`."""
    eventually(
        lambda: all(_status(mesh, path, headers) == status for _ in range(CONSECUTIVE)),
        what=what or f"{path} to answer {status}",
    )


CONSECUTIVE = 6


def _apply(mesh: Mesh, policies: list[str], text: str) -> None:
    mesh.apply(text)
    policies.append(text)


def test_deny_all_answers_403_rbac_access_denied(bookinfo: Mesh, policies: list[str]) -> None:
    _apply(bookinfo, policies, DENY_ALL)
    _until(bookinfo, "/productpage", 403, what="deny-all to apply")
    denial = (403, "RBAC: access denied")
    eventually(lambda: bookinfo.http("/productpage") == denial, what="Envoy's RBAC denial")


def test_allow_get_on_productpage_but_not_post(bookinfo: Mesh, policies: list[str]) -> None:
    _apply(bookinfo, policies, DENY_ALL)
    _apply(bookinfo, policies, PRODUCTPAGE_GET)
    _until(bookinfo, "/productpage", 200, what="GET to be allowed")
    _until(bookinfo, "/api/v1/products/0", 403, what="details to deny productpage")
    # productpage may call its backends, but they still deny everything: details' 403 relayed.
    post = Request(url="http://productpage:9080/productpage", method="POST", body="x")

    def post_denied() -> bool:
        reply = mesh_http(bookinfo, "productpage-v1", [post])[0]
        return (reply.status, reply.body) == (403, "RBAC: access denied")

    eventually(post_denied, what="POST to be denied")


def test_deny_on_path_prefix_and_suffix(bookinfo: Mesh, policies: list[str]) -> None:
    _apply(bookinfo, policies, DETAILS_DENY_PATH)

    def statuses() -> list[int]:
        urls = ["/internal/x", "/details/0.bak", "/details/0", "/internalx"]
        requests = [Request(url=f"http://details:9080{u}") for u in urls]
        return [r.status for r in mesh_http(bookinfo, "productpage-v1", requests)]

    # Without the policy details answers 404, 400 (a bad id), 200 and 404.
    expected = [403, 403, 200, 404]
    eventually(lambda: statuses() == expected == statuses(), what="the path DENY to apply")


def test_when_header_condition_denies_only_matching_requests(
    bookinfo: Mesh, policies: list[str]
) -> None:
    _apply(bookinfo, policies, PRODUCTPAGE_HEADER_DENY)
    blocked = {"x-block": "yes"}
    _until(bookinfo, "/productpage", 403, blocked, what="the header DENY to apply")
    _until(bookinfo, "/productpage", 403, {"x-block": "always-please"})
    _until(bookinfo, "/productpage", 200, {"x-block": "no"})
    _until(bookinfo, "/productpage", 200)


def _viewer(name: str, app: str, principal: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  action: ALLOW
  rules:
  - from:
    - source: {{principals: ["{principal}"]}}
    to:
    - operation: {{methods: [GET]}}
"""


GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
PRODUCTPAGE = "cluster.local/ns/default/sa/bookinfo-productpage"
REVIEWS = "cluster.local/ns/default/sa/bookinfo-reviews"


def _rated_reviews(mesh: Mesh) -> bool:
    """A reviews call served by v2 or v3 (which call ratings) carries stars."""
    for _ in range(CONSECUTIVE):
        status, body = mesh.http("/api/v1/products/0/reviews")
        if status != 200 or ('"podname": "reviews-v1"' not in body and '"stars"' not in body):
            return False
    return True


def _ratings_refused(mesh: Mesh) -> bool:
    """Reviews v2/v3 could not get ratings (v1 does not ask)."""
    reviews = [mesh.http("/api/v1/products/0/reviews")[1] for _ in range(CONSECUTIVE)]
    rated = [r for r in reviews if '"podname": "reviews-v1"' not in r]
    return all("Ratings service is currently unavailable" in r for r in rated)


def test_bookinfo_authorization_task_with_peer_principals(
    bookinfo: Mesh, policies: list[str]
) -> None:
    """Istio's "authorization for HTTP traffic" task, step by step, on mTLS identities."""
    _apply(bookinfo, policies, DENY_ALL)
    _until(bookinfo, "/productpage", 403, what="deny-all")
    _apply(bookinfo, policies, _viewer("productpage-viewer", "productpage", GATEWAY))
    _until(bookinfo, "/productpage", 200, what="productpage open to the ingress gateway")
    _until(bookinfo, "/api/v1/products/0", 403, what="details to stay closed")

    def others_denied() -> bool:  # productpage is open to the gateway only
        reply = mesh_http(bookinfo, "details-v1", [Request(url="http://productpage:9080/")])[0]
        return (reply.status, reply.body) == (403, "RBAC: access denied")

    eventually(others_denied, what="productpage to refuse details")

    _apply(bookinfo, policies, _viewer("details-viewer", "details", PRODUCTPAGE))
    _apply(bookinfo, policies, _viewer("reviews-viewer", "reviews", PRODUCTPAGE))
    _until(bookinfo, "/api/v1/products/0", 200, what="details open to productpage")
    _until(bookinfo, "/api/v1/products/0/reviews", 200, what="reviews open to productpage")
    eventually(lambda: _ratings_refused(bookinfo), what="ratings to refuse reviews")

    _apply(bookinfo, policies, _viewer("ratings-viewer", "ratings", REVIEWS))
    eventually(lambda: _rated_reviews(bookinfo), what="ratings open to reviews")
    eventually(
        lambda: "unavailable" not in bookinfo.http("/productpage")[1], what="a complete page"
    )


def test_x_authz_check_lists_policies_and_decides(bookinfo: Mesh, policies: list[str]) -> None:
    _apply(bookinfo, policies, _viewer("ratings-viewer", "ratings", REVIEWS))
    listed = bookinfo.cli("x", "authz", "check", "ratings-v1").stdout
    assert "ratings-viewer" in listed and "ALLOW" in listed
    allowed = bookinfo.cli(
        "x", "authz", "check", "ratings-v1", "--method", "GET", "--source-principal", REVIEWS
    ).stdout
    assert "ALLOWED by ns[default]-policy[ratings-viewer]-rule[0]" in allowed
    denied = json.loads(
        bookinfo.cli(
            "x", "authz", "check", "ratings-v1.default", "--method", "POST", "-o", "json"
        ).stdout
    )
    assert denied["decision"]["allowed"] is False
    assert [p["name"] for p in denied["authorizationPolicies"]] == ["ratings-viewer"]
    assert bookinfo.cli("x", "authz", "check", "nope", check=False).returncode != 0


INGRESS_DENY_API = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-deny-api, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - from:
    - source: {ipBlocks: ["127.0.0.0/8"]}
    to:
    - operation: {paths: ["/api/*"]}
"""


def test_policy_on_the_ingress_gateway_applies_at_the_edge(
    bookinfo: Mesh, policies: list[str]
) -> None:
    _apply(bookinfo, policies, INGRESS_DENY_API)
    _until(bookinfo, "/api/v1/products/0", 403, what="the gateway to deny /api/*")
    denial = (403, "RBAC: access denied")
    eventually(lambda: bookinfo.http("/api/v1/products") == denial, what="the gateway's denial")
    _until(bookinfo, "/productpage", 200, what="other paths to pass the gateway")


BAD_POLICIES = [
    (  # an unknown field
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-field, namespace: default}
spec:
  rules:
  - from:
    - source: {principal: ["cluster.local/ns/default/sa/x"]}
""",
        "spec.rules[0].from[0].source.principal: unknown field",
    ),
    (  # a wildcard in the middle of a principal
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-principal, namespace: default}
spec:
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/*/sa/x"]}
""",
        "spec.rules[0].from[0].source.principals[0]",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_POLICIES, ids=["unknown-field", "principal"])
def test_bad_policy_is_a_clear_error_and_changes_nothing(
    bookinfo: Mesh, text: str, message: str
) -> None:
    result = bookinfo.cli("apply", "-f", "-", input=text, check=False)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    listed = bookinfo.cli("get", "authorizationpolicy", "-A", check=False)
    assert "bad-" not in listed.stdout
    assert _status(bookinfo, "/productpage") == 200
