"""A reference evaluator of Istio's AuthorizationPolicy rules, written from the documentation.

Independent of the Envoy translation (compiler/rbac.py) on purpose: `trellis x authz check`
uses it to explain a decision, and a property test compares it with what Envoy really does.
Pure: policies and a described request in, a decision out (istio-notes §1.11):

1. a matching DENY policy denies; 2. no ALLOW policy allows; 3. a matching ALLOW policy allows;
4. anything else is denied. AUDIT policies only mark the request; CUSTOM is not supported.
On TCP an ALLOW rule naming an HTTP-only attribute never matches, while DENY and AUDIT rules
ignore such attributes (Istio's rule, which errs on the side of denying).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from trellis.api.security import (
    AuthorizationPolicy,
    AuthorizationPolicyAction,
    Condition,
    Operation,
    Rule,
    Source,
)

_BRACKETS = re.compile(r"\[([^\[\]]+)\]")
Allow = AuthorizationPolicyAction.ALLOW
Deny = AuthorizationPolicyAction.DENY
Audit = AuthorizationPolicyAction.AUDIT


@dataclass(frozen=True, slots=True)
class AuthzRequest:
    """What a workload's proxy knows about one request (or TCP connection, `tcp=True`).

    Principals are written as in policies: `cluster.local/ns/NS/sa/SA` for the peer,
    `ISS/SUB` for a verified JWT; `claims` is that token's payload. Header names lower case.
    """

    method: str = "GET"
    path: str = "/"
    host: str = ""
    port: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    source_ip: str | None = None
    remote_ip: str | None = None
    source_principal: str | None = None
    request_principal: str | None = None
    claims: Mapping[str, object] = field(default_factory=dict)
    destination_ip: str | None = None
    sni: str | None = None
    tcp: bool = False

    @property
    def source_namespace(self) -> str | None:
        """The `ns/NS` segment of the peer identity; None without mTLS."""
        parts = (self.source_principal or "").split("/")
        return parts[2] if len(parts) >= 5 and parts[1] == "ns" else None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome and why: `rule` is `ns[NS]-policy[NAME]-rule[I]` of the deciding rule."""

    allowed: bool
    reason: str
    rule: str | None = None
    audited: tuple[str, ...] = ()


def rule_id(policy: AuthorizationPolicy, index: int) -> str:
    return f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"


def evaluate(policies: Sequence[AuthorizationPolicy], request: AuthzRequest) -> Decision:
    """Istio's evaluation order over the policies that apply to one workload."""
    audited = tuple(_matching_rules(policies, Audit, request))
    denied = next(iter(_matching_rules(policies, Deny, request)), None)
    if denied is not None:
        return Decision(False, "a DENY policy matches", denied, audited)
    if not any(p.spec.action is Allow for p in policies):
        return Decision(True, "no ALLOW policy applies", None, audited)
    allowed = next(iter(_matching_rules(policies, Allow, request)), None)
    if allowed is not None:
        return Decision(True, "an ALLOW policy matches", allowed, audited)
    return Decision(False, "ALLOW policies apply and none matches", None, audited)


def _matching_rules(
    policies: Sequence[AuthorizationPolicy], action: AuthorizationPolicyAction, req: AuthzRequest
) -> list[str]:
    return [
        rule_id(policy, i)
        for policy in policies
        if policy.spec.action is action
        for i, rule in enumerate(policy.spec.rules)
        if rule_matches(rule, req, strict_tcp=action is Allow)
    ]


def rule_matches(rule: Rule, req: AuthzRequest, *, strict_tcp: bool = True) -> bool:
    """Any `from`, any `to`, every `when`; a missing list matches anything."""
    http = not req.tcp
    if req.tcp and strict_tcp and _uses_http_only(rule):
        return False
    sources_ok = not rule.from_ or any(
        f.source is not None and source_matches(f.source, req, http=http) for f in rule.from_
    )
    ops_ok = not rule.to or any(
        t.operation is not None and operation_matches(t.operation, req, http=http) for t in rule.to
    )
    conditions = [c for c in rule.when if http or not c.key.startswith("request.")]
    return sources_ok and ops_ok and all(condition_matches(c, req) for c in conditions)


