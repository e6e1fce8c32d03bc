"""Bytes histograms, TCP counters, per-caller destination labels and Telemetry overrides in the
stats translation (telemetry/istio_metrics.py), from Envoy text shaped as real Envoy prints it."""

from __future__ import annotations

from trellis.telemetry.destinations import (
    DestinationWorkload,
    destinations_from_dump,
    eds_dump_path,
)
from trellis.telemetry.istio_metrics import (
    Workload,
    clusters_with_traffic,
    parse_envoy_text,
    translate,
)
from trellis.telemetry.metric_config import MetricOverride, MetricsConfig
from trellis.telemetry.peer import PeerIdentity

REVIEWS = Workload(
    name="reviews-v1",
    namespace="default",
    labels={"app": "reviews", "version": "v1"},
    service_account="bookinfo-reviews",
)
PRODUCTPAGE = PeerIdentity("productpage-v1", "default", "productpage", "v1", "bookinfo-productpage")
VHOST = 'envoy_virtual_host="inbound|http|9080"'
TO_RATINGS = "outbound|9080|v1|ratings.default.svc.cluster.local"
MONGO = "outbound|27017||mongodb.default.svc.cluster.local"


def _histogram(name: str, labels: str, count: int) -> list[str]:
    return [
        f'{name}_bucket{{{labels},le="100"}} {count}',
        f'{name}_bucket{{{labels},le="+Inf"}} {count}',
        f"{name}_sum{{{labels}}} {count * 10}",
        f"{name}_count{{{labels}}} {count}",
    ]


ENVOY = "\n".join(
    [
        # the server side: per caller, from the inbound route's virtual clusters
        f'envoy_vhost_vcluster_upstream_rq{{envoy_response_code="200",'
        f'envoy_virtual_cluster="{PRODUCTPAGE.encode()}",{VHOST}}} 4',
        f'envoy_vhost_vcluster_upstream_rq{{envoy_response_code="200",'
        f'envoy_virtual_cluster="other",{VHOST}}} 1',
        f'envoy_vhost_vcluster_upstream_rq{{envoy_response_code="404",'
        f'envoy_virtual_cluster="plaintext",{VHOST}}} 2',
        *_histogram(
            "envoy_vhost_vcluster_upstream_rq_time",
            f'envoy_virtual_cluster="{PRODUCTPAGE.encode()}",{VHOST}',
            4,
        ),
        # the inbound cluster counts the same requests again, without the caller
        'envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="inbound|9080||"} 5',
        *_histogram("envoy_cluster_upstream_rq_time", 'envoy_cluster_name="inbound|9080||"', 7),
        *_histogram(
            "envoy_cluster_upstream_rq_body_size", 'envoy_cluster_name="inbound|9080||"', 7
        ),
        *_histogram(
            "envoy_cluster_upstream_rs_body_size", 'envoy_cluster_name="inbound|9080||"', 7
        ),
        # the client side: an HTTP call and a TCP service
        f'envoy_cluster_upstream_rq{{envoy_response_code="200",envoy_cluster_name="{TO_RATINGS}"}} 3',
        f'envoy_cluster_upstream_cx_total{{envoy_cluster_name="{TO_RATINGS}"}} 1',
        *_histogram("envoy_cluster_upstream_rq_body_size", f'envoy_cluster_name="{TO_RATINGS}"', 3),
        f'envoy_cluster_upstream_cx_total{{envoy_cluster_name="{MONGO}"}} 2',
        f'envoy_cluster_upstream_cx_destroy{{envoy_cluster_name="{MONGO}"}} 1',
        f'envoy_cluster_upstream_cx_tx_bytes_total{{envoy_cluster_name="{MONGO}"}} 60',
        f'envoy_cluster_upstream_cx_rx_bytes_total{{envoy_cluster_name="{MONGO}"}} 900',
        f'envoy_cluster_upstream_rq_total{{envoy_cluster_name="{MONGO}"}} 2',
    ]
)


