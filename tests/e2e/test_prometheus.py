"""`trellis up --prometheus`: Debian's real Prometheus scrapes every proxy and trellisd, and
Istio's traffic-shifting query returns the split the VirtualService asked for.

Routing is applied before Bookinfo starts, so no request can reach reviews-v2 while config
propagates. Prometheus's rate() cannot see the requests a series already counted when it was
first scraped, so a first batch makes the series exist and the rate is read over a second one.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.meshctl import Mesh, cli_json, eventually, free_tcp_port, pid_alive

pytestmark = pytest.mark.e2e

SPLIT_QUERY = (
    'sum(rate(istio_requests_total{destination_service_name="reviews"}[1m])) '
    "by (destination_version)"
)
SCRAPE_WAIT_S = 90.0  # scrapes every 5 s; a rate over [1m] needs two samples after the traffic


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def by_label(self, promql: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql)}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Prometheus]]:
    """One mesh for this file; the last test takes it down."""
    state_dir = tmp_path_factory.mktemp("prometheus") / "mesh"
    mesh = Mesh(state_dir=state_dir, ingress_port=free_tcp_port())
    port = free_tcp_port()
    try:
        mesh.cli(
            "up",
            *("--ingress-port", str(mesh.ingress_port)),
            *("--prometheus", "--prometheus-port", str(port)),
            timeout=120,
        )
        mesh.apply_file("destination-rule-all.yaml")
        mesh.apply_file("virtual-service-reviews-50-v3.yaml")
        mesh.cli("demo", timeout=300)
        yield mesh, Prometheus(port)
    finally:
        mesh.cli("down", check=False, timeout=120)


def send_productpage_requests(mesh: Mesh, count: int) -> None:
    for _ in range(count):
        status, body = mesh.http("/productpage")
        assert status == 200, body


def split_is_fifty_fifty(prometheus: Prometheus) -> bool:
    rates = prometheus.by_label(SPLIT_QUERY, "destination_version")
    total = sum(rates.values())
    if total <= 0 or rates.get("v2", 0.0) > 0 or not {"v1", "v3"} <= rates.keys():
        return False
    return all(0.3 <= rates[v] / total <= 0.7 for v in ("v1", "v3"))


def test_prometheus_shows_the_routed_reviews_split(mesh: tuple[Mesh, Prometheus]) -> None:
    bookinfo, prometheus = mesh
    send_productpage_requests(bookinfo, 50)
    eventually(
        lambda: (
            {"v1", "v3"}
            <= prometheus.by_label(
                'istio_requests_total{destination_service_name="reviews"}', "destination_version"
            ).keys()
        ),
        timeout=SCRAPE_WAIT_S,
        what="Prometheus to scrape reviews request counts",
    )
    send_productpage_requests(bookinfo, 100)
    eventually(
        lambda: split_is_fifty_fifty(prometheus),
        timeout=SCRAPE_WAIT_S,
        what=f"{SPLIT_QUERY} to show v1 and v3 near 50 % each and no v2",
    )
    rates = prometheus.by_label(SPLIT_QUERY, "destination_version")
    assert set(rates) == {"v1", "v3"}, rates

    # Series carry the labels Kubernetes service discovery gives Istio users.
    (series, *_) = prometheus.query(
        'istio_requests_total{reporter="source",destination_service_name="reviews"}'
    )
    labels = series["metric"]
    assert (labels["namespace"], labels["pod"], labels["app"], labels["version"]) == (
        "default",
        "productpage-v1",
        "productpage",
        "v1",
    )
    assert labels["job"] == "envoy-stats"


def test_trellisd_metrics_are_scraped_and_down_stops_prometheus(
    mesh: tuple[Mesh, Prometheus],
) -> None:
    bookinfo, prometheus = mesh
    eventually(
        lambda: sum(prometheus.by_label("pilot_xds", "pod").values()) > 0,
        timeout=SCRAPE_WAIT_S,
        what="pilot_xds (connected proxies) from trellisd",
    )
    assert prometheus.by_label("pilot_xds", "app").keys() == {"istiod"}
    eventually(
        lambda: (
            prometheus.by_label("sum(pilot_xds_pushes) by (type)", "type").keys()
            >= {"cds", "eds", "lds", "rds", "sds"}
        ),
        timeout=SCRAPE_WAIT_S,
        what="pilot_xds_pushes by type",
    )
    # reviews (50/50) and bookinfo (the gateway's routes, applied by `trellis demo`)
    assert prometheus.by_label("pilot_virt_services", "job") == {"pilot": 2.0}

    status = cli_json(bookinfo, "status")
    assert status["mesh"]["prometheus_port"] == int(prometheus.base.rsplit(":", 1)[1])
    assert f"Prometheus: {prometheus.base}/" in bookinfo.cli("status").stdout
    (component,) = [c for c in status["components"] if c["name"] == "prometheus"]
    assert component["alive"]
    bookinfo.cli("down", timeout=120)
    assert not pid_alive(component["pid"])
