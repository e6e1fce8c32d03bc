"""The traffic graph in Kiali's shape, from canned Prometheus text, and Kiali's health rules."""

from __future__ import annotations

from typing import Any

import pytest

from trellis.console.graph import (
    BUCKET_GROUP,
    REQUEST_GROUP,
    GraphOptions,
    GraphType,
    build_graph,
)
from trellis.console.health import HealthStatus, http_health
from trellis.console.samples import (
    DURATION_BUCKET,
    REQUESTS,
    RateRow,
    SampleRing,
    Scrape,
    proxy_series,
    rates,
)

BOOKINFO_T0 = """
istio_requests_total{reporter="destination",source_workload="productpage-v1",source_workload_namespace="default",source_app="productpage",source_version="v1",destination_service_name="reviews",destination_service_namespace="default",destination_workload="reviews-v1",destination_workload_namespace="default",destination_app="reviews",destination_version="v1",response_code="200",response_flags="-",connection_security_policy="mutual_tls"} 0
istio_requests_total{reporter="destination",source_workload="productpage-v1",source_workload_namespace="default",source_app="productpage",source_version="v1",destination_service_name="reviews",destination_service_namespace="default",destination_workload="reviews-v2",destination_workload_namespace="default",destination_app="reviews",destination_version="v2",response_code="200",response_flags="-",connection_security_policy="mutual_tls"} 0
istio_requests_total{reporter="destination",source_workload="reviews-v2",source_workload_namespace="default",source_app="reviews",source_version="v2",destination_service_name="ratings",destination_service_namespace="default",destination_workload="ratings-v1",destination_workload_namespace="default",destination_app="ratings",destination_version="v1",response_code="200",response_flags="-",connection_security_policy="mutual_tls"} 0
istio_requests_total{reporter="destination",source_workload="unknown",source_workload_namespace="unknown",source_app="unknown",source_version="unknown",destination_service_name="productpage",destination_service_namespace="default",destination_workload="productpage-v1",destination_workload_namespace="default",destination_app="productpage",destination_version="v1",response_code="200",response_flags="-",connection_security_policy="none"} 0
istio_requests_total{reporter="source",source_workload="productpage-v1",source_workload_namespace="default",source_app="productpage",source_version="v1",destination_service_name="reviews",destination_service_namespace="default",destination_workload="unknown",destination_workload_namespace="default",destination_app="unknown",destination_version="unknown",response_code="200",response_flags="-",connection_security_policy="unknown"} 0
istio_requests_total{reporter="source",source_workload="productpage-v1",source_workload_namespace="default",source_app="productpage",source_version="v1",destination_service_name="httpbin",destination_service_namespace="external",destination_workload="unknown",destination_workload_namespace="external",destination_app="unknown",destination_version="unknown",response_code="200",response_flags="-",connection_security_policy="unknown"} 0
istio_request_duration_milliseconds_bucket{reporter="destination",source_workload="productpage-v1",source_workload_namespace="default",source_app="productpage",source_version="v1",destination_service_name="reviews",destination_service_namespace="default",destination_workload="reviews-v1",destination_workload_namespace="default",destination_app="reviews",destination_version="v1",response_code="200",le="10"} 0
istio_request_duration_milliseconds_bucket{reporter="destination",source_workload="productpage-v1",source_workload_namespace="default",source_app="productpage",source_version="v1",destination_service_name="reviews",destination_service_namespace="default",destination_workload="reviews-v1",destination_workload_namespace="default",destination_app="reviews",destination_version="v1",response_code="200",le="100"} 0
istio_request_duration_milliseconds_bucket{reporter="destination",source_workload="productpage-v1",source_workload_namespace="default",source_app="productpage",source_version="v1",destination_service_name="reviews",destination_service_namespace="default",destination_workload="reviews-v1",destination_workload_namespace="default",destination_app="reviews",destination_version="v1",response_code="200",le="+Inf"} 0
"""


def later(text: str) -> str:
    """The same series 10 s later: reviews-v1 10 req/s, reviews-v2 4 req/s of 200 and 1 of 503
    (a series born in between), ratings 2 req/s, unknown->productpage 1, external 3."""
    values = iter([100, 40, 20, 10, 150, 30, 50, 100, 100])
    lines = [line.rsplit(" ", 1)[0] + f" {next(values)}" for line in text.strip().splitlines()]
    lines.append(
        lines[1].replace('response_code="200"', 'response_code="503"').rsplit(" ", 1)[0] + " 10"
    )
    return "\n".join(lines)


@pytest.fixture
def ring() -> SampleRing:
    ring = SampleRing()
    ring.add(Scrape(1000.0, proxy_series("all", BOOKINFO_T0)))
    ring.add(Scrape(1010.0, proxy_series("all", later(BOOKINFO_T0))))
    return ring


def graph(
    ring: SampleRing, graph_type: GraphType, namespaces: frozenset[str] = frozenset({"default"})
) -> dict[str, Any]:
    requests = rates(ring, REQUESTS, window=60, end=1010, group_by=REQUEST_GROUP, match={})
    buckets = rates(ring, DURATION_BUCKET, window=60, end=1010, group_by=BUCKET_GROUP, match={})
    return build_graph(
        requests,
        buckets,
        GraphOptions(graph_type, namespaces, 60),
        proxy_status={("default", "reviews-v1"): "SYNCED", ("default", "reviews-v2"): "STALE"},
        timestamp=1010,
    )


def edges(g: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["data"]["id"]: e["data"] for e in g["elements"]["edges"]}


def nodes(g: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["data"]["id"]: n["data"] for n in g["elements"]["nodes"]}


