"""The reference evaluator follows Istio's documented evaluation order and matching rules."""

from __future__ import annotations

from typing import Any

import pytest

from trellis.api.security import AuthorizationPolicy
from trellis.policy.evaluate import AuthzRequest, evaluate, string_matches
from trellis.policy.explain import authz_report


def policy(
    spec: dict[str, Any], name: str = "p", namespace: str = "default"
) -> AuthorizationPolicy:
    return AuthorizationPolicy.model_validate(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


GET = AuthzRequest(method="GET", path="/ratings/0")
GET_ONLY = {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*", "x", True),
        ("*", "", False),
        ("/api/*", "/api/v1", True),
        ("/api/*", "/ap", False),
        ("*.php", "/x.php", True),
        ("GET", "GET", True),
        ("GET", "get", False),
    ],
)
def test_istio_string_forms(pattern: str, value: str, expected: bool) -> None:
    assert string_matches(pattern, value) is expected


def test_no_policy_allows() -> None:
    assert evaluate([], GET).allowed


def test_empty_allow_policy_denies_everything() -> None:
    decision = evaluate([policy({})], GET)
    assert not decision.allowed
    assert decision.reason == "ALLOW policies apply and none matches"


def test_deny_wins_over_allow() -> None:
    deny = policy({"action": "DENY", **GET_ONLY}, "d")
    decision = evaluate([policy(GET_ONLY, "a"), deny], GET)
    assert (decision.allowed, decision.rule) == (False, "ns[default]-policy[d]-rule[0]")


def test_deny_without_rules_matches_nothing() -> None:
    assert evaluate([policy({"action": "DENY"})], GET).allowed


def test_audit_never_decides_but_is_reported() -> None:
    audit = policy({"action": "AUDIT", **GET_ONLY}, "audit")
    decision = evaluate([audit], GET)
    assert decision.allowed
    assert decision.audited == ("ns[default]-policy[audit]-rule[0]",)


def test_rule_needs_a_from_a_to_and_every_when() -> None:
    spec = {
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/default/sa/reviews"]}}],
                "to": [{"operation": {"methods": ["GET"], "notPaths": ["/admin*"]}}],
                "when": [{"key": "request.headers[x-token]", "values": ["a*"]}],
            }
        ]
    }
    allowed = AuthzRequest(
        source_principal="cluster.local/ns/default/sa/reviews", headers={"x-token": "abc"}
    )
    assert evaluate([policy(spec)], allowed).allowed
    assert not evaluate([policy(spec)], AuthzRequest(headers={"x-token": "abc"})).allowed
    admin = AuthzRequest(
        path="/admin/x",
        source_principal="cluster.local/ns/default/sa/reviews",
        headers={"x-token": "abc"},
    )
    assert not evaluate([policy(spec)], admin).allowed


def test_namespaces_come_from_the_peer_identity() -> None:
    spec = {"rules": [{"from": [{"source": {"namespaces": ["foo"]}}]}]}
    request = AuthzRequest(source_principal="cluster.local/ns/foo/sa/bar")
    assert request.source_namespace == "foo"
    assert evaluate([policy(spec)], request).allowed
    assert not evaluate([policy(spec)], AuthzRequest()).allowed


def test_request_principals_and_claims() -> None:
    spec = {
        "rules": [
            {
                "from": [{"source": {"requestPrincipals": ["iss/*"]}}],
                "when": [{"key": "request.auth.claims[groups]", "values": ["admins"]}],
            }
        ]
    }
    admin = AuthzRequest(request_principal="iss/alice", claims={"groups": ["dev", "admins"]})
    assert evaluate([policy(spec)], admin).allowed
    assert not evaluate([policy(spec)], AuthzRequest(claims={"groups": ["admins"]})).allowed


def test_tcp_allow_rule_with_http_fields_never_matches_deny_rule_ignores_them() -> None:
    rule = {"to": [{"operation": {"ports": ["9000"], "methods": ["GET"]}}]}
    tcp = AuthzRequest(port=9000, tcp=True)
    assert not evaluate([policy({"rules": [rule]})], tcp).allowed
    assert not evaluate([policy({"action": "DENY", "rules": [rule]})], tcp).allowed
    assert evaluate([policy({"action": "DENY", "rules": [rule]})], AuthzRequest(port=8000)).allowed


def test_report_lists_policies_that_apply_root_namespace_first() -> None:
    mine = policy({"selector": {"matchLabels": {"app": "ratings"}}}, "mine")
    other = policy({"selector": {"matchLabels": {"app": "other"}}}, "other")
    mesh = policy({"action": "DENY", "rules": [{}]}, "mesh", "istio-system")
    report = authz_report(
        [mine, other, mesh], namespace="default", labels={"app": "ratings"}, request=GET
    )
    assert [p.name for p in report.authorization] == ["mesh", "mine"]
    assert report.decision is not None and not report.decision.allowed
    assert report.as_json()["decision"]["rule"] == "ns[istio-system]-policy[mesh]-rule[0]"
