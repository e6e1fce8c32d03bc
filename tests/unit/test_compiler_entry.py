"""The compiler entry points and the consistency check over their output."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc

from trellis.compiler import compile_all, compile_resources
from trellis.compiler.consistency import check_consistency
from trellis.model import xds_types
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Protocol, Service, ServicePort, Workload
from trellis.model.snapshot import MeshSnapshot

SERVICE = Service(
    name="reviews",
    namespace="default",
    vip="240.240.0.12",
    ports=(ServicePort("http", 9080, 9080, Protocol.HTTP),),
    selector={"app": "reviews"},
)
PUSH = PushContext.build(
    MeshSnapshot(
        1,
        services=(SERVICE,),
        workloads=(Workload("reviews-v1", "default", "198.18.0.21", {"app": "reviews"}),),
    )
)
SIDECAR = Proxy(
    ProxyType.SIDECAR, "198.18.0.10", "productpage-v1", "default", {"app": "productpage"}
)


def test_compile_resources_matches_compile_all_per_type() -> None:
    everything = compile_all(SIDECAR, PUSH)
    for type_url in (xds_types.CLUSTER, xds_types.ENDPOINT, xds_types.LISTENER, xds_types.ROUTE):
        assert compile_resources(SIDECAR, PUSH, type_url) == everything.by_type(type_url)


def test_secrets_are_empty_for_now_and_unknown_types_are_refused() -> None:
    assert compile_resources(SIDECAR, PUSH, xds_types.SECRET) == {}
    with pytest.raises(ValueError):
        compile_resources(SIDECAR, PUSH, "type.googleapis.com/unknown")


def test_compiled_output_is_consistent() -> None:
    assert check_consistency(compile_all(SIDECAR, PUSH)) == []


def test_consistency_reports_a_missing_route_config() -> None:
    cfg = compile_all(SIDECAR, PUSH)
    del cfg.routes["9080"]
    assert check_consistency(cfg) == [
        "listener '0.0.0.0_9080' uses route config '9080', which does not exist"
    ]


def test_consistency_reports_a_missing_assignment_and_cluster() -> None:
    cfg = compile_all(SIDECAR, PUSH)
    name = "outbound|9080||reviews.default.svc.cluster.local"
    del cfg.endpoints[name]
    del cfg.clusters["PassthroughCluster"]
    problems = check_consistency(cfg)
    assert any("has no ClusterLoadAssignment" in p for p in problems)
    assert any("'PassthroughCluster', which does not exist" in p for p in problems)


def test_consistency_reports_a_route_to_a_missing_cluster() -> None:
    cfg = compile_all(SIDECAR, PUSH)
    host = cfg.routes["9080"].virtual_hosts[0]
    host.routes.append(
        rc.Route(match=rc.RouteMatch(prefix="/x"), route=rc.RouteAction(cluster="nope"))
    )
    assert check_consistency(cfg) == [
        "route config '9080' vhost 'reviews.default.svc.cluster.local:9080' sends to cluster "
        "'nope', which does not exist"
    ]


def test_router_gets_outbound_clusters_but_no_capture_listeners() -> None:
    router = Proxy(
        ProxyType.ROUTER, "198.18.0.2", "gw", "istio-system", {"istio": "ingressgateway"}
    )
    cfg = compile_all(router, PUSH)
    assert "outbound|9080||reviews.default.svc.cluster.local" in cfg.clusters
    assert cfg.listeners == {} and cfg.routes == {}
