"""security.istio.io: PeerAuthentication, AuthorizationPolicy, RequestAuthentication.

Parsing in both served versions, the wire round trip, and every semantic rule with the error a
user reads (kind, namespace/name, camelCase field path, what to do).
"""

from __future__ import annotations

import json

import pytest
import yaml

from trellis.api.kinds import parse_documents, resolve_kind
from trellis.api.security import (
    AuthorizationPolicy,
    AuthorizationPolicyAction,
    PeerAuthentication,
    PeerAuthenticationMode,
    RequestAuthentication,
)
from trellis.api.validation import validate_all
from trellis.errors import ValidationError, ValidationErrors

INGRESS_SA = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"

# A JWK Set of our own making: the shape matters here, not the key.
JWKS = json.dumps(
    {"keys": [{"kty": "RSA", "kid": "trellis-test", "e": "AQAB", "n": "u1SU1LfVLPHCozMxH2Mo"}]}
)

SPECS: dict[tuple[str, str], str] = {
    ("AuthorizationPolicy", "allow-nothing"): " {}\n",
    ("AuthorizationPolicy", "productpage-viewer"): f"""
  selector:
    matchLabels: {{app: productpage}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["{INGRESS_SA}"]
    to:
    - operation:
        methods: [GET]
        paths: ["/productpage", "/static/*"]
        ports: ["9080"]
        notHosts: ["*.internal"]
    when:
    - key: request.headers[x-canary]
      notValues: ["yes"]
    - key: request.auth.claims[groups]
      values: [reviewers]
""",
    ("AuthorizationPolicy", "deny-external"): """
  action: DENY
  rules:
  - from:
    - source:
        notNamespaces: [bookinfo, istio-system]
        ipBlocks: [198.18.0.0/15, 198.18.4.7]
        notRemoteIpBlocks: ["2001:db8::/32"]
        requestPrincipals: ["testing@secure.istio.io/*"]
    when:
    - key: destination.port
      values: ["9080"]
    - key: source.ip
      notValues: [198.18.9.0/24]
""",
    ("PeerAuthentication", "default"): """
  mtls: {mode: STRICT}
""",
    ("PeerAuthentication", "httpbin"): """
  selector:
    matchLabels: {app: httpbin}
  mtls: {mode: STRICT}
  portLevelMtls:
    "8080": {mode: DISABLE}
    "9000": {}
""",
    ("RequestAuthentication", "jwt-example"): f"""
  selector:
    matchLabels: {{app: httpbin}}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwksUri: https://jwks.example.test/keys.json
    audiences: [httpbin]
    fromHeaders: [{{name: x-jwt-assertion, prefix: "Bearer "}}]
    fromParams: [token]
    fromCookies: [session]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
    forwardOriginalToken: true
    timeout: 5s
  - issuer: inline.example.test
    jwks: '{JWKS}'
""",
}


def _doc(kind: str, name: str, version: str = "v1", namespace: str = "bookinfo") -> str:
    return (
        f"apiVersion: security.istio.io/{version}\nkind: {kind}\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}\nspec:{SPECS[(kind, name)]}"
    )


def _problems(text: str) -> list[ValidationError]:
    """Schema and semantic problems of `text`, the way `trellis apply` finds them."""
    try:
        resources = parse_documents(text)
    except ValidationErrors as exc:
        return exc.errors
    try:
        validate_all(resources)
    except ValidationErrors as exc:
        return exc.errors
    return []


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize(("kind", "name"), sorted(SPECS))
def test_every_security_kind_parses_in_every_served_version(
    kind: str, name: str, version: str
) -> None:
    [resource] = parse_documents(_doc(kind, name, version))
    assert resource.kind == kind
    assert resource.api_version == f"security.istio.io/{version}"
    assert resource.key == (kind, "bookinfo", name)
    assert _problems(_doc(kind, name, version)) == []


@pytest.mark.parametrize(("kind", "name"), sorted(SPECS))
def test_to_wire_round_trips_what_the_user_wrote(kind: str, name: str) -> None:
    text = _doc(kind, name)
    [resource] = parse_documents(text)
    assert resource.to_wire() == yaml.safe_load(text)


