"""Istio request metrics from Envoy's Prometheus text: the pure translation (DESIGN.md §6)."""

from __future__ import annotations

import re

from trellis.telemetry.istio_metrics import (
    LABEL_NAMES,
    UNKNOWN,
    Workload,
    parse_envoy_text,
    translate,
)

PRODUCTPAGE = Workload(
    name="productpage-v1",
    namespace="default",
    labels={"app": "productpage", "version": "v1"},
    service_account="bookinfo-productpage",
)
REVIEWS_V2 = "outbound|9080|v2|reviews.default.svc.cluster.local"


def _histogram(cluster: str, count: int, total: float) -> str:
    name = "envoy_cluster_upstream_rq_time"
    lines = [
        f'{name}_bucket{{envoy_cluster_name="{cluster}",le="{le}"}} {n}'
        for le, n in (("5", 0), ("25", count), ("+Inf", count))
    ]
    lines.append(f'{name}_sum{{envoy_cluster_name="{cluster}"}} {total}')
    lines.append(f'{name}_count{{envoy_cluster_name="{cluster}"}} {count}')
    return "\n".join(lines)


# The shape Envoy's admin /stats/prometheus has with the bootstrap's cluster-name tag.
ENVOY_TEXT = f"""\
# TYPE envoy_cluster_upstream_rq counter
envoy_cluster_upstream_rq{{envoy_response_code="200",envoy_cluster_name="{REVIEWS_V2}"}} 7
envoy_cluster_upstream_rq{{envoy_response_code="503",envoy_cluster_name="{REVIEWS_V2}"}} 1
envoy_cluster_upstream_rq{{envoy_response_code="200",envoy_cluster_name="inbound|9080||"}} 5
envoy_cluster_upstream_rq{{envoy_response_code="200",envoy_cluster_name="xds-grpc"}} 3
envoy_cluster_upstream_rq_xx{{envoy_response_code_class="2",envoy_cluster_name="{REVIEWS_V2}"}} 7
envoy_cluster_external_upstream_rq{{envoy_response_code="200",envoy_cluster_name="{REVIEWS_V2}"}} 7
# TYPE envoy_cluster_upstream_rq_time histogram
{_histogram(REVIEWS_V2, 8, 80.5)}
{_histogram("inbound|9080||", 5, 50.0)}
{_histogram("outbound|27017||mongodb.default.svc.cluster.local", 0, 0)}
envoy_server_live{{}} 1
"""


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Our own output parsed back: metric name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for sample in parse_envoy_text(text):
        out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _one(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **match: str
) -> tuple[dict[str, str], float]:
    found = [(lb, v) for lb, v in samples[name] if all(lb[k] == v2 for k, v2 in match.items())]
    assert len(found) == 1, found
    return found[0]


def test_source_reported_requests_carry_this_workload_and_the_destination_service() -> None:
    samples = _samples(translate(PRODUCTPAGE, parse_envoy_text(ENVOY_TEXT)))
    labels, value = _one(samples, "istio_requests_total", reporter="source", response_code="200")
    assert value == 7
    assert labels == {
        "reporter": "source",
        "source_workload": "productpage-v1",
        "source_workload_namespace": "default",
        "source_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
        "source_app": "productpage",
        "source_version": "v1",
        "destination_workload": UNKNOWN,
        "destination_workload_namespace": "default",
        "destination_principal": UNKNOWN,
        "destination_app": UNKNOWN,
        "destination_version": "v2",
        "destination_service": "reviews.default.svc.cluster.local",
        "destination_service_name": "reviews",
        "destination_service_namespace": "default",
        "request_protocol": "http",
        "response_code": "200",
        "response_flags": "-",
        "connection_security_policy": UNKNOWN,
    }
    _, errors = _one(samples, "istio_requests_total", reporter="source", response_code="503")
    assert errors == 1


