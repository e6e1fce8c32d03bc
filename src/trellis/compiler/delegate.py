"""VirtualService delegation: a root rule's `delegate` pulls in another VirtualService's rules.

Istio's rules (istio-notes §1.1, "delegate"): one level only; the delegate has no hosts and no
gateways; its http rules are used in order under the root rule, each match merged with the
root's (the delegate's match must narrow the root's: a conflicting pair is dropped); a policy
the delegate rule leaves unset (timeout, retries, rewrite, ...) is inherited from the root rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from trellis.api.common import StringMatch
from trellis.api.networking import HTTPMatchRequest, HTTPRoute, VirtualService
from trellis.model.push_context import exported_to

_INHERITED = (
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirror_percentage",
    "mirror_percent",
    "mirrors",
    "cors_policy",
    "headers",
)
_EQUAL_OR_ONE = ("scheme", "method", "authority", "port", "source_namespace", "stat_prefix")
_UNION = ("headers", "without_headers", "query_params", "source_labels")


class _Conflict(Exception):
    """The delegate's match cannot narrow the root's: the pair matches nothing."""


def find_delegate(
    candidates: Iterable[VirtualService], root: VirtualService, rule: HTTPRoute
) -> VirtualService | None:
    """The hostless VirtualService a root rule delegates to, if it exists and is visible."""
    if rule.delegate is None:
        return None
    namespace = rule.delegate.namespace or root.namespace
    for vs in candidates:
        if vs.name == rule.delegate.name and vs.namespace == namespace:
            visible = exported_to(vs.spec.export_to, vs.namespace, root.namespace)
            return vs if visible and not vs.spec.hosts else None
    return None


def delegated_rules(root_rule: HTTPRoute, delegate: VirtualService) -> Iterator[HTTPRoute]:
    """The delegate's http rules as they apply under `root_rule`, in the delegate's order."""
    for rule in delegate.spec.http:
        if rule.delegate is not None:
            continue  # only one level of delegation
        matches = _merged_matches(root_rule.match, rule.match)
        if matches is None:
            continue
        yield rule.model_copy(update=_inherited(root_rule, rule) | {"match": matches})


def _merged_matches(
    roots: list[HTTPMatchRequest], leaves: list[HTTPMatchRequest]
) -> list[HTTPMatchRequest] | None:
    """Every root x leaf pair merged; [] = matches everything; None = nothing survives."""
    if not roots:
        return list(leaves)
    if not leaves:
        return list(roots)
    merged = []
    for root in roots:
        for leaf in leaves:
            try:
                merged.append(merge_match(root, leaf))
            except _Conflict:
                continue
    return merged or None


def merge_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    """The leaf's conditions plus the root's; raises _Conflict when they contradict."""
    update: dict[str, Any] = {"uri": _merge_uri(root.uri, leaf.uri)}
    for name in _EQUAL_OR_ONE:
        update[name] = _equal_or_one(getattr(root, name), getattr(leaf, name))
    for name in _UNION:
        update[name] = _union(getattr(root, name), getattr(leaf, name))
    update["gateways"] = _equal_or_one(root.gateways or None, leaf.gateways or None) or []
    update["name"] = leaf.name or root.name
    if leaf.ignore_uri_case is None:
        update["ignore_uri_case"] = root.ignore_uri_case
    return leaf.model_copy(update=update)


def _merge_uri(root: StringMatch | None, leaf: StringMatch | None) -> StringMatch | None:
    if root is None or leaf is None:
        return leaf or root
    if root.prefix is not None and leaf.regex is None:
        if (leaf.value or "").startswith(root.prefix):
            return leaf
        raise _Conflict
    if root == leaf:
        return leaf
    raise _Conflict


def _equal_or_one(root: Any, leaf: Any) -> Any:
    if root is not None and leaf is not None and root != leaf:
        raise _Conflict
    return leaf if leaf is not None else root


def _union(root: dict[str, Any], leaf: dict[str, Any]) -> dict[str, Any]:
    for key in root.keys() & leaf.keys():
        if root[key] != leaf[key]:
            raise _Conflict
    return {**root, **leaf}


def _inherited(root: HTTPRoute, leaf: HTTPRoute) -> dict[str, Any]:
    """Policies the delegate rule leaves unset come from the root rule; names are joined."""
    update: dict[str, Any] = {}
    for name in _INHERITED:
        if not getattr(leaf, name) and getattr(root, name):
            update[name] = getattr(root, name)
    if root.name:
        update["name"] = f"{root.name}-{leaf.name}" if leaf.name else root.name
    return update