def test_app_graph_has_productpage_to_reviews_through_the_service_node(ring: SampleRing) -> None:
    g = graph(ring, GraphType.APP)
    e = edges(g)
    to_service = e["app_default_productpage->svc_default_reviews"]
    assert to_service["traffic"]["rates"]["http"] == "15.00"  # v1 10 + v2 4 + v2's 503s 1
    assert to_service["isMTLS"] == "100"
    assert "app_default_reviews" in nodes(g)
    assert g["graphType"] == "app" and g["duration"] == 60


def test_destination_reports_win_over_source_reports_for_the_same_service(ring: SampleRing) -> None:
    e = edges(graph(ring, GraphType.APP))
    # the source-reported productpage->reviews (15 req/s, mTLS unknown) is not added on top
    assert float(e["app_default_productpage->svc_default_reviews"]["traffic"]["rates"]["http"]) < 30


def test_versioned_app_graph_splits_versions_and_carries_errors(ring: SampleRing) -> None:
    e = edges(graph(ring, GraphType.VERSIONED_APP))
    v2 = e["svc_default_reviews->app_default_reviews_v2"]
    assert v2["traffic"]["rates"]["http"] == "5.00"
    assert v2["traffic"]["rates"]["httpPercentErr"] == "20.0"
    assert v2["healthStatus"] == "Failure"  # 20 % 5xx >= 10 %
    assert set(v2["traffic"]["responses"]) == {"200", "503"}
    v1 = e["svc_default_reviews->app_default_reviews_v1"]
    assert v1["healthStatus"] == "Healthy"
    assert v1["responseTime"] == str(round(10 + 90 * (95 - 50) / 50))  # p95 from the buckets


def test_workload_graph_nodes_carry_proxy_sync_status(ring: SampleRing) -> None:
    n = nodes(graph(ring, GraphType.WORKLOAD))
    assert n["workload_default_reviews-v1"]["proxySynced"] is True
    assert n["workload_default_reviews-v2"]["proxyStatus"] == "STALE"
    assert n["workload_default_productpage-v1"]["nodeType"] == "workload"


def test_unknown_source_and_external_service_are_their_own_nodes(ring: SampleRing) -> None:
    g = graph(ring, GraphType.APP)
    n = nodes(g)
    assert n["unknown"]["nodeType"] == "unknown" and n["unknown"]["isRoot"] is True
    assert "unknown->svc_default_productpage" in edges(g)
    external = n["svc_external_httpbin"]
    assert external["isOutside"] is True
    assert edges(g)["app_default_productpage->svc_external_httpbin"]["isMTLS"] == "0"


def test_service_graph_has_only_service_nodes_and_roots(ring: SampleRing) -> None:
    g = graph(ring, GraphType.SERVICE)
    types = {d["nodeType"] for d in nodes(g).values()}
    assert types <= {"service", "unknown"}
    assert "svc_default_productpage->svc_default_reviews" in edges(g)


def test_namespace_filter_drops_unrelated_traffic(ring: SampleRing) -> None:
    g = graph(ring, GraphType.APP, frozenset({"elsewhere"}))
    assert g["elements"]["edges"] == [] and g["elements"]["nodes"] == []


def test_node_health_comes_from_inbound_traffic(ring: SampleRing) -> None:
    n = nodes(graph(ring, GraphType.VERSIONED_APP))
    assert n["app_default_reviews_v2"]["healthStatus"] == "Failure"
    assert n["app_default_ratings_v1"]["healthStatus"] == "Healthy"


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ({}, HealthStatus.NA),
        ({"200": 0.0}, HealthStatus.NA),
        ({"200": 100.0}, HealthStatus.HEALTHY),
        ({"200": 99.9, "503": 0.1}, HealthStatus.DEGRADED),  # 5xx: degraded above 0 %
        ({"200": 91.0, "500": 9.0}, HealthStatus.DEGRADED),
        ({"200": 90.0, "500": 10.0}, HealthStatus.FAILURE),  # 5xx: failure at 10 %
        ({"200": 91.0, "404": 9.0}, HealthStatus.HEALTHY),
        ({"200": 90.0, "404": 10.0}, HealthStatus.DEGRADED),  # 4xx: degraded at 10 %
        ({"200": 80.0, "404": 20.0}, HealthStatus.FAILURE),  # 4xx: failure at 20 %
    ],
)
def test_kiali_default_thresholds(codes: dict[str, float], status: HealthStatus) -> None:
    assert http_health(codes) is status


def test_tcp_traffic_makes_a_tcp_edge_with_byte_rates() -> None:
    labels = {
        "reporter": "destination",
        "source_workload": "client-v1",
        "source_workload_namespace": "default",
        "source_app": "client",
        "source_version": "v1",
        "destination_service_name": "tcp-echo",
        "destination_service_namespace": "default",
        "destination_workload": "tcp-echo-v1",
        "destination_workload_namespace": "default",
        "destination_app": "tcp-echo",
        "destination_version": "v1",
        "connection_security_policy": "mutual_tls",
    }
    g = build_graph(
        [],
        [],
        GraphOptions(GraphType.APP, frozenset({"default"}), 60),
        proxy_status={},
        timestamp=0,
        tcp=[
            RateRow(labels, 300.0),
            RateRow({**labels, "connection_security_policy": "none"}, 100.0),
        ],
    )
    edge = edges(g)["svc_default_tcp-echo->app_default_tcp-echo"]
    assert edge["traffic"]["protocol"] == "tcp"
    assert edge["traffic"]["rates"] == {"tcp": "400.00"}
    assert edge["isMTLS"] == "75" and edge["healthStatus"] == "NA"