def _rows(text: str, name: str, **match: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for s in parse_envoy_text(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
    ]


def _sum(text: str, name: str, **match: str) -> float:
    return sum(v for _, v in _rows(text, name, **match))


def test_destination_requests_name_the_mesh_caller_and_mutual_tls() -> None:
    text = translate(REVIEWS, parse_envoy_text(ENVOY))
    [(labels, value)] = _rows(text, "istio_requests_total", source_workload="productpage-v1")
    assert value == 4
    assert labels["reporter"] == "destination"
    assert labels["source_workload_namespace"] == "default"
    assert labels["source_app"] == "productpage"
    assert labels["source_version"] == "v1"
    assert labels["source_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    assert labels["connection_security_policy"] == "mutual_tls"
    assert labels["destination_workload"] == "reviews-v1"
    assert labels["destination_version"] == "v1"


def test_unnamed_mtls_callers_and_plaintext_callers_are_unknown_with_their_security() -> None:
    text = translate(REVIEWS, parse_envoy_text(ENVOY))
    unknown = _rows(text, "istio_requests_total", reporter="destination", source_workload="unknown")
    by_security = {lb["connection_security_policy"]: (lb["response_code"], v) for lb, v in unknown}
    assert by_security == {"mutual_tls": ("200", 1), "none": ("404", 2)}


def test_inbound_cluster_counts_are_not_added_twice_when_callers_are_counted() -> None:
    text = translate(REVIEWS, parse_envoy_text(ENVOY))
    assert _sum(text, "istio_requests_total", reporter="destination") == 7
    durations = _sum(text, "istio_request_duration_milliseconds_count", reporter="destination")
    assert durations == 4  # the virtual cluster's, not the inbound cluster's 7


def test_bytes_histograms_from_envoy_size_histograms_on_both_sides() -> None:
    text = translate(REVIEWS, parse_envoy_text(ENVOY))
    assert _sum(text, "istio_request_bytes_count", reporter="destination") == 7
    assert _sum(text, "istio_response_bytes_count", reporter="destination") == 7
    [(labels, value)] = _rows(text, "istio_request_bytes_count", reporter="source")
    assert value == 3
    assert labels["destination_service_name"] == "ratings"
    buckets = _rows(text, "istio_request_bytes_bucket", reporter="source")
    assert [(lb["le"], v) for lb, v in buckets] == [("100", 3), ("+Inf", 3)]
    assert "# TYPE istio_request_bytes histogram" in text.splitlines()


def test_tcp_clusters_give_connection_and_byte_counters_without_response_code() -> None:
    text = translate(REVIEWS, parse_envoy_text(ENVOY))
    match = {"destination_service_name": "mongodb", "request_protocol": "tcp"}
    assert _sum(text, "istio_tcp_connections_opened_total", **match) == 2
    assert _sum(text, "istio_tcp_connections_closed_total", **match) == 1
    assert _sum(text, "istio_tcp_received_bytes_total", **match) == 60  # request direction
    assert _sum(text, "istio_tcp_sent_bytes_total", **match) == 900  # response direction
    [(labels, _)] = _rows(text, "istio_tcp_connections_opened_total", **match)
    assert "response_code" not in labels
    assert not _rows(text, "istio_requests_total", destination_service_name="mongodb")
    # an HTTP cluster's connections are not TCP metrics
    assert not _rows(text, "istio_tcp_connections_opened_total", destination_service_name="ratings")


def test_a_disabled_metric_disappears_type_line_and_all() -> None:
    config = MetricsConfig((MetricOverride(metric="REQUEST_COUNT", disabled=True),))
    text = translate(REVIEWS, parse_envoy_text(ENVOY), config)
    assert "istio_requests_total" not in text
    assert _rows(text, "istio_request_duration_milliseconds_count")


def test_disabling_for_one_reporter_keeps_the_other() -> None:
    config = MetricsConfig(
        (MetricOverride(metric="REQUEST_COUNT", reporters=frozenset({"source"}), disabled=True),)
    )
    text = translate(REVIEWS, parse_envoy_text(ENVOY), config)
    assert not _rows(text, "istio_requests_total", reporter="source")
    assert _rows(text, "istio_requests_total", reporter="destination")


def test_a_later_override_can_enable_again() -> None:
    config = MetricsConfig(
        (MetricOverride(disabled=True), MetricOverride(metric="TCP_SENT_BYTES", disabled=False))
    )
    text = translate(REVIEWS, parse_envoy_text(ENVOY), config)
    assert {s.name for s in parse_envoy_text(text)} == {"istio_tcp_sent_bytes_total"}


def test_tag_overrides_set_a_constant_and_remove_a_label_merging_series() -> None:
    config = MetricsConfig(
        (
            MetricOverride(
                metric="REQUEST_COUNT",
                upsert=(("tier", "backend"),),
                remove=("source_workload", "connection_security_policy"),
            ),
        )
    )
    text = translate(REVIEWS, parse_envoy_text(ENVOY), config)
    rows = _rows(text, "istio_requests_total", reporter="destination", response_code="200")
    assert all(lb["tier"] == "backend" and "source_workload" not in lb for lb, _ in rows)
    assert sum(v for _, v in rows) == 5
    durations = _rows(text, "istio_request_duration_milliseconds_count")
    assert all("tier" not in lb and "source_workload" in lb for lb, _ in durations)


def test_metrics_config_round_trips_through_json() -> None:
    config = MetricsConfig(
        (
            MetricOverride(metric="REQUEST_SIZE", reporters=frozenset({"destination"})),
            MetricOverride(disabled=True, upsert=(("a", "b"),), remove=("c",)),
        )
    )
    assert MetricsConfig.from_json(config.to_json()) == config
    assert MetricsConfig.from_json(None) == MetricsConfig()
    assert MetricsConfig.from_json({"overrides": ["junk"]}) == MetricsConfig()


def test_peer_identity_is_one_stat_name_segment_and_round_trips() -> None:
    odd = PeerIdentity("api.v2", "team~a", "app%", "1.2", "sa")
    encoded = odd.encode()
    assert "." not in encoded and encoded.count("~") == 5
    assert PeerIdentity.parse(encoded) == odd
    assert PeerIdentity.parse("other") is None
    assert PeerIdentity.parse("peer~too~few") is None


def _eds_dump(cluster: str, workloads: list[str]) -> dict[str, object]:
    """The shape of Envoy's `/config_dump?resource=dynamic_endpoint_configs&include_eds`."""
    endpoints = [{"metadata": {"filter_metadata": {"istio": {"workload": w}}}} for w in workloads]
    return {
        "configs": [
            {
                "endpoint_config": {
                    "cluster_name": cluster,
                    "endpoints": [{"lb_endpoints": endpoints}],
                }
            }
        ]
    }


def test_source_side_names_the_destination_its_endpoints_agree_on() -> None:
    subset = destinations_from_dump(
        _eds_dump(TO_RATINGS, ["ratings-v1;default;ratings;v1;", "ratings-v1;default;ratings;v1;"])
    )
    text = translate(REVIEWS, parse_envoy_text(ENVOY), destinations=subset)
    [(labels, _)] = _rows(text, "istio_requests_total", reporter="source")
    assert labels["destination_workload"] == "ratings-v1"
    assert labels["destination_app"] == "ratings"
    assert labels["destination_version"] == "v1"


def test_endpoints_that_disagree_leave_the_label_unknown() -> None:
    mixed = destinations_from_dump(
        _eds_dump(TO_RATINGS, ["ratings-v1;default;ratings;v1;", "ratings-v2;default;ratings;v2;"])
    )
    assert mixed[TO_RATINGS] == DestinationWorkload(workload="", app="ratings", version="")
    text = translate(REVIEWS, parse_envoy_text(ENVOY), destinations=mixed)
    [(labels, _)] = _rows(text, "istio_requests_total", reporter="source")
    assert labels["destination_workload"] == "unknown"
    assert labels["destination_app"] == "ratings"
    assert labels["destination_version"] == "v1"  # the subset still says it


def test_eds_lookup_asks_only_for_busy_outbound_clusters() -> None:
    busy = clusters_with_traffic(parse_envoy_text(ENVOY))
    assert busy == {TO_RATINGS, MONGO}
    path = eds_dump_path(busy)
    assert path is not None and "include_eds" in path
    assert eds_dump_path(set()) is None
    assert destinations_from_dump(None) == {}
    dump = _eds_dump(TO_RATINGS, ["ratings-v1;default;ratings;v1;"])
    assert destinations_from_dump(dump, {MONGO}) == {}
