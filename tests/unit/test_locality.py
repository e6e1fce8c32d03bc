"""Locality load balancing (compiler/locality.py): priorities and weights relative to the
calling proxy, the EDS it compiles to, and the proxy facts the EDS cache key holds."""

from __future__ import annotations

import dataclasses

import pytest

from trellis.api.destination_rule import (
    LoadBalancerSettings,
    LocalityDistribute,
    LocalityFailover,
    LocalityLbSetting,
    OutlierDetection,
)
from trellis.api.kinds import parse_documents
from trellis.api.networking import ServiceEntry, WorkloadEntry
from trellis.compiler import dependencies
from trellis.compiler.endpoints import build_load_assignment
from trellis.compiler.locality import (
    REGION_LABEL,
    SUBZONE_LABEL,
    ZONE_LABEL,
    Locality,
    compact,
    distribute_weights,
    label_rank,
    locality_labels,
    locality_plan,
    locality_rank,
)
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Endpoint
from trellis.model.snapshot import MeshSnapshot
from trellis.registry.service_entries import services_from_service_entries
from trellis.registry.workload_entries import workload_from_entry

HERE = Locality("region1", "zone1", "sub1")
FAILOVER = [LocalityFailover.model_validate({"from": "region1", "to": "region2"})]


@pytest.mark.parametrize(
    ("endpoint", "rank"),
    [
        (Locality("region1", "zone1", "sub1"), 0),
        (Locality("region1", "zone1", "sub2"), 1),
        (Locality("region1", "zone1"), 1),
        (Locality("region1", "zone2", "sub1"), 2),
        (Locality("region2", "zone1", "sub1"), 3),
        (Locality("region3", "zone1", "sub1"), 4),
        (Locality(), 4),
    ],
)
def test_failover_rank_follows_istio_order(endpoint: Locality, rank: int) -> None:
    assert locality_rank(HERE, endpoint, FAILOVER) == rank


def test_failover_target_only_counts_for_the_proxys_own_region() -> None:
    assert locality_rank(Locality("region3"), Locality("region2"), FAILOVER) == 4
    assert locality_rank(HERE, Locality("region2"), ()) == 4


def test_proxy_without_locality_sees_unlabelled_endpoints_as_local() -> None:
    assert locality_rank(Locality(), Locality(), ()) == 0


def test_used_ranks_are_renumbered_from_zero_without_gaps() -> None:
    assert compact([(0, 4), (0, 1), (0, 4), (1, 0)]) == {(0, 1): 0, (0, 4): 1, (1, 0): 2}


def test_failover_priority_counts_unmatched_labels_from_the_first() -> None:
    proxy = {"tier": "blue", "net": "a"}
    keys = ["tier", "net"]
    assert label_rank(proxy, {"tier": "blue", "net": "a"}, keys) == 0
    assert label_rank(proxy, {"tier": "blue", "net": "b"}, keys) == 1
    assert label_rank(proxy, {"tier": "green", "net": "a"}, keys) == 2  # order matters
    assert label_rank({}, {"tier": "blue"}, keys) == 2  # a label the proxy lacks matches none


@pytest.mark.parametrize(
    ("pattern", "matched"),
    [
        ("region1", True),
        ("region1/*", True),
        ("region1/zone1/*", True),
        ("*", True),
        ("region1/zone2", False),
        ("region2/*", False),
        ("region1/zone1/sub1", True),
    ],
)
def test_distribute_patterns(pattern: str, matched: bool) -> None:
    assert HERE.matches(pattern) is matched


def _distribute(source: str, to: dict[str, int]) -> LocalityDistribute:
    return LocalityDistribute.model_validate({"from": source, "to": to})


def test_distribute_splits_a_share_evenly_and_takes_the_most_specific_pattern() -> None:
    rule = _distribute("region1/zone1/*", {"region1/zone1/*": 80, "region1/*": 20})
    zone2a, zone2b = Locality("region1", "zone2", "a"), Locality("region1", "zone2", "b")
    far = Locality("region9")
    weights = distribute_weights(HERE, [HERE, zone2a, zone2b, far], [rule])
    assert weights == {HERE: 160, zone2a: 20, zone2b: 20}  # 80 : 10 : 10, far gets nothing


def test_distribute_with_no_rule_for_the_proxy_gives_no_weights() -> None:
    rule = _distribute("region2/*", {"region2/*": 100})
    assert distribute_weights(HERE, [HERE], [rule]) is None


