"""Cross-resource checks: what a VirtualService needs from DestinationRules.

Host names follow Istio: a short name (`reviews`) is resolved against the namespace of the
rule that uses it (istio-notes §1), so `reviews` in a VirtualService in `default` means
reviews.default.svc.cluster.local, and a DestinationRule's host is resolved in its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from trellis.api.base import Resource
from trellis.api.common import Destination
from trellis.api.destination_rule import DestinationRule
from trellis.api.virtual_service import VirtualService
from trellis.errors import ValidationError

DEFAULT_DOMAIN = "cluster.local"


def resolve_host(host: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """Istio's short-name rule: a name without a dot gets `.<ns>.svc.<domain>` appended."""
    if not host or "." in host or host.endswith("*"):
        return host
    return f"{host}.{namespace}.svc.{domain}"


def host_matches(pattern: str, host: str) -> bool:
    """Does a (possibly `*.` wildcard) resolved host name cover `host`?"""
    if pattern == "*" or pattern == host:
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:])


def visible_from(rule: Resource, namespace: str, export_to: Sequence[str]) -> bool:
    """Whether a rule with this exportTo is seen by configuration in `namespace`."""
    if not export_to or "*" in export_to:
        return True
    if "." in export_to and rule.namespace == namespace:
        return True
    return namespace in export_to


def check_references(
    new: Sequence[Resource], existing: Sequence[Resource]
) -> list[ValidationError]:
    """Problems in `new` that other resources must fix: routed-to subsets nobody defines.

    DestinationRules in `new` replace stored ones of the same name (they are applied together).
    """
    index = _all_rules(new, existing)
    return [error for _, error in _missing_in(new, index)]


def _all_rules(new: Sequence[Resource], existing: Sequence[Resource]) -> _RulesByHost:
    new_keys = {r.key for r in new}
    rules = [r for r in existing if r.key not in new_keys] + list(new)
    return _RulesByHost([r for r in rules if isinstance(r, DestinationRule)])


def _missing_in(
    new: Sequence[Resource], index: _RulesByHost
) -> Iterator[tuple[str, ValidationError]]:
    for resource in new:
        if isinstance(resource, VirtualService):
            yield from _missing_subsets(resource, index)


class _RulesByHost:
    """DestinationRules by resolved host, so checking thousands of VirtualServices at once is
    not rules x destinations; `covering(host)` keeps the rules' original order."""

    def __init__(self, rules: Sequence[DestinationRule]) -> None:
        self._exact: dict[str, list[tuple[int, DestinationRule]]] = {}
        self._wildcards: list[tuple[int, str, DestinationRule]] = []
        for position, dr in enumerate(rules):
            pattern = resolve_host(dr.spec.host, dr.namespace)
            if pattern.startswith("*"):
                self._wildcards.append((position, pattern, dr))
            else:  # host_matches() is plain equality for these
                self._exact.setdefault(pattern, []).append((position, dr))

    def covering(self, host: str) -> list[DestinationRule]:
        found = list(self._exact.get(host, ()))
        found += [(pos, dr) for pos, pattern, dr in self._wildcards if host_matches(pattern, host)]
        return [dr for _, dr in sorted(found, key=lambda e: e[0])]


def _missing_subsets(
    vs: VirtualService, rules: _RulesByHost
) -> Iterator[tuple[str, ValidationError]]:
    """(resolved host, error) for each destination whose subset no visible rule defines."""
    for path, destination in _destinations(vs):
        if destination.subset is None:
            continue
        host = resolve_host(destination.host, vs.namespace)
        candidates = [
            dr for dr in rules.covering(host) if visible_from(dr, vs.namespace, dr.spec.export_to)
        ]
        if any(dr.spec.subset(destination.subset) is not None for dr in candidates):
            continue
        yield (
            host,
            ValidationError(
                _missing_subset_reason(destination.subset, host, candidates),
                kind=vs.kind,
                namespace=vs.namespace,
                name=vs.name,
                field=f"{path}.subset",
            ),
        )


def _missing_subset_reason(subset: str, host: str, candidates: Sequence[DestinationRule]) -> str:
    if not candidates:
        return (
            f"subset {subset!r} of host {host} is not defined: no DestinationRule for {host}; "
            f"apply a DestinationRule for {host} with subset {subset!r} first"
        )
    dr = candidates[0]
    defined = ", ".join(s.name for s in dr.spec.subsets) or "none"
    return (
        f"subset {subset!r} of host {host} is not defined: DestinationRule "
        f"{dr.namespace}/{dr.name} has subsets {defined}; add subset {subset!r} to it and "
        "apply it first"
    )


def _destinations(vs: VirtualService) -> Iterator[tuple[str, Destination]]:
    """Every destination a VirtualService sends (or mirrors) traffic to, with its field path."""
    for i, http in enumerate(vs.spec.http):
        for j, route in enumerate(http.route):
            yield f"spec.http[{i}].route[{j}].destination", route.destination
        if http.mirror is not None:
            yield f"spec.http[{i}].mirror", http.mirror
        for j, mirror in enumerate(http.mirrors):
            yield f"spec.http[{i}].mirrors[{j}].destination", mirror.destination
    for i, tls in enumerate(vs.spec.tls):
        for j, dest in enumerate(tls.route):
            yield f"spec.tls[{i}].route[{j}].destination", dest.destination
    for i, tcp in enumerate(vs.spec.tcp):
        for j, dest in enumerate(tcp.route):
            yield f"spec.tcp[{i}].route[{j}].destination", dest.destination