def test_empty_spec_is_allow_with_no_rules_which_denies_everything() -> None:
    [policy] = parse_documents(_doc("AuthorizationPolicy", "allow-nothing"))
    assert isinstance(policy, AuthorizationPolicy)
    assert policy.spec.action is AuthorizationPolicyAction.ALLOW
    assert policy.spec.rules == []
    assert policy.spec.selector is None


def test_a_policy_without_spec_parses_and_writes_no_spec() -> None:
    text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\n"
    [policy] = parse_documents(text)
    assert isinstance(policy, AuthorizationPolicy)
    assert "spec" not in policy.to_wire()


def test_authorization_policy_fields_are_typed() -> None:
    [policy] = parse_documents(_doc("AuthorizationPolicy", "productpage-viewer"))
    assert isinstance(policy, AuthorizationPolicy)
    assert policy.spec.selector is not None
    assert policy.spec.selector.match_labels == {"app": "productpage"}
    [rule] = policy.spec.rules
    source = rule.from_[0].source
    assert source is not None and source.principals == [INGRESS_SA]
    operation = rule.to[0].operation
    assert operation is not None and operation.methods == ["GET"]
    assert operation.not_hosts == ["*.internal"]
    assert [(c.key, c.values, c.not_values) for c in rule.when] == [
        ("request.headers[x-canary]", [], ["yes"]),
        ("request.auth.claims[groups]", ["reviewers"], []),
    ]


def test_numeric_ports_written_without_quotes_are_read_as_istio_strings() -> None:
    text = _doc("AuthorizationPolicy", "productpage-viewer").replace('["9080"]', "[9080, 9443]")
    [policy] = parse_documents(text)
    assert isinstance(policy, AuthorizationPolicy)
    operation = policy.spec.rules[0].to[0].operation
    assert operation is not None and operation.ports == ["9080", "9443"]


def test_peer_authentication_port_keys_are_strings_whatever_yaml_makes_them() -> None:
    text = _doc("PeerAuthentication", "httpbin").replace('"8080"', "8080")
    [policy] = parse_documents(text)
    assert isinstance(policy, PeerAuthentication)
    modes = {port: m.mode for port, m in policy.spec.port_level_mtls.items()}
    assert modes == {"8080": PeerAuthenticationMode.DISABLE, "9000": PeerAuthenticationMode.UNSET}
    assert policy.to_wire()["spec"]["portLevelMtls"] == {"8080": {"mode": "DISABLE"}, "9000": {}}


def test_request_authentication_fields_are_typed() -> None:
    [policy] = parse_documents(_doc("RequestAuthentication", "jwt-example"))
    assert isinstance(policy, RequestAuthentication)
    first, second = policy.spec.jwt_rules
    assert first.issuer == "testing@secure.istio.io"
    assert first.from_headers[0].prefix == "Bearer "
    assert first.output_claim_to_headers[0].claim == "sub"
    assert first.forward_original_token is True
    assert second.jwks is not None and json.loads(second.jwks)["keys"][0]["kid"] == "trellis-test"


def test_creation_timestamp_is_kept_and_naive_times_are_utc() -> None:
    text = _doc("PeerAuthentication", "default").replace(
        "  namespace: bookinfo\n",
        "  namespace: bookinfo\n  creationTimestamp: 2024-03-01T10:00:00\n",
    )
    [policy] = parse_documents(text)
    created = policy.metadata.creation_timestamp
    assert created is not None and created.tzinfo is not None
    assert policy.to_wire()["metadata"]["creationTimestamp"] == "2024-03-01T10:00:00Z"


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("pa", PeerAuthentication),
        ("peerauthentication", PeerAuthentication),
        ("PeerAuthentications", PeerAuthentication),
        ("ap", AuthorizationPolicy),
        ("authorizationpolicy", AuthorizationPolicy),
        ("AuthorizationPolicies", AuthorizationPolicy),
        ("ra", RequestAuthentication),
        ("requestauthentications", RequestAuthentication),
    ],
)
def test_cli_words_resolve_to_security_kinds(word: str, kind: type) -> None:
    assert resolve_kind(word) is kind


