"""AuthorizationPolicy -> Envoy RBAC filters, HTTP and network (istio-notes §1.11, DESIGN §5).

Istio's evaluation order becomes filter order: AUDIT (an RBAC filter with action LOG: it never
denies, it only marks matching requests in dynamic metadata for access logs), then DENY, then
ALLOW. The ALLOW filter exists as soon as one ALLOW policy applies, even one without rules, so
`spec: {}` denies everything; a DENY policy without rules adds nothing. CUSTOM is rejected at
apply (authz_validation) and skipped here.

Each rule is one Envoy policy named `ns[NS]-policy[NAME]-rule[I]`: its permissions hold the
`to` operations and the request-side `when` keys (destination.*, connection.sni), its principals
the `from` sources and the client-side keys; a missing part matches anything.

TCP ports get a network RBAC filter. HTTP-only attributes (hosts, methods, paths, request
principals, request.* keys) cannot be seen there: an ALLOW rule using one is dropped (it
allows nothing), while DENY and AUDIT rules drop just those attributes and so match more,
as Istio does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.rbac.v3.rbac_pb2 import Permission, Principal
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from trellis.api.security import (
    AuthorizationPolicy,
    AuthorizationPolicyAction,
    Condition,
    Operation,
    Rule,
    Source,
)
from trellis.compiler import rbac_match as m
from trellis.compiler.protos import pack

HTTP_RBAC = "envoy.filters.http.rbac"
NETWORK_RBAC = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."

# Filter order = Istio's evaluation order (CUSTOM is not supported yet).
ACTION_ORDER = (
    AuthorizationPolicyAction.AUDIT,
    AuthorizationPolicyAction.DENY,
    AuthorizationPolicyAction.ALLOW,
)
_ENVOY_ACTION = {
    AuthorizationPolicyAction.AUDIT: rbac_pb2.RBAC.Action.LOG,
    AuthorizationPolicyAction.DENY: rbac_pb2.RBAC.Action.DENY,
    AuthorizationPolicyAction.ALLOW: rbac_pb2.RBAC.Action.ALLOW,
}
_HTTP_ONLY_KEYS = re.compile(r"^request\.")
_PERMISSION_KEYS = frozenset({"destination.ip", "destination.port", "connection.sni"})
_BRACKETS = re.compile(r"\[([^\[\]]+)\]")


@dataclass(frozen=True, slots=True)
class RbacInputs:
    """What the RBAC translation reads: the policies on a workload, and the JWT issuers its
    jwt_authn filter verifies (request principals and claims are looked up per issuer)."""

    policies: tuple[AuthorizationPolicy, ...] = ()
    issuers: tuple[str, ...] = ()


def policy_name(policy: AuthorizationPolicy, index: int) -> str:
    return f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"


def build_http_rbac_filters(inputs: RbacInputs) -> list[hcm.HttpFilter]:
    """AUDIT, DENY, ALLOW RBAC filters for an inbound HTTP connection manager."""
    filters = []
    for _action, rules in _rules_by_action(inputs, for_tcp=False):
        config = http_rbac_pb2.RBAC(rules=rules)
        filters.append(hcm.HttpFilter(name=HTTP_RBAC, typed_config=pack(config)))
    return filters


def build_network_rbac_filters(inputs: RbacInputs) -> list[listener_components_pb2.Filter]:
    """The same for a TCP port, placed before tcp_proxy: a denied connection is closed."""
    filters = []
    for _action, rules in _rules_by_action(inputs, for_tcp=True):
        config = network_rbac_pb2.RBAC(rules=rules, stat_prefix=TCP_STAT_PREFIX)
        filters.append(listener_components_pb2.Filter(name=NETWORK_RBAC, typed_config=pack(config)))
    return filters


def _rules_by_action(
    inputs: RbacInputs, *, for_tcp: bool
) -> list[tuple[AuthorizationPolicyAction, rbac_pb2.RBAC]]:
    out = []
    for action in ACTION_ORDER:
        chosen = [p for p in inputs.policies if p.spec.action is action]
        if not chosen:
            continue
        rbac = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
        for policy in chosen:
            for index, rule in enumerate(policy.spec.rules):
                built = build_rule(rule, action, inputs.issuers, for_tcp=for_tcp)
                if built is not None:
                    rbac.policies[policy_name(policy, index)].CopyFrom(built)
        if rbac.policies or action is AuthorizationPolicyAction.ALLOW:
            out.append((action, rbac))
    return out


def build_rule(
    rule: Rule, action: AuthorizationPolicyAction, issuers: Sequence[str], *, for_tcp: bool
) -> rbac_pb2.Policy | None:
    """One rule as an Envoy policy, or None when it can never match on this kind of port."""
    strict = action is AuthorizationPolicyAction.ALLOW
    if for_tcp and strict and rule_uses_http_only(rule):
        return None
    ctx = _Context(issuers=tuple(issuers), for_tcp=for_tcp)
    permissions: list[Permission] = []
    principals: list[Principal] = []
    if rule.to:
        ops = [ctx.operation(t.operation) for t in rule.to if t.operation is not None]
        permissions.append(m.any_of_permissions(ops))
    if rule.from_:
        sources = [ctx.source(f.source) for f in rule.from_ if f.source is not None]
        principals.append(m.any_of_principals(sources))
    for condition in rule.when:
        if for_tcp and _HTTP_ONLY_KEYS.match(condition.key):
            continue
        if condition.key in _PERMISSION_KEYS:
            permissions.append(ctx.permission_condition(condition))
        else:
            principals.append(ctx.principal_condition(condition))
    return rbac_pb2.Policy(
        permissions=[m.all_of_permissions(permissions)],
        principals=[m.all_of_principals(principals)],
    )


def rule_uses_http_only(rule: Rule) -> bool:
    """Whether a rule names anything only HTTP carries (a TCP ALLOW rule then matches nothing)."""
    for rule_to in rule.to:
        op = rule_to.operation
        if op is not None and any(
            (op.hosts, op.not_hosts, op.methods, op.not_methods, op.paths, op.not_paths)
        ):
            return True
    for rule_from in rule.from_:
        src = rule_from.source
        if src is not None and (src.request_principals or src.not_request_principals):
            return True
    return any(_HTTP_ONLY_KEYS.match(c.key) for c in rule.when)


@dataclass(frozen=True, slots=True)
class _Context:
    issuers: tuple[str, ...]
    for_tcp: bool

    def operation(self, op: Operation) -> Permission:
        """Fields ANDed, values of a field ORed, `not*` fields negated."""
        parts: list[Permission] = []
        fields: list[tuple[list[str], list[str], Callable[[str], Permission]]] = [
            (op.ports, op.not_ports, m.port_permission)
        ]
        if not self.for_tcp:
            fields += [
                (op.hosts, op.not_hosts, m.host_permission),
                (op.methods, op.not_methods, m.method_permission),
                (op.paths, op.not_paths, m.path_permission),
            ]
        for values, not_values, build in fields:
            if values:
                parts.append(m.any_of_permissions([build(v) for v in values]))
            if not_values:
                parts.append(
                    Permission(not_rule=m.any_of_permissions([build(v) for v in not_values]))
                )
        return m.all_of_permissions(parts)

    def source(self, src: Source) -> Principal:
        parts: list[Principal] = []
        fields: list[tuple[list[str], list[str], Callable[[str], Principal]]] = [
            (src.principals, src.not_principals, m.peer_principal),
            (src.namespaces, src.not_namespaces, m.namespace_principal),
            (src.ip_blocks, src.not_ip_blocks, m.ip_principal),
            (src.remote_ip_blocks, src.not_remote_ip_blocks, _remote_ip),
        ]
        if not self.for_tcp:
            fields.append(
                (src.request_principals, src.not_request_principals, self._request_principal)
            )
        for values, not_values, build in fields:
            if values:
                parts.append(m.any_of_principals([build(v) for v in values]))
            if not_values:
                parts.append(Principal(not_id=m.any_of_principals([build(v) for v in not_values])))
        return m.all_of_principals(parts)

    def _request_principal(self, value: str) -> Principal:
        return m.request_principal(value, self.issuers)

    def permission_condition(self, condition: Condition) -> Permission:
        build = {
            "destination.ip": m.destination_ip_permission,
            "destination.port": m.port_permission,
            "connection.sni": m.sni_permission,
        }[condition.key]
        parts = []
        if condition.values:
            parts.append(m.any_of_permissions([build(v) for v in condition.values]))
        if condition.not_values:
            negated = m.any_of_permissions([build(v) for v in condition.not_values])
            parts.append(Permission(not_rule=negated))
        return m.all_of_permissions(parts)

    def principal_condition(self, condition: Condition) -> Principal:
        build = self._principal_builder(condition.key)
        parts = []
        if condition.values:
            parts.append(m.any_of_principals([build(v) for v in condition.values]))
        if condition.not_values:
            negated = m.any_of_principals([build(v) for v in condition.not_values])
            parts.append(Principal(not_id=negated))
        return m.all_of_principals(parts)

    def _principal_builder(self, key: str) -> Callable[[str], Principal]:
        fixed: dict[str, Callable[[str], Principal]] = {
            "source.ip": m.ip_principal,
            "remote.ip": _remote_ip,
            "source.namespace": m.namespace_principal,
            "source.principal": m.peer_principal,
            "request.auth.principal": self._request_principal,
            "request.auth.audiences": lambda v: m.claim_principal(["aud"], v, self.issuers),
            "request.auth.presenter": lambda v: m.claim_principal(["azp"], v, self.issuers),
        }
        if key in fixed:
            return fixed[key]
        inside = _BRACKETS.findall(key)
        if key.startswith("request.headers["):
            return lambda v: m.header_principal(inside[0], v)
        if key.startswith("request.auth.claims["):
            return lambda v: m.claim_principal(inside, v, self.issuers)
        # experimental.envoy.filters.NAME[k]...: NAME is the filter, the brackets the path.
        filter_name = key.removeprefix("experimental.").split("[", 1)[0]
        return lambda v: m.filter_metadata_principal(filter_name, inside, v)


def _remote_ip(value: str) -> Principal:
    return m.ip_principal(value, remote=True)
