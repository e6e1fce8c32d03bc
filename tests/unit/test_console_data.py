"""Console data paths: the embedded scraper over real sockets, PromQL text, validation with
analyzer codes, inventory shapes, log tails and the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from trellis.api.kinds import parse_documents
from trellis.console import config_api, drilldown, inventory
from trellis.console.context import ConsoleSettings
from trellis.console.metrics_source import EmbeddedSource, RateQuery, ScrapeTarget, promql
from trellis.console.openapi import openapi_document
from trellis.console.samples import REQUESTS, RateRow
from trellis.console.server import build_app

LINE = 'istio_requests_total{{reporter="destination",destination_workload="reviews-v1",response_code="200"}} {}\n'


class StatsEndpoint:
    """A stand-in for one proxy's :15090 on a real socket: serves whatever count is set."""

    def __init__(self) -> None:
        self.count = 0
        self.up = True

    async def handle(self, _: web.Request) -> web.Response:
        if not self.up:
            return web.Response(status=503)
        return web.Response(text=LINE.format(self.count))


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[StatsEndpoint, str]]:
    stats = StatsEndpoint()
    app = web.Application()
    app.router.add_get("/stats/prometheus", stats.handle)
    server = TestServer(app)
    await server.start_server()
    yield stats, f"127.0.0.1:{server.port}"
    await server.close()


async def test_embedded_source_rates_from_successive_real_scrapes(
    endpoint: tuple[StatsEndpoint, str],
) -> None:
    stats, address = endpoint
    now = [1000.0]

    async def targets() -> list[ScrapeTarget]:
        return [ScrapeTarget("default", "reviews-v1", address)]

    source = EmbeddedSource(targets, clock=lambda: now[0])
    query = RateQuery(REQUESTS, 60, ("destination_workload",))
    async with aiohttp.ClientSession() as session:
        await source.scrape_once(session)
        stats.count, now[0] = 50, 1010.0
        await source.scrape_once(session)
        [row] = await source.rates(query)
        assert row.value == 5.0 and row.labels == {"destination_workload": "reviews-v1"}
        stats.up, now[0] = False, 1020.0  # a missed scrape keeps the last values: no spike
        await source.scrape_once(session)
        stats.up, stats.count, now[0] = True, 60, 1030.0
        await source.scrape_once(session)
    [row] = await source.rates(RateQuery(REQUESTS, 20, ("destination_workload",)))
    assert row.value == pytest.approx(10 / 20)
    series = await source.rate_series(query, start=1010, end=1030, step=10)
    assert [v for _, v in series[0].datapoints] == [5.0, 2.5, 2.0]


def test_promql_is_a_grouped_rate() -> None:
    query = RateQuery(REQUESTS, 300, ("source_app", "response_code"), {"reporter": "destination"})
    assert promql(query) == (
        'sum(rate(istio_requests_total{reporter="destination"}[300s])) by (source_app,response_code)'
    )


STORED = parse_documents(
    """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""
)


def test_validate_reports_missing_subset_as_ist0101() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v3}}]}]
"""
    result = config_api.validate_text(text, "default", STORED)
    assert result["valid"] is False
    [check] = result["checks"]
    assert check["code"] == "IST0101"
    assert check["severity"] == "error" and "v3" in check["message"]
    assert check["resource"] == "VirtualService default/reviews"


def test_validate_reports_parse_and_schema_problems_as_ist0106() -> None:
    for text in (
        "kind: [",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: x}\nspec: {hosts: [a], bogus: 1}\n",
    ):
        result = config_api.validate_text(text, "default", STORED)
        assert result["valid"] is False
        assert {c["code"] for c in result["checks"]} == {"IST0106"}


def test_valid_config_has_no_error_checks() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
"""
    assert config_api.validate_text(text, "default", STORED)["valid"] is True


def test_inventory_shapes_and_health() -> None:
    snap = inventory.Snapshot(
        workloads=[
            {
                "name": "reviews-v1",
                "namespace": "default",
                "ip": "198.18.0.5",
                "labels": {"app": "reviews", "version": "v1"},
                "hasSidecar": True,
            },
        ],
        running={("default", "reviews-v1"): {"alive": True, "restarts": 1}},
        services=[
            {
                "metadata": {"name": "reviews", "namespace": "default"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080}]},
            },
        ],
        proxy_status={("default", "reviews-v1"): "SYNCED"},
        rates=[
            RateRow(
                {
                    "reporter": "destination",
                    "destination_workload": "reviews-v1",
                    "destination_workload_namespace": "default",
                    "destination_app": "reviews",
                    "destination_service_name": "reviews",
                    "destination_service_namespace": "default",
                    "response_code": "500",
                },
                1.0,
            ),
            RateRow(
                {
                    "reporter": "destination",
                    "destination_workload": "reviews-v1",
                    "destination_workload_namespace": "default",
                    "destination_app": "reviews",
                    "destination_service_name": "reviews",
                    "destination_service_namespace": "default",
                    "response_code": "200",
                },
                9.0,
            ),
        ],
    )
    [w] = inventory.workload_list(snap, "default")["workloads"]
    assert w["proxyStatus"] == "SYNCED" and w["pods"][0]["status"] == "Running"
    assert w["health"]["status"] == "Failure"  # 10 % 5xx
    [svc] = [inventory.service_item(snap, s) for s in inventory.services_in(snap, "default")]
    assert svc["health"]["status"] == "Failure" and svc["selector"] == {"app": "reviews"}
    assert inventory.app_names(snap, "default") == ["reviews"]
    assert snap.namespaces() == ["default"]


def test_entity_match_per_direction() -> None:
    assert drilldown.entity_match("workloads", "default", "reviews-v1", "inbound") == {
        "reporter": "destination",
        "destination_workload": "reviews-v1",
        "destination_workload_namespace": "default",
    }
    assert drilldown.entity_match("apps", "default", "productpage", "outbound")["source_app"] == (
        "productpage"
    )


def test_log_tail_lifts_envoy_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "envoy.log"
    log.write_text(
        "".join(f'[2026-01-01T00:00:0{i}.000Z] "GET /{i} HTTP/1.1" 200\n' for i in range(9))
    )
    body = drilldown.tail(log, 2)
    assert [e["timestamp"] for e in body["entries"]] == [
        "2026-01-01T00:00:07.000Z",
        "2026-01-01T00:00:08.000Z",
    ]
    assert drilldown.tail(tmp_path / "missing.log", 5) == {"entries": []}


def test_openapi_describes_every_api_route(tmp_path: Path) -> None:
    app = build_app(ConsoleSettings(state_dir=tmp_path))
    served = {
        r.resource.canonical.replace("{kind:workloads|services|apps}", "{kind}")
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/")
        and r.method != "HEAD"
    } - {"/api/{rest}"}
    described = set(openapi_document()["paths"])
    normalise = {p.replace("{name}", "{x}").replace("{pod}", "{x}") for p in served}
    assert normalise == {p.replace("{name}", "{x}").replace("{pod}", "{x}") for p in described}