def _ap(spec: str, name: str = "ap") -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: bookinfo}}\nspec:\n{spec}"
    )


def _when(condition: str) -> str:
    return _ap(f"  rules:\n  - when:\n    - {condition}\n")


def _pa(spec: str) -> str:
    return (
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n"
        f"metadata: {{name: pa, namespace: bookinfo}}\nspec:\n{spec}"
    )


def _ra(rule: str) -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        f"metadata: {{name: jwt, namespace: bookinfo}}\nspec:\n  jwtRules:\n  - {rule}\n"
    )


AP = ("AuthorizationPolicy", "bookinfo", "ap")
PA = ("PeerAuthentication", "bookinfo", "pa")
RA = ("RequestAuthentication", "bookinfo", "jwt")

BAD_INPUTS = [
    pytest.param(
        _ap("  action: CUSTOM\n  provider: {name: ext-authz}\n  rules: [{}]\n"),
        (*AP, "spec.action"),
        "action CUSTOM (external authorization) is not supported yet",
        id="custom-not-supported",
    ),
    pytest.param(
        _ap("  action: DENY\n  provider: {name: ext-authz}\n"),
        (*AP, "spec.provider"),
        "provider is only used with action CUSTOM",
        id="provider-without-custom",
    ),
    pytest.param(
        _ap("  action: REJECT\n"),
        (*AP, "spec.action"),
        "'ALLOW', 'DENY', 'AUDIT' or 'CUSTOM' (got 'REJECT')",
        id="unknown-action",
    ),
    pytest.param(
        _when("{key: request.method, values: [GET]}"),
        (*AP, "spec.rules[0].when[0].key"),
        "'request.method' is not a supported condition key; use request.headers[NAME]",
        id="unknown-when-key",
    ),
    pytest.param(
        _when("{key: 'request.headers[]', values: [x]}"),
        (*AP, "spec.rules[0].when[0].key"),
        "is not a supported condition key",
        id="header-key-without-name",
    ),
    pytest.param(
        _when("{key: experimental.envoy.filters.network.mysql_proxy, values: [x]}"),
        (*AP, "spec.rules[0].when[0].key"),
        "experimental.envoy.filters.FILTER[KEY]",
        id="envoy-filter-key-without-path",
    ),
    pytest.param(
        _when("{key: 'request.auth.claims[iss]'}"),
        (*AP, "spec.rules[0].when[0]"),
        "condition request.auth.claims[iss] needs values or notValues",
        id="when-without-values",
    ),
    pytest.param(
        _when("{key: source.ip, values: [198.18.0.0/33]}"),
        (*AP, "spec.rules[0].when[0].values[0]"),
        "'198.18.0.0/33' is not an IP address or CIDR block",
        id="when-ip-not-a-cidr",
    ),
    pytest.param(
        _when("{key: destination.port, notValues: ['80', http]}"),
        (*AP, "spec.rules[0].when[0].notValues[1]"),
        "'http' is not a port number; use 1..65535",
        id="when-port-not-a-number",
    ),
    pytest.param(
        _when("{key: 'request.headers[x-user]', values: ['a*b']}"),
        (*AP, "spec.rules[0].when[0].values[0]"),
        "'*' may only be the whole value, its first or its last character",
        id="when-value-inner-wildcard",
    ),
    pytest.param(
        _ap("  rules:\n  - from:\n    - source: {principals: ['cluster.local/ns/*/sa/x']}\n"),
        (*AP, "spec.rules[0].from[0].source.principals[0]"),
        "'*' may only be the whole value, its first or its last character",
        id="principal-inner-wildcard",
    ),
    pytest.param(
        _ap("  rules:\n  - from:\n    - source: {notRequestPrincipals: ['*iss*']}\n"),
        (*AP, "spec.rules[0].from[0].source.notRequestPrincipals[0]"),
        "'*' may only be the whole value",
        id="request-principal-both-ends-wildcard",
    ),
    pytest.param(
        _ap("  rules:\n  - to:\n    - operation: {paths: ['/api/*/items']}\n"),
        (*AP, "spec.rules[0].to[0].operation.paths[0]"),
        "'*' may only be the whole value",
        id="path-inner-wildcard",
    ),
    pytest.param(
        _ap("  rules:\n  - to:\n    - operation: {hosts: ['**']}\n"),
        (*AP, "spec.rules[0].to[0].operation.hosts[0]"),
        "'*' may only be the whole value",
        id="host-double-wildcard",
    ),
    pytest.param(
        _ap("  rules:\n  - to:\n    - operation: {notMethods: ['']}\n"),
        (*AP, "spec.rules[0].to[0].operation.notMethods[0]"),
        "an empty value is not allowed",
        id="empty-method",
    ),
    pytest.param(
        _ap("  rules:\n  - to:\n    - operation: {ports: ['0']}\n"),
        (*AP, "spec.rules[0].to[0].operation.ports[0]"),
        "'0' is not a port number; use 1..65535",
        id="port-zero",
    ),
    pytest.param(
        _ap("  rules:\n  - to:\n    - operation: {notPorts: [http]}\n"),
        (*AP, "spec.rules[0].to[0].operation.notPorts[0]"),
        "'http' is not a port number",
        id="port-name-not-number",
    ),
    pytest.param(
        _ap("  rules:\n  - from:\n    - source: {ipBlocks: [198.18.0.0/15, 198.18.300.1]}\n"),
        (*AP, "spec.rules[0].from[0].source.ipBlocks[1]"),
        "'198.18.300.1' is not an IP address or CIDR block",
        id="ip-block-not-an-ip",
    ),
    pytest.param(
        _ap("  rules:\n  - from:\n    - source: {remoteIpBlocks: [example.com]}\n"),
        (*AP, "spec.rules[0].from[0].source.remoteIpBlocks[0]"),
        "is not an IP address or CIDR block",
        id="remote-ip-block-a-name",
    ),
    pytest.param(
        _ap("  rules:\n  - from:\n    - {}\n"),
        (*AP, "spec.rules[0].from[0].source"),
        "source is required in a from entry",
        id="from-without-source",
    ),
    pytest.param(
        _ap("  rules:\n  - from:\n    - source: {}\n"),
        (*AP, "spec.rules[0].from[0].source"),
        "source is empty; set at least one field",
        id="empty-source",
    ),
    pytest.param(
        _ap("  rules:\n  - to:\n    - operation: {}\n"),
        (*AP, "spec.rules[0].to[0].operation"),
        "operation is empty; set at least one field",
        id="empty-operation",
    ),
    pytest.param(
        _ap("  rules:\n  - to:\n    - {}\n"),
        (*AP, "spec.rules[0].to[0].operation"),
        "operation is required in a to entry",
        id="to-without-operation",
    ),
    pytest.param(
        _ap("  rules:\n  - from:\n    - source: {serviceAccounts: [bookinfo/x]}\n"),
        (*AP, "spec.rules[0].from[0].source.serviceAccounts"),
        "unknown field; remove it or fix its spelling",
        id="unsupported-source-field",
    ),
    pytest.param(
        _ap("  selector: {matchLabels: {app: x}}\n  targetRef: {kind: Gateway, name: gw}\n"),
        (*AP, "spec.selector"),
        "set selector or targetRef(s), not both",
        id="selector-and-target-ref",
    ),
    pytest.param(
        _ap("  targetRef: {kind: Gateway, name: gw}\n  targetRefs: [{kind: Gateway, name: gw2}]\n"),
        (*AP, "spec.targetRefs"),
        "set targetRef or targetRefs, not both",
        id="target-ref-and-target-refs",
    ),
    pytest.param(
        _ap("  targetRefs: [{kind: Gateway}]\n"),
        (*AP, "spec.targetRefs[0].name"),
        "required field is missing",
        id="target-ref-without-name",
    ),
    pytest.param(
        _ap("  selector: {matchLabels: {app: 'review*'}}\n"),
        (*AP, "spec.selector.matchLabels.app"),
        "wildcards are not allowed in selector labels",
        id="selector-wildcard",
    ),
    pytest.param(
        _pa("  portLevelMtls:\n    8080: {mode: DISABLE}\n"),
        (*PA, "spec.portLevelMtls"),
        "portLevelMtls requires a selector",
        id="port-level-mtls-without-selector",
    ),
    pytest.param(
        _pa("  selector: {matchLabels: {}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n"),
        (*PA, "spec.portLevelMtls"),
        "portLevelMtls requires a selector",
        id="port-level-mtls-with-empty-selector",
    ),
    pytest.param(
        _pa("  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    70000: {mode: STRICT}\n"),
        (*PA, "spec.portLevelMtls.70000"),
        "'70000' is not a port number; use the workload's port, 1..65535",
        id="port-level-mtls-port-out-of-range",
    ),
    pytest.param(
        _pa("  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    http: {mode: STRICT}\n"),
        (*PA, "spec.portLevelMtls.http"),
        "'http' is not a port number",
        id="port-level-mtls-port-name",
    ),
    pytest.param(
        _pa("  mtls: {mode: REQUIRED}\n"),
        (*PA, "spec.mtls.mode"),
        "'UNSET', 'DISABLE', 'PERMISSIVE' or 'STRICT' (got 'REQUIRED')",
        id="unknown-mtls-mode",
    ),
    pytest.param(
        _pa("  targetRef: {kind: Service, name: x}\n"),
        (*PA, "spec.targetRef"),
        "unknown field",
        id="peer-authentication-has-no-target-ref",
    ),
    pytest.param(
        _ra("{jwksUri: https://example.test/jwks}"),
        (*RA, "spec.jwtRules[0].issuer"),
        "required field is missing",
        id="issuer-missing",
    ),
    pytest.param(
        _ra("{issuer: ''}"),
        (*RA, "spec.jwtRules[0].issuer"),
        "issuer must not be empty",
        id="issuer-empty",
    ),
    pytest.param(
        _ra(f"{{issuer: a, jwksUri: 'https://example.test/jwks', jwks: '{JWKS}'}}"),
        (*RA, "spec.jwtRules[0]"),
        "set jwks or jwksUri, not both",
        id="jwks-and-jwks-uri",
    ),
    pytest.param(
        _ra("{issuer: a, jwksUri: 'ftp://example.test/jwks'}"),
        (*RA, "spec.jwtRules[0].jwksUri"),
        "'ftp://example.test/jwks' is not an http(s) URL",
        id="jwks-uri-not-http",
    ),
    pytest.param(
        _ra("{issuer: a, jwksUri: 'jwks.json'}"),
        (*RA, "spec.jwtRules[0].jwksUri"),
        "is not an http(s) URL",
        id="jwks-uri-relative",
    ),
    pytest.param(
        _ra("{issuer: a, jwksUri: 'https://example.test:99999/jwks'}"),
        (*RA, "spec.jwtRules[0].jwksUri"),
        "is not a URL",
        id="jwks-uri-bad-port",
    ),
    pytest.param(
        _ra("{issuer: a, jwks: '{\"keys\": ['}"),
        (*RA, "spec.jwtRules[0].jwks"),
        "jwks is not valid JSON",
        id="jwks-not-json",
    ),
    pytest.param(
        _ra('{issuer: a, jwks: \'{"kty": "RSA"}\'}'),
        (*RA, "spec.jwtRules[0].jwks"),
        'jwks must be a JSON object with a "keys" list',
        id="jwks-without-keys",
    ),
    pytest.param(
        _ra("{issuer: a, audiences: ['']}"),
        (*RA, "spec.jwtRules[0].audiences[0]"),
        "an empty audience is not allowed",
        id="empty-audience",
    ),
    pytest.param(
        _ra("{issuer: a, fromHeaders: [{name: ''}]}"),
        (*RA, "spec.jwtRules[0].fromHeaders[0].name"),
        "header name must not be empty",
        id="empty-from-header",
    ),
    pytest.param(
        _ra("{issuer: a, fromCookies: ['']}"),
        (*RA, "spec.jwtRules[0].fromCookies[0]"),
        "an empty name is not allowed",
        id="empty-from-cookie",
    ),
    pytest.param(
        _ra("{issuer: a, outputClaimToHeaders: [{header: 'x jwt', claim: sub}]}"),
        (*RA, "spec.jwtRules[0].outputClaimToHeaders[0].header"),
        "'x jwt' is not a valid HTTP header name",
        id="claim-header-bad-name",
    ),
    pytest.param(
        _ra("{issuer: a, outputClaimToHeaders: [{header: x-sub, claim: ''}]}"),
        (*RA, "spec.jwtRules[0].outputClaimToHeaders[0].claim"),
        "claim must not be empty",
        id="claim-empty",
    ),
    pytest.param(
        _ra("{issuer: a, outputPayloadToHeader: 'x:payload'}"),
        (*RA, "spec.jwtRules[0].outputPayloadToHeader"),
        "is not a valid HTTP header name",
        id="payload-header-bad-name",
    ),
    pytest.param(
        _ra("{issuer: a, timeout: 0s}"),
        (*RA, "spec.jwtRules[0].timeout"),
        "timeout must be more than 0s",
        id="zero-timeout",
    ),
    pytest.param(
        _ra("{issuer: a, timeout: five}"),
        (*RA, "spec.jwtRules[0].timeout"),
        "is not a duration",
        id="bad-timeout",
    ),
]


