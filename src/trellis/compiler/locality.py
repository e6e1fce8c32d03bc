"""Locality-aware EDS: endpoints grouped by region/zone/subzone, with failover priorities or
`distribute` weights relative to the calling proxy's own locality (istio-notes §1.2).

Localities come from the Kubernetes topology labels (a WorkloadEntry's `locality` field is
turned into the same labels: registry/workload_entries.py). Istio's rules, as implemented here:

- `enabled: false` turns locality load balancing off; unset means on (mesh default).
- `distribute` needs no outlier detection: the first rule whose `from` matches the proxy gives
  each `to` pattern a share, split evenly over the localities it matches; localities no
  pattern matches get no traffic (they are left out of the assignment).
- Failover priorities apply only with outlier detection (Envoy needs ejections to move on):
  same subzone 0, same zone 1, same region 2, the region `failover` names for the proxy's
  region 3, anything else 4; with `failoverPriority` labels, endpoints matching more of the
  listed labels (in order, compared with the proxy's) come first. Used levels are renumbered
  0, 1, 2... because Envoy walks priorities in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2

from trellis.api.destination_rule import (
    LoadBalancerSettings,
    LocalityDistribute,
    LocalityFailover,
    LocalityLbSetting,
    OutlierDetection,
)
from trellis.compiler.protos import uint32
from trellis.model.push_context import PushContext
from trellis.model.registry import Endpoint

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
LOCALITY_LABELS = (REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL)
_OTHER = 4  # priority of an endpoint in an unrelated region


@dataclass(frozen=True, slots=True, order=True)
class Locality:
    """Where a workload runs; empty parts are unknown."""

    region: str = ""
    zone: str = ""
    subzone: str = ""

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Locality:
        return cls(*(labels.get(key, "") for key in LOCALITY_LABELS))

    @classmethod
    def parse(cls, text: str) -> Locality:
        """`region/zone/subzone` (Istio's WorkloadEntry `locality`), trailing parts optional."""
        parts = [p.strip() for p in text.split("/")][:3]
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join((self.region, self.zone, self.subzone)).rstrip("/")

    def matches(self, pattern: str) -> bool:
        """`distribute` patterns: `region/zone/subzone` where any part may be `*` (the rest
        then matches anything too) and omitted trailing parts match anything."""
        parts = (self.region, self.zone, self.subzone)
        for have, want in zip(parts, pattern.split("/")[:3], strict=False):
            if want == "*":
                return True
            if have != want:
                return False
        return True

    def proto(self) -> base_pb2.Locality | None:
        if not (self.region or self.zone or self.subzone):
            return None
        return base_pb2.Locality(region=self.region, zone=self.zone, sub_zone=self.subzone)


def locality_labels(text: str | None) -> dict[str, str]:
    """The topology labels a `region/zone/subzone` string stands for (empty parts omitted)."""
    if not text:
        return {}
    locality = Locality.parse(text)
    values = (locality.region, locality.zone, locality.subzone)
    return {key: value for key, value in zip(LOCALITY_LABELS, values, strict=True) if value}


def proxy_locality(labels: Mapping[str, str]) -> Locality:
    """The calling proxy's locality, from its workload labels."""
    return Locality.from_labels(labels)


# --- priorities -----------------------------------------------------------------------------


def locality_rank(
    proxy: Locality, endpoint: Locality, failover: Sequence[LocalityFailover] = ()
) -> int:
    """Istio's failover order before renumbering: 0 same subzone ... 4 unrelated region."""
    if endpoint.region != proxy.region:
        target = next((f.to for f in failover if f.from_ == proxy.region), None)
        return 3 if target is not None and endpoint.region == target else _OTHER
    if endpoint.zone != proxy.zone:
        return 2
    return 0 if endpoint.subzone == proxy.subzone else 1


def label_rank(
    proxy_labels: Mapping[str, str], endpoint_labels: Mapping[str, str], keys: Sequence[str]
) -> int:
    """`failoverPriority`: how many of the listed labels, from the first, fail to match."""
    matched = 0
    for key in keys:
        value = proxy_labels.get(key)
        if value is None or endpoint_labels.get(key) != value:
            break
        matched += 1
    return len(keys) - matched


def compact(ranks: Iterable[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
    """Used rank tuples renumbered 0, 1, 2... in order."""
    return {rank: index for index, rank in enumerate(sorted(set(ranks)))}


# --- distribute -----------------------------------------------------------------------------


def distribute_weights(
    proxy: Locality, localities: Iterable[Locality], rules: Sequence[LocalityDistribute]
) -> dict[Locality, int] | None:
    """Weights per locality from the first rule matching `proxy`; None when none matches.

    Each `to` pattern's share is split evenly over the localities it matches (a locality that
    several patterns match takes the most specific one); weights are scaled to stay integers
    with exact ratios. A locality no pattern matches is absent from the result.
    """
    rule = next((r for r in rules if proxy.matches(r.from_)), None)
    if rule is None:
        return None
    chosen: dict[Locality, str] = {}
    for locality in sorted(set(localities)):
        patterns = [p for p in rule.to if locality.matches(p)]
        if patterns:
            chosen[locality] = max(patterns, key=_specificity)
    counts = {p: sum(1 for c in chosen.values() if c == p) for p in set(chosen.values())}
    scale = math.lcm(*counts.values()) if counts else 1
    weights = {loc: rule.to[p] * scale // counts[p] for loc, p in chosen.items()}
    return {loc: w for loc, w in weights.items() if w > 0}


def _specificity(pattern: str) -> int:
    return sum(1 for part in pattern.split("/") if part and part != "*")


# --- the assignment -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalityPlan:
    """What the proxy's EDS does with localities for one cluster."""

    setting: LocalityLbSetting
    failover: bool  # outlier detection is on: assign priorities


def locality_plan(
    lb: LoadBalancerSettings | None, outlier: OutlierDetection | None
) -> LocalityPlan | None:
    """None when locality load balancing is off for the cluster or would change nothing."""
    setting = (lb.locality_lb_setting if lb else None) or LocalityLbSetting()
    if setting.enabled is False:
        return None
    failover = outlier is not None
    if not failover and not setting.distribute:
        return None
    return LocalityPlan(setting, failover)


def group_by_locality(
    endpoints: Iterable[Endpoint], proxy_labels: Mapping[str, str], plan: LocalityPlan | None
) -> list[tuple[Locality, int, list[Endpoint]]]:
    """(locality, priority, members) groups by priority, then locality; all priority 0
    without failover."""
    here = proxy_locality(proxy_labels)
    groups: dict[tuple[Locality, tuple[int, ...]], list[Endpoint]] = {}
    for endpoint in endpoints:
        locality = Locality.from_labels(endpoint.labels)
        rank = _rank(here, proxy_labels, endpoint, locality, plan)
        groups.setdefault((locality, rank), []).append(endpoint)
    numbering = compact(rank for _, rank in groups)
    ordered = [(loc, numbering[rank], members) for (loc, rank), members in groups.items()]
    return sorted(ordered, key=lambda group: (group[1], group[0]))


def _rank(
    here: Locality,
    proxy_labels: Mapping[str, str],
    endpoint: Endpoint,
    locality: Locality,
    plan: LocalityPlan | None,
) -> tuple[int, ...]:
    if plan is None or not plan.failover or plan.setting.distribute:
        return (0,)
    keys = plan.setting.failover_priority
    by_label = label_rank(proxy_labels, endpoint.labels, keys) if keys else 0
    return (by_label, locality_rank(here, locality, plan.setting.failover))


def build_locality_endpoints(
    endpoints: Iterable[Endpoint],
    proxy_labels: Mapping[str, str],
    plan: LocalityPlan | None,
    build_lb_endpoint: Callable[[Endpoint], endpoint_components_pb2.LbEndpoint],
) -> list[endpoint_components_pb2.LocalityLbEndpoints]:
    """The assignment's `endpoints`: one LocalityLbEndpoints per (locality, priority)."""
    groups = group_by_locality(endpoints, proxy_labels, plan)
    weights = None
    if plan is not None and plan.setting.distribute:
        here = proxy_locality(proxy_labels)
        weights = distribute_weights(here, (g[0] for g in groups), plan.setting.distribute)
    result = []
    for locality, priority, members in groups:
        if weights is not None and locality not in weights:
            continue
        entry = endpoint_components_pb2.LocalityLbEndpoints(
            locality=locality.proto(),
            lb_endpoints=[build_lb_endpoint(m) for m in members],
            priority=priority,
            load_balancing_weight=uint32(weights[locality] if weights is not None else None),
        )
        result.append(entry)
    return result


# --- what EDS reads from the proxy (compiler/dependencies.py) -------------------------------


def eds_label_keys(push: PushContext) -> frozenset[str]:
    """Proxy labels EDS may read: the topology labels (its locality) plus every label key a
    DestinationRule's `failoverPriority` compares, mesh-wide (computed once per context)."""
    return push.derived(_eds_label_keys)


def _eds_label_keys(push: PushContext) -> frozenset[str]:
    keys = set(LOCALITY_LABELS)
    for rule in push.destination_rules:
        spec = rule.spec
        policies = [spec.traffic_policy, *(s.traffic_policy for s in spec.subsets)]
        for policy in policies:
            if policy is None:
                continue
            balancers = [
                policy.load_balancer,
                *(p.load_balancer for p in policy.port_level_settings),
            ]
            for lb in balancers:
                if lb is not None and lb.locality_lb_setting is not None:
                    keys.update(lb.locality_lb_setting.failover_priority)
    return frozenset(keys)


def eds_proxy_labels(labels: Mapping[str, str], push: PushContext) -> tuple[tuple[str, str], ...]:
    """The part of a proxy's labels its EDS output depends on, as a cache-key fact."""
    keys = eds_label_keys(push)
    return tuple(sorted((k, v) for k, v in labels.items() if k in keys))
