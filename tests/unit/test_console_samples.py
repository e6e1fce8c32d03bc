"""The embedded data source: rates from successive scrapes, counter resets, quantiles."""

from __future__ import annotations

import math

import pytest

from trellis.console.samples import (
    REQUESTS,
    SampleRing,
    Scrape,
    histogram_quantile,
    increase,
    proxy_series,
    rates,
)

LABELS = (
    'reporter="destination",source_workload="productpage-v1",source_workload_namespace="default",'
    'destination_service_name="reviews",destination_workload="reviews-v2",'
    'source_principal="spiffe://cluster.local/ns/default/sa/bookinfo-productpage"'
)


def text(count: float, code: str = "200") -> str:
    return (
        "# TYPE istio_requests_total counter\n"
        f'istio_requests_total{{{LABELS},response_code="{code}"}} {count}\n'
        "envoy_cluster_upstream_rq_total{} 99\n"
    )


def scrape(at: float, count: float) -> Scrape:
    return Scrape(at, proxy_series("default/reviews-v2", text(count)))


def test_only_kept_metrics_and_labels_survive_the_scrape() -> None:
    series = proxy_series("default/reviews-v2", text(5))
    assert len(series) == 1
    labels = dict(next(iter(series)))
    assert labels["__name__"] == REQUESTS
    assert "source_principal" not in labels  # dropped: only multiplies series


def test_rate_is_increase_over_time_between_scrapes() -> None:
    ring = SampleRing()
    for at, count in ((100.0, 10), (105.0, 20), (110.0, 40)):
        ring.add(scrape(at, count))
    rows = rates(ring, REQUESTS, window=10, end=110, group_by=("response_code",), match={})
    assert [(r.labels["response_code"], r.value) for r in rows] == [("200", 3.0)]
    rows = rates(ring, REQUESTS, window=5, end=110, group_by=(), match={})
    assert rows[0].value == 4.0


def test_window_longer_than_history_uses_the_oldest_scrape() -> None:
    ring = SampleRing()
    ring.add(scrape(100.0, 0))
    ring.add(scrape(110.0, 50))
    rows = rates(ring, REQUESTS, window=3600, end=110, group_by=(), match={})
    assert rows[0].value == 5.0


def test_one_scrape_gives_no_rate() -> None:
    ring = SampleRing()
    ring.add(scrape(100.0, 7))
    assert rates(ring, REQUESTS, window=60, end=100, group_by=(), match={}) == []


def test_counter_reset_counts_from_zero() -> None:
    old = proxy_series("p", text(100))
    new = proxy_series("p", text(30))  # the proxy restarted
    assert list(increase(old, new).values()) == [30]


def test_new_series_counts_whole_value() -> None:
    old = proxy_series("p", text(100))
    new = {**old, **proxy_series("p", text(4, code="503"))}
    grown = increase(old, new)
    assert sorted(grown.values()) == [0, 4]


def test_match_filters_by_label() -> None:
    ring = SampleRing()
    ring.add(scrape(100.0, 0))
    ring.add(scrape(110.0, 10))
    hit = rates(
        ring,
        REQUESTS,
        window=10,
        end=110,
        group_by=(),
        match={"destination_service_name": "reviews"},
    )
    miss = rates(
        ring, REQUESTS, window=10, end=110, group_by=(), match={"destination_service_name": "x"}
    )
    assert hit[0].value == 1.0 and miss == []


def test_ring_is_bounded_and_keeps_coarse_history() -> None:
    ring = SampleRing(fine_span=60, coarse_step=30, coarse_span=600)
    for i in range(200):
        ring.add(Scrape(float(i * 5), {}))
    assert len(ring) <= 13
    oldest = ring.oldest()
    assert oldest is not None and oldest.at >= 995 - 600
    found = ring.at_or_before(700)
    assert found is not None and 670 <= found.at <= 700


def test_histogram_quantile_interpolates_like_promql() -> None:
    buckets = [("10", 50.0), ("100", 100.0), ("+Inf", 100.0)]
    assert histogram_quantile(0.5, buckets) == 10.0
    assert histogram_quantile(0.95, buckets) == pytest.approx(10 + 90 * 45 / 50)
    assert histogram_quantile(0.95, [("+Inf", 0.0)]) is None
    assert histogram_quantile(0.99, [("5", 0.0), ("+Inf", 4.0)]) == 5.0
    assert not math.isinf(histogram_quantile(0.5, [("1", 1.0), ("+Inf", 3.0)]) or 0.0)