@pytest.mark.parametrize(("text", "where", "reason"), BAD_INPUTS)
def test_error_names_resource_field_and_fix(
    text: str, where: tuple[str, str, str, str], reason: str
) -> None:
    problems = _problems(text)
    found = [(p.kind, p.namespace, p.name, p.field) for p in problems]
    assert where in found, f"{where} not in {found}"
    error = problems[found.index(where)]
    assert reason in error.reason
    kind, namespace, name, field = where
    assert str(error).startswith(f"{kind} {namespace}/{name}: {field}: ")


@pytest.mark.parametrize(
    "key",
    [
        "request.headers[User-Agent]",
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "request.auth.claims[iss]",
        "request.auth.claims[realm_access][roles]",
        "destination.ip",
        "destination.port",
        "connection.sni",
        "experimental.envoy.filters.network.mysql_proxy[db.table]",
    ],
)
def test_every_documented_when_key_is_accepted(key: str) -> None:
    value = {"source.ip": "198.18.0.1", "remote.ip": "198.18.0.0/16"}.get(key, "80")
    value = {"destination.ip": "2001:db8::1"}.get(key, value)
    assert _problems(_when(f"{{key: '{key}', values: ['{value}']}}")) == []


@pytest.mark.parametrize("value", ["*", "exact", "prefix*", "*suffix", "/static/*"])
def test_istio_wildcard_forms_are_accepted(value: str) -> None:
    spec = f"  rules:\n  - to:\n    - operation: {{paths: ['{value}'], hosts: ['{value}']}}\n"
    assert _problems(_ap(spec)) == []


def test_rule_that_is_empty_allows_everything_and_is_valid() -> None:
    assert _problems(_ap("  rules: [{}]\n")) == []


def test_audit_and_deny_actions_are_accepted() -> None:
    for action in ("AUDIT", "DENY"):
        assert _problems(_ap(f"  action: {action}\n  rules: [{{}}]\n")) == []


def test_target_ref_policies_are_accepted() -> None:
    spec = "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: bookinfo}\n"
    [policy] = parse_documents(_ap(spec))
    assert isinstance(policy, AuthorizationPolicy) and policy.spec.has_target_refs
    assert _problems(_ap(spec)) == []


def test_every_problem_of_one_policy_is_reported_at_once() -> None:
    spec = (
        "  action: CUSTOM\n  rules:\n  - from:\n    - source: {ipBlocks: [nope]}\n"
        "    when:\n    - {key: bogus, values: [x]}\n"
    )
    fields = [p.field for p in _problems(_ap(spec))]
    assert fields == [
        "spec.action",
        "spec.rules[0].from[0].source.ipBlocks[0]",
        "spec.rules[0].when[0].key",
    ]