def source_matches(src: Source, req: AuthzRequest, *, http: bool = True) -> bool:
    checks = [
        _field(src.principals, src.not_principals, req.source_principal, string_matches),
        _field(src.namespaces, src.not_namespaces, req.source_namespace, string_matches),
        _field(src.ip_blocks, src.not_ip_blocks, req.source_ip, ip_matches),
        _field(
            src.remote_ip_blocks,
            src.not_remote_ip_blocks,
            req.remote_ip or req.source_ip,
            ip_matches,
        ),
    ]
    if http:
        checks.append(
            _field(
                src.request_principals,
                src.not_request_principals,
                req.request_principal,
                string_matches,
            )
        )
    return all(checks)


def operation_matches(op: Operation, req: AuthzRequest, *, http: bool = True) -> bool:
    checks = [_field(op.ports, op.not_ports, str(req.port), string_matches)]
    if http:
        path = req.path.split("?", 1)[0]
        checks += [
            _field(op.hosts, op.not_hosts, req.host.lower(), _host_matches),
            _field(op.methods, op.not_methods, req.method, string_matches),
            _field(op.paths, op.not_paths, path, string_matches),
        ]
    return all(checks)


def condition_matches(condition: Condition, req: AuthzRequest) -> bool:
    values = _attribute(condition.key, req)
    match = (
        ip_matches
        if condition.key in ("source.ip", "remote.ip", "destination.ip")
        else (string_matches)
    )

    def any_value(patterns: Iterable[str]) -> bool:
        return any(match(p, v) for p in patterns for v in values)

    if condition.values and not any_value(condition.values):
        return False
    return not (condition.not_values and any_value(condition.not_values))


def _attribute(key: str, req: AuthzRequest) -> list[str]:
    """The request's value(s) for a `when` key; [] when it has none."""
    fixed: dict[str, str | None] = {
        "source.ip": req.source_ip,
        "remote.ip": req.remote_ip or req.source_ip,
        "source.namespace": req.source_namespace,
        "source.principal": req.source_principal,
        "request.auth.principal": req.request_principal,
        "destination.ip": req.destination_ip,
        "destination.port": str(req.port),
        "connection.sni": req.sni,
    }
    if key in fixed:
        value = fixed[key]
        return [] if value is None else [value]
    inside = _BRACKETS.findall(key)
    if key.startswith("request.headers["):
        header = req.headers.get(inside[0].lower())
        return [] if header is None else [header]
    claim_path = {"request.auth.audiences": ["aud"], "request.auth.presenter": ["azp"]}.get(
        key, inside
    )
    if req.request_principal is None:
        return []
    return _claim_values(req.claims, claim_path)


def _claim_values(claims: Mapping[str, object], path: Sequence[str]) -> list[str]:
    node: object = claims
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return []
        node = node[key]
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [v for v in node if isinstance(v, str)]
    return []


def _field(
    values: Sequence[str],
    not_values: Sequence[str],
    actual: str | None,
    match: Callable[[str, str], bool],
) -> bool:
    """One field of a source or operation: any of `values`, none of `not_values`."""
    hit = actual is not None and any(match(v, actual) for v in values)
    if values and not hit:
        return False
    return not (not_values and actual is not None and any(match(v, actual) for v in not_values))


def string_matches(pattern: str, value: str) -> bool:
    """Istio's forms: `*` (non-empty), `prefix*`, `*suffix`, exact."""
    if pattern == "*":
        return value != ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _host_matches(pattern: str, value: str) -> bool:
    """Case-insensitive, with or without the `:port` a Host header may carry."""
    host, _, port = value.rpartition(":")
    bare = host if host and port.isdigit() else value
    return any(string_matches(pattern.lower(), v) for v in {value, bare})


def ip_matches(cidr: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _uses_http_only(rule: Rule) -> bool:
    for rule_to in rule.to:
        op = rule_to.operation
        if op is not None and any(
            (op.hosts, op.not_hosts, op.methods, op.not_methods, op.paths, op.not_paths)
        ):
            return True
    if any(
        f.source is not None and (f.source.request_principals or f.source.not_request_principals)
        for f in rule.from_
    ):
        return True
    return any(c.key.startswith("request.") for c in rule.when)
