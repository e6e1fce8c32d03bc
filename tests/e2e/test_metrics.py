"""Istio's request metrics on every sidecar's :15090/stats/prometheus (DESIGN.md §6).

Requests to /productpage through the ingress are counted by productpage-v1's agent twice:
reporter="destination" for the requests it received, reporter="source" for its calls to
reviews. The scrape runs inside productpage-v1's network namespace, where 127.0.0.1:15090 is
that workload's agent.
"""

from __future__ import annotations

import pytest

from tests.e2e.meshctl import Mesh, eventually
from trellis.telemetry.istio_metrics import parse_envoy_text

pytestmark = pytest.mark.e2e

REQUESTS = 5
_SCRAPE = (
    "import urllib.request\n"
    "url = 'http://127.0.0.1:15090/stats/prometheus'\n"
    "print(urllib.request.urlopen(url, timeout=10).read().decode())\n"
)


def _scrape(mesh: Mesh) -> str:
    return mesh.exec_in("productpage-v1", _SCRAPE)


def _total(text: str, name: str, **match: str) -> float:
    return sum(
        s.value
        for s in parse_envoy_text(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
    )


def _requests(text: str, **match: str) -> float:
    return _total(text, "istio_requests_total", **match)


RECEIVED = {"reporter": "destination", "destination_workload": "productpage-v1"}
TO_REVIEWS = {
    "reporter": "source",
    "source_workload": "productpage-v1",
    "destination_service_name": "reviews",
    "response_code": "200",
}


def test_productpage_reports_istio_request_metrics(bookinfo: Mesh) -> None:
    # Earlier tests apply and remove policies on productpage; a connection the gateway pooled
    # before a removal can answer once more under the old filters. Count only from a steady state.
    eventually(
        lambda: all(bookinfo.http("/productpage")[0] == 200 for _ in range(10)),
        what="productpage to answer 200 steadily",
    )
    before = _scrape(bookinfo)
    for _ in range(REQUESTS):
        status, _ = bookinfo.http("/productpage")
        assert status == 200

    after = ""

    def counted() -> bool:
        nonlocal after
        after = _scrape(bookinfo)
        received = _requests(after, **RECEIVED) - _requests(before, **RECEIVED)
        return received >= REQUESTS

    eventually(counted, timeout=20, what="productpage's destination-side count")
    received = _requests(after, **RECEIVED, response_code="200")
    assert received - _requests(before, **RECEIVED, response_code="200") == REQUESTS
    called = _requests(after, **TO_REVIEWS) - _requests(before, **TO_REVIEWS)
    assert REQUESTS <= called <= 2 * REQUESTS  # one call per page, plus any retries


def test_istio_metrics_carry_istio_labels_and_envoy_stats_stay(bookinfo: Mesh) -> None:
    status, _ = bookinfo.http("/productpage")
    assert status == 200
    text = _scrape(bookinfo)
    [dest] = [
        s
        for s in parse_envoy_text(text)
        if s.name == "istio_requests_total"
        and s.labels.get("reporter") == "destination"
        and s.labels.get("response_code") == "200"
    ]
    assert dest.labels["destination_service"] == "productpage.default.svc.cluster.local"
    assert dest.labels["destination_app"] == "productpage"
    assert dest.labels["destination_version"] == "v1"
    assert dest.labels["source_workload"] == "unknown"
    to_reviews = [
        s.labels
        for s in parse_envoy_text(text)
        if s.name == "istio_requests_total"
        and s.labels.get("destination_service_name") == "reviews"
    ]
    assert to_reviews
    assert {lb["destination_service"] for lb in to_reviews} == {"reviews.default.svc.cluster.local"}
    assert {lb["source_app"] for lb in to_reviews} == {"productpage"}
    assert {lb["destination_version"] for lb in to_reviews} <= {"v1", "v2", "v3", "unknown"}
    assert "envoy_server_live" in text  # Envoy's own stats are merged in unchanged

    def histogram_flushed() -> bool:
        text = _scrape(bookinfo)
        return _total(text, "istio_request_duration_milliseconds_count", **RECEIVED) > 0

    eventually(histogram_flushed, timeout=20, what="the duration histogram")