def test_failover_needs_outlier_detection_distribute_does_not() -> None:
    failover = LoadBalancerSettings(locality_lb_setting=LocalityLbSetting(failover=FAILOVER))
    assert locality_plan(failover, None) is None
    plan = locality_plan(failover, OutlierDetection())
    assert plan is not None and plan.failover
    off = LoadBalancerSettings(locality_lb_setting=LocalityLbSetting(enabled=False))
    assert locality_plan(off, OutlierDetection()) is None
    spread = LoadBalancerSettings(
        locality_lb_setting=LocalityLbSetting(distribute=[_distribute("*", {"*": 1})])
    )
    assert locality_plan(spread, None) is not None
    assert locality_plan(None, OutlierDetection()) is not None  # mesh default: enabled


def _endpoint(ip: str, **labels: str) -> Endpoint:
    return Endpoint(ip, 80, labels, f"w-{ip}", "default")


def test_assignment_orders_groups_by_priority_for_the_calling_proxy() -> None:
    lb = LoadBalancerSettings(locality_lb_setting=LocalityLbSetting(failover=FAILOVER))
    plan = locality_plan(lb, OutlierDetection())
    endpoints = [
        _endpoint("198.18.0.3", **{REGION_LABEL: "region2"}),
        _endpoint("198.18.0.1", **{REGION_LABEL: "region1", ZONE_LABEL: "zone1"}),
        _endpoint("198.18.0.2", **{REGION_LABEL: "region1", ZONE_LABEL: "zone1"}),
    ]
    proxy = {REGION_LABEL: "region1", ZONE_LABEL: "zone1"}
    assignment = build_load_assignment("c", endpoints, proxy, plan)
    groups = [(g.locality.region, g.priority, len(g.lb_endpoints)) for g in assignment.endpoints]
    assert groups == [("region1", 0, 2), ("region2", 1, 1)]
    elsewhere = build_load_assignment("c", endpoints, {REGION_LABEL: "region2"}, plan)
    assert [(g.locality.region, g.priority) for g in elsewhere.endpoints] == [
        ("region2", 0),
        ("region1", 1),
    ]


def test_without_a_plan_every_locality_is_priority_zero() -> None:
    endpoints = [_endpoint("198.18.0.1", **{REGION_LABEL: "a"}), _endpoint("198.18.0.2")]
    assignment = build_load_assignment("c", endpoints, {REGION_LABEL: "a"}, None)
    assert [g.priority for g in assignment.endpoints] == [0, 0]
    assert build_load_assignment("c", []).endpoints == []


def test_workload_entry_locality_becomes_topology_labels() -> None:
    assert locality_labels("r/z/s") == {REGION_LABEL: "r", ZONE_LABEL: "z", SUBZONE_LABEL: "s"}
    assert locality_labels("r") == {REGION_LABEL: "r"}
    assert locality_labels(None) == {}
    entry = WorkloadEntry.model_validate(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": "vm", "namespace": "default"},
            "spec": {
                "address": "198.18.0.9",
                "locality": "r1/z1",
                "labels": {"app": "vm", ZONE_LABEL: "explicit"},
            },
        }
    )
    workload = workload_from_entry(entry)
    assert workload is not None
    assert workload.labels == {"app": "vm", REGION_LABEL: "r1", ZONE_LABEL: "explicit"}


BASE = Proxy(ProxyType.SIDECAR, "198.18.0.10", "sleep-1", "default", {"app": "sleep"})
RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: hw, namespace: default}
spec:
  host: hw.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      localityLbSetting: {failoverPriority: [network-tier]}
    outlierDetection: {consecutive5xxErrors: 1}
"""


def test_endpoint_key_holds_locality_and_failover_priority_labels_only() -> None:
    push = PushContext.build(MeshSnapshot(1, resources=tuple(parse_documents(RULE))))

    def key(**labels: str) -> object:
        proxy = dataclasses.replace(BASE, labels={"app": "sleep", **labels})
        return dependencies.endpoint_scope(proxy, push)

    assert key() == dependencies.endpoint_scope(BASE, push)
    assert key(other="x") == key()  # a label no EDS reads still shares
    assert key(**{REGION_LABEL: "r1"}) != key()
    assert key(**{SUBZONE_LABEL: "s"}) != key()
    assert key(**{"network-tier": "blue"}) != key()


SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.example.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 198.18.5.1, locality: r2/z2}
"""


def test_service_entry_endpoint_locality_becomes_topology_labels() -> None:
    entries = [r for r in parse_documents(SERVICE_ENTRY) if isinstance(r, ServiceEntry)]
    (service,) = services_from_service_entries(entries, {"default/ext.example.test": ""})
    ((_, endpoint),) = service.static_endpoints
    assert endpoint.labels == {REGION_LABEL: "r2", ZONE_LABEL: "z2"}
