"""AuthorizationPolicy -> Envoy RBAC: the translation rules compiler/rbac.py documents."""

from __future__ import annotations

from typing import Any

import yaml
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from google.protobuf.json_format import MessageToDict

from trellis.api.kinds import parse_documents
from trellis.api.security import AuthorizationPolicy, RequestAuthentication
from trellis.compiler.inbound_policy import build_inbound_policy_filters
from trellis.compiler.rbac import (
    RbacInputs,
    build_http_rbac_filters,
    build_network_rbac_filters,
)
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.snapshot import MeshSnapshot


def policy(
    spec: dict[str, Any], name: str = "p", namespace: str = "default"
) -> AuthorizationPolicy:
    doc = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return AuthorizationPolicy.model_validate(doc)


def http_rules(*policies: AuthorizationPolicy, issuers: tuple[str, ...] = ()) -> list[Any]:
    out = []
    for f in build_http_rbac_filters(RbacInputs(policies=policies, issuers=issuers)):
        config = http_rbac_pb2.RBAC()
        f.typed_config.Unpack(config)
        out.append(MessageToDict(config.rules, preserving_proto_field_name=True))
    return out


def tcp_rules(*policies: AuthorizationPolicy) -> list[Any]:
    out = []
    for f in build_network_rbac_filters(RbacInputs(policies=policies)):
        config = network_rbac_pb2.RBAC()
        f.typed_config.Unpack(config)
        out.append(MessageToDict(config.rules, preserving_proto_field_name=True))
    return out


def test_empty_spec_is_an_allow_filter_without_policies_which_denies_all() -> None:
    assert http_rules(policy({})) == [{}]  # action ALLOW (default enum value), no policies


def test_deny_policy_without_rules_adds_no_filter() -> None:
    assert http_rules(policy({"action": "DENY"})) == []


def test_filters_follow_istio_order_audit_deny_allow() -> None:
    rules = [{"to": [{"operation": {"methods": ["GET"]}}]}]
    actions = [
        r.get("action", "ALLOW")
        for r in http_rules(
            policy({"action": "ALLOW", "rules": rules}, "a"),
            policy({"action": "DENY", "rules": rules}, "d"),
            policy({"action": "AUDIT", "rules": rules}, "u"),
        )
    ]
    assert actions == ["LOG", "DENY", "ALLOW"]


def test_rules_are_named_by_namespace_policy_and_index() -> None:
    spec = {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}, {}]}
    (rules,) = http_rules(policy(spec, "viewer", "bookinfo"))
    assert sorted(rules["policies"]) == [
        "ns[bookinfo]-policy[viewer]-rule[0]",
        "ns[bookinfo]-policy[viewer]-rule[1]",
    ]
    assert rules["policies"]["ns[bookinfo]-policy[viewer]-rule[1]"] == {
        "permissions": [{"any": True}],
        "principals": [{"any": True}],
    }


def test_principals_match_the_spiffe_uri_san_and_namespaces_its_ns_segment() -> None:
    spec = {
        "rules": [
            {
                "from": [
                    {
                        "source": {
                            "principals": ["cluster.local/ns/default/sa/reviews", "*/sa/admin"]
                        }
                    },
                    {"source": {"namespaces": ["istio-system"]}},
                ]
            }
        ]
    }
    (rules,) = http_rules(policy(spec))
    principals = rules["policies"]["ns[default]-policy[p]-rule[0]"]["principals"][0]["or_ids"]
    first, second = principals["ids"]
    assert first["or_ids"]["ids"] == [
        {
            "authenticated": {
                "principal_name": {"exact": "spiffe://cluster.local/ns/default/sa/reviews"}
            }
        },
        {"authenticated": {"principal_name": {"suffix": "/sa/admin"}}},
    ]
    assert second == {
        "authenticated": {
            "principal_name": {"safe_regex": {"regex": "spiffe://[^/]+/ns/istio\\-system/.*"}}
        }
    }


def test_paths_use_url_path_with_prefix_and_suffix_and_not_fields_negate() -> None:
    spec = {"rules": [{"to": [{"operation": {"paths": ["/api/*"], "notMethods": ["POST"]}}]}]}
    (rules,) = http_rules(policy(spec))
    permission = rules["policies"]["ns[default]-policy[p]-rule[0]"]["permissions"][0]
    assert permission == {
        "and_rules": {
            "rules": [
                {"not_rule": {"header": {"name": ":method", "string_match": {"exact": "POST"}}}},
                {"url_path": {"path": {"prefix": "/api/"}}},
            ]
        }
    }


