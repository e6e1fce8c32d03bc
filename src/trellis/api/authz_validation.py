"""Semantic checks of an AuthorizationPolicy (istio-notes §1.11): what the schema cannot say.

A policy that Envoy would read differently from what the user meant is a security hole, so every
value the RBAC filter will match on is checked here: wildcards only where Istio supports them
(`*`, `abc*`, `*abc`), CIDRs that parse, ports that are numbers, `when` keys Istio knows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from trellis.api.policy_target import check_policy_target
from trellis.api.security import (
    AuthorizationPolicyAction,
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    Source,
)
from trellis.api.semantic_checks import Problems, check_cidr

# `when` keys with a fixed name; the bracketed families are matched by the patterns below.
WHEN_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
_HEADER_KEY = re.compile(r"^request\.headers\[[^\[\]]+\]$")
_CLAIM_KEY = re.compile(r"^request\.auth\.claims(\[[^\[\]]+\])+$")  # nested: [a][b]
_ENVOY_FILTER_KEY = re.compile(r"^experimental\.envoy\.filters\.[\w.]+(\[[^\[\]]+\])+$")
_IP_KEYS = frozenset({"source.ip", "remote.ip", "destination.ip"})

_WHEN_KEY_HINT = (
    "use request.headers[NAME], source.ip, remote.ip, source.namespace, source.principal, "
    "request.auth.principal, request.auth.audiences, request.auth.presenter, "
    "request.auth.claims[NAME], destination.ip, destination.port, connection.sni or "
    "experimental.envoy.filters.FILTER[KEY]"
)
_SOURCE_FIELDS = (
    ("principals", "principals"),
    ("not_principals", "notPrincipals"),
    ("request_principals", "requestPrincipals"),
    ("not_request_principals", "notRequestPrincipals"),
    ("namespaces", "namespaces"),
    ("not_namespaces", "notNamespaces"),
)
_SOURCE_IP_FIELDS = (
    ("ip_blocks", "ipBlocks"),
    ("not_ip_blocks", "notIpBlocks"),
    ("remote_ip_blocks", "remoteIpBlocks"),
    ("not_remote_ip_blocks", "notRemoteIpBlocks"),
)
_OPERATION_FIELDS = (
    ("hosts", "hosts"),
    ("not_hosts", "notHosts"),
    ("methods", "methods"),
    ("not_methods", "notMethods"),
    ("paths", "paths"),
    ("not_paths", "notPaths"),
)
_OPERATION_PORT_FIELDS = (("ports", "ports"), ("not_ports", "notPorts"))


def check_authorization_policy(spec: AuthorizationPolicySpec) -> Problems:
    problems: Problems = []
    check_policy_target(spec, problems)
    if spec.action is AuthorizationPolicyAction.CUSTOM:
        problems.append(
            (
                "spec.action",
                "action CUSTOM (external authorization) is not supported yet by Trellis; "
                "use ALLOW, DENY or AUDIT",
            )
        )
    elif spec.provider is not None:
        problems.append(("spec.provider", "provider is only used with action CUSTOM; remove it"))
    for i, rule in enumerate(spec.rules):
        _check_rule(rule, f"spec.rules[{i}]", problems)
    return problems


def _check_rule(rule: Rule, path: str, problems: Problems) -> None:
    for j, rule_from in enumerate(rule.from_):
        _check_source(rule_from.source, f"{path}.from[{j}].source", problems)
    for j, rule_to in enumerate(rule.to):
        _check_operation(rule_to.operation, f"{path}.to[{j}].operation", problems)
    for j, condition in enumerate(rule.when):
        check_condition(condition, f"{path}.when[{j}]", problems)


def _check_source(source: Source | None, path: str, problems: Problems) -> None:
    if source is None:
        problems.append((path, "source is required in a from entry, e.g. {principals: [...]}"))
        return
    if not any(source.model_dump().values()):
        problems.append((path, "source is empty; set at least one field, e.g. principals"))
    for attr, alias in _SOURCE_FIELDS:
        check_match_values(getattr(source, attr), f"{path}.{alias}", problems)
    for attr, alias in _SOURCE_IP_FIELDS:
        _check_cidrs(getattr(source, attr), f"{path}.{alias}", problems)


def _check_operation(operation: Operation | None, path: str, problems: Problems) -> None:
    if operation is None:
        problems.append((path, "operation is required in a to entry, e.g. {methods: [GET]}"))
        return
    if not any(operation.model_dump().values()):
        problems.append((path, "operation is empty; set at least one field, e.g. methods"))
    for attr, alias in _OPERATION_FIELDS:
        check_match_values(getattr(operation, attr), f"{path}.{alias}", problems)
    for attr, alias in _OPERATION_PORT_FIELDS:
        _check_port_strings(getattr(operation, attr), f"{path}.{alias}", problems)


def check_condition(condition: Condition, path: str, problems: Problems) -> None:
    """A `when` entry: a key Istio knows, and values (or notValues) of the right form."""
    key = condition.key
    if not is_when_key(key):
        problems.append(
            (f"{path}.key", f"{key!r} is not a supported condition key; {_WHEN_KEY_HINT}")
        )
        return
    if not condition.values and not condition.not_values:
        problems.append((path, f"condition {key} needs values or notValues; add one"))
    for field, values in (("values", condition.values), ("notValues", condition.not_values)):
        if key in _IP_KEYS:
            _check_cidrs(values, f"{path}.{field}", problems)
        elif key == "destination.port":
            _check_port_strings(values, f"{path}.{field}", problems)
        else:
            check_match_values(values, f"{path}.{field}", problems)


def is_when_key(key: str) -> bool:
    """Whether `key` is one of Istio's documented condition keys."""
    return key in WHEN_KEYS or any(
        pattern.match(key) for pattern in (_HEADER_KEY, _CLAIM_KEY, _ENVOY_FILTER_KEY)
    )


def is_wildcard_match(value: str) -> bool:
    """Istio matches exact, prefix (`abc*`), suffix (`*abc`) and presence (`*`), nothing else."""
    if value == "*":
        return True
    inner = value[1:] if value.startswith("*") else value.removesuffix("*")
    return "*" not in inner


def check_match_values(values: Sequence[str], path: str, problems: Problems) -> None:
    for k, value in enumerate(values):
        if not value:
            problems.append((f"{path}[{k}]", "an empty value is not allowed; remove it"))
        elif not is_wildcard_match(value):
            problems.append(
                (
                    f"{path}[{k}]",
                    f"{value!r}: '*' may only be the whole value, its first or its last "
                    "character (exact, prefix*, *suffix or *)",
                )
            )


def _check_cidrs(values: Sequence[str], path: str, problems: Problems) -> None:
    for k, value in enumerate(values):
        check_cidr(value, f"{path}[{k}]", problems)


def _check_port_strings(values: Sequence[str], path: str, problems: Problems) -> None:
    for k, value in enumerate(values):
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 65535):
            problems.append((f"{path}[{k}]", f"{value!r} is not a port number; use 1..65535"))