def test_destination_reported_requests_carry_this_workload_and_unknown_source() -> None:
    samples = _samples(translate(PRODUCTPAGE, parse_envoy_text(ENVOY_TEXT)))
    labels, value = _one(samples, "istio_requests_total", reporter="destination")
    assert value == 5
    assert labels["destination_workload"] == "productpage-v1"
    assert labels["destination_workload_namespace"] == "default"
    assert labels["destination_app"] == "productpage"
    assert labels["destination_version"] == "v1"
    assert labels["destination_service"] == "productpage.default.svc.cluster.local"
    assert labels["destination_service_name"] == "productpage"
    assert labels["destination_service_namespace"] == "default"
    assert labels["destination_principal"] == (
        "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    )
    for key in ("source_workload", "source_workload_namespace", "source_principal"):
        assert labels[key] == UNKNOWN
    assert labels["source_app"] == labels["source_version"] == UNKNOWN


def test_every_sample_has_every_istio_label() -> None:
    samples = _samples(translate(PRODUCTPAGE, parse_envoy_text(ENVOY_TEXT)))
    for name, rows in samples.items():
        for labels, _ in rows:
            expected = {*LABEL_NAMES, "le"} if name.endswith("_bucket") else set(LABEL_NAMES)
            assert set(labels) == expected, name


def test_non_mesh_clusters_and_other_envoy_stats_are_not_translated() -> None:
    text = translate(PRODUCTPAGE, parse_envoy_text(ENVOY_TEXT))
    assert "xds-grpc" not in text
    assert len(_samples(text)["istio_requests_total"]) == 3  # reviews 200, 503 and inbound


def test_duration_histogram_per_cluster_with_unknown_response_code() -> None:
    samples = _samples(translate(PRODUCTPAGE, parse_envoy_text(ENVOY_TEXT)))
    buckets = [
        (lb["le"], v)
        for lb, v in samples["istio_request_duration_milliseconds_bucket"]
        if lb["reporter"] == "source"
    ]
    assert buckets == [("5", 0), ("25", 8), ("+Inf", 8)]
    labels, total = _one(samples, "istio_request_duration_milliseconds_sum", reporter="source")
    assert total == 80.5
    assert labels["response_code"] == UNKNOWN
    assert labels["destination_version"] == "v2"
    _, count = _one(samples, "istio_request_duration_milliseconds_count", reporter="destination")
    assert count == 5


def test_clusters_without_requests_have_no_histogram() -> None:
    text = translate(PRODUCTPAGE, parse_envoy_text(ENVOY_TEXT))
    assert "mongodb" not in text


def test_ports_of_one_service_are_summed_into_one_series() -> None:
    text = "\n".join(
        f'envoy_cluster_upstream_rq{{envoy_response_code="200",envoy_cluster_name="{c}"}} 2'
        for c in ("inbound|9080||", "inbound|9443||")
    )
    samples = _samples(translate(PRODUCTPAGE, parse_envoy_text(text)))
    assert [v for _, v in samples["istio_requests_total"]] == [4]


def test_workload_without_app_label_reports_unknown_destination_service() -> None:
    bare = Workload(name="legacy", namespace="ops")
    text = (
        'envoy_cluster_upstream_rq{envoy_response_code="204",envoy_cluster_name="inbound|80||"} 1'
    )
    samples = _samples(translate(bare, parse_envoy_text(text)))
    labels, _ = _one(samples, "istio_requests_total", reporter="destination")
    assert labels["destination_service"] == UNKNOWN
    assert labels["destination_service_name"] == UNKNOWN
    assert labels["destination_service_namespace"] == UNKNOWN
    assert labels["destination_app"] == labels["destination_version"] == UNKNOWN
    assert labels["destination_principal"] == "spiffe://cluster.local/ns/ops/sa/default"


def test_output_is_prometheus_text_with_type_lines_and_escaped_values() -> None:
    odd = Workload(name='we"ird', namespace="default", labels={"app": "a\\b"})
    text = (
        'envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="inbound|80||"} 1'
    )
    out = translate(odd, parse_envoy_text(text))
    lines = out.splitlines()
    assert lines[0] == "# TYPE istio_requests_total counter"
    assert "# TYPE istio_request_duration_milliseconds histogram" in lines
    assert 'destination_workload="we\\"ird"' in out
    assert 'destination_app="a\\\\b"' in out
    [sample] = parse_envoy_text(out)
    assert sample.labels["destination_workload"] == 'we"ird'
    assert sample.labels["destination_app"] == "a\\b"
    assert re.fullmatch(r"istio_requests_total\{.*\} 1", lines[1])