def test_tcp_allow_rule_with_http_fields_is_dropped_but_deny_rule_only_loses_them() -> None:
    rule = {"to": [{"operation": {"ports": ["9000"], "methods": ["GET"]}}]}
    allow, deny = policy({"rules": [rule]}, "a"), policy({"action": "DENY", "rules": [rule]}, "d")
    assert tcp_rules(allow) == [{}]
    (deny_rules,) = tcp_rules(deny)
    assert deny_rules["policies"]["ns[default]-policy[d]-rule[0]"]["permissions"] == [
        {"destination_port": 9000}
    ]


def test_request_principals_are_split_against_the_known_issuers() -> None:
    spec = {
        "rules": [
            {"from": [{"source": {"requestPrincipals": ["https://idp.example/users/alice"]}}]}
        ]
    }
    (rules,) = http_rules(policy(spec), issuers=("https://idp.example", "other"))
    principal = rules["policies"]["ns[default]-policy[p]-rule[0]"]["principals"][0]
    assert principal == {
        "metadata": {
            "filter": "envoy.filters.http.jwt_authn",
            "path": [{"key": "https://idp.example"}, {"key": "sub"}],
            "value": {"string_match": {"exact": "users/alice"}},
        }
    }
    (unknown,) = http_rules(policy(spec))  # no RequestAuthentication: matches nothing
    assert unknown["policies"]["ns[default]-policy[p]-rule[0]"]["principals"] == [
        {"not_id": {"any": True}}
    ]


def test_when_keys_go_to_principals_or_permissions_as_in_istio() -> None:
    spec = {
        "rules": [
            {
                "when": [
                    {"key": "request.headers[x-user]", "values": ["*"]},
                    {"key": "destination.port", "notValues": ["15000"]},
                    {"key": "source.ip", "values": ["10.0.0.0/8"]},
                ]
            }
        ]
    }
    (rules,) = http_rules(policy(spec))
    built = rules["policies"]["ns[default]-policy[p]-rule[0]"]
    assert built["permissions"] == [{"not_rule": {"destination_port": 15000}}]
    assert built["principals"] == [
        {
            "and_ids": {
                "ids": [
                    {"header": {"name": "x-user", "present_match": True}},
                    {"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}},
                ]
            }
        }
    ]


KEYS = '{"keys": [{"kty": "RSA", "kid": "k1", "e": "AQAB", "n": "AQAB"}]}'


def _push(text: str) -> PushContext:
    resources = tuple(parse_documents(text))
    return PushContext.build(MeshSnapshot(version=1, resources=resources))


def test_inbound_filters_put_jwt_authn_first_and_skip_other_workloads_policies() -> None:
    push = _push(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "security.istio.io/v1",
                    "kind": "RequestAuthentication",
                    "metadata": {"name": "jwt", "namespace": "default"},
                    "spec": {"jwtRules": [{"issuer": "iss", "jwks": KEYS}]},
                },
                {
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": "other", "namespace": "default"},
                    "spec": {"selector": {"matchLabels": {"app": "other"}}},
                },
                {
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": "mine", "namespace": "default"},
                    "spec": {
                        "action": "DENY",
                        "rules": [{"to": [{"operation": {"methods": ["PUT"]}}]}],
                    },
                },
            ]
        )
    )
    proxy = Proxy(ProxyType.SIDECAR, "198.18.0.9", "web-1", "default", {"app": "web"})
    filters = build_inbound_policy_filters(proxy, push)
    assert [f.name for f in filters.http] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",
    ]
    config = http_rbac_pb2.RBAC()
    filters.http[1].typed_config.Unpack(config)
    assert config.rules.action == rbac_pb2.RBAC.Action.DENY
    assert list(config.rules.policies) == ["ns[default]-policy[mine]-rule[0]"]
    assert [f.name for f in filters.tcp] == ["envoy.filters.network.rbac"]


def test_request_authentication_alone_adds_no_rbac() -> None:
    ra = RequestAuthentication.model_validate(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "default"},
            "spec": {"jwtRules": [{"issuer": "iss"}]},
        }
    )
    push = PushContext.build(MeshSnapshot(version=1, resources=(ra,)))
    proxy = Proxy(ProxyType.SIDECAR, "198.18.0.9", "web-1", "default", {"app": "web"})
    filters = build_inbound_policy_filters(proxy, push)
    assert [f.name for f in filters.http] == ["envoy.filters.http.jwt_authn"]
    assert filters.tcp == ()
