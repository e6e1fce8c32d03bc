"""Istio's standard metrics on every sidecar's :15090/stats/prometheus (DESIGN.md §6), and the
Telemetry resource's metrics overrides and access-logging switch.

Requests to /productpage through the ingress are counted by productpage-v1's agent twice:
reporter="destination" for the requests it received, reporter="source" for its calls to
reviews; reviews-v1's agent counts them again as destination, naming productpage-v1 as the
source. A scrape runs inside the workload's network namespace, where 127.0.0.1:15090 is that
workload's agent.
"""

from __future__ import annotations

import functools
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.meshctl import Mesh, Request, eventually, mesh_http, mesh_tcp
from trellis.telemetry.istio_metrics import parse_envoy_text

pytestmark = pytest.mark.e2e

REQUESTS = 5
_SCRAPE = (
    "import urllib.request\n"
    "url = 'http://127.0.0.1:15090/stats/prometheus'\n"
    "print(urllib.request.urlopen(url, timeout=10).read().decode())\n"
)


def _scrape(mesh: Mesh, workload: str = "productpage-v1") -> str:
    return mesh.exec_in(workload, _SCRAPE)


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

    eventually(counted, timeout=60, what="productpage's destination-side count")
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
    assert dest.labels["connection_security_policy"] in {"mutual_tls", "none"}
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

    eventually(histogram_flushed, timeout=60, what="the duration histogram")


# --- both reporters, bytes, TCP ---------------------------------------------------------------

PAGES = 4
TO_REVIEWS_V1 = {
    "reporter": "source",
    "source_workload": "productpage-v1",
    "destination_service_name": "reviews",
    "destination_version": "v1",
    "destination_workload": "reviews-v1",  # what the subset's endpoints say
    "destination_app": "reviews",
}
REVIEWS_V1_FROM_PRODUCTPAGE = {
    "reporter": "destination",
    "destination_workload": "reviews-v1",
    "destination_version": "v1",
    "source_workload": "productpage-v1",
    "source_workload_namespace": "default",
    "source_app": "productpage",
    "source_version": "v1",
    "source_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
    "connection_security_policy": "mutual_tls",
}
RECEIVED_BY_REVIEWS_V1 = {"reporter": "destination", "destination_workload": "reviews-v1"}


@pytest.fixture
def reviews_v1_only(bookinfo: Mesh) -> Iterator[Mesh]:
    bookinfo.apply_file("virtual-service-all-v1.yaml")
    try:
        eventually(
            lambda: all(bookinfo.reviews_pod() == "reviews-v1" for _ in range(5)),
            what="productpage to call reviews v1 only",
        )
        yield bookinfo
    finally:
        bookinfo.delete_file("virtual-service-all-v1.yaml")


FLUSH_S = 5.0  # Envoy's default stats_flush_interval: histograms move only at a flush


def _settled(mesh: Mesh, workload: str, histogram: str, **match: str) -> Callable[[], bool]:
    """A check that is true once the histogram's count has not moved for longer than one stats
    flush, so no sample of an earlier request lands inside the window a test measures.

    (Comparing it with istio_requests_total is not enough: on the destination side that counts
    requests the sidecar answered itself, e.g. RBAC denials of earlier tests, which never reach
    the inbound cluster's histograms.)"""
    seen: list[tuple[float, float]] = []

    def check() -> bool:
        count = _total(_scrape(mesh, workload), histogram + "_count", **match)
        now = time.monotonic()
        if not seen or seen[-1][1] != count:
            seen.append((now, count))
            return False
        return now - seen[-1][0] > FLUSH_S

    return check


def _grown(
    delta: Callable[..., float], before: str, workload: str, name: str, match: dict[str, str]
) -> bool:
    return delta(before, workload, name, **match) >= PAGES


def test_both_reporters_count_the_same_requests_with_istio_labels(reviews_v1_only: Mesh) -> None:
    mesh = reviews_v1_only
    for workload, match in (
        ("productpage-v1", TO_REVIEWS_V1),
        ("reviews-v1", RECEIVED_BY_REVIEWS_V1),
    ):
        eventually(
            _settled(mesh, workload, "istio_request_bytes", **match),
            timeout=120,  # a loaded 2-core machine flushes stats late
            what=f"{workload}'s histograms to catch up",
        )
    client_before = _scrape(mesh)
    server_before = _scrape(mesh, "reviews-v1")
    for _ in range(PAGES):
        assert mesh.http("/productpage")[0] == 200

    def delta(before: str, workload: str, name: str, **match: str) -> float:
        return _total(_scrape(mesh, workload), name, **match) - _total(before, name, **match)

    ok = {"response_code": "200"}
    checks = [
        (client_before, "productpage-v1", "istio_requests_total", {**TO_REVIEWS_V1, **ok}),
        (client_before, "productpage-v1", "istio_request_bytes_count", TO_REVIEWS_V1),
        (client_before, "productpage-v1", "istio_response_bytes_count", TO_REVIEWS_V1),
        (
            server_before,
            "reviews-v1",
            "istio_requests_total",
            {**REVIEWS_V1_FROM_PRODUCTPAGE, **ok},
        ),
        (server_before, "reviews-v1", "istio_request_bytes_count", RECEIVED_BY_REVIEWS_V1),
        (server_before, "reviews-v1", "istio_response_bytes_count", RECEIVED_BY_REVIEWS_V1),
    ]
    for before, workload, name, match in checks:
        eventually(
            functools.partial(_grown, delta, before, workload, name, match),
            timeout=60,
            what=f"{name} on {workload}",
        )
        assert delta(before, workload, name, **match) == PAGES, (workload, name, match)


ECHO = "metrics-echo"
ECHO_PORT = 9000
ECHO_SERVICE = f"""
apiVersion: v1
kind: Service
metadata: {{name: {ECHO}}}
spec:
  selector: {{app: {ECHO}}}
  ports: [{{name: tcp-echo, port: {ECHO_PORT}}}]
"""
ECHO_SERVER = """
import asyncio
async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", 9000)
    await server.serve_forever()
asyncio.run(main())
"""


@pytest.fixture
def tcp_echo(bookinfo: Mesh) -> Iterator[Mesh]:
    try:
        bookinfo.cli(
            "run",
            f"{ECHO}-v1",
            "--port",
            str(ECHO_PORT),
            "--labels",
            f"app={ECHO},version=v1",
            "--",
            sys.executable,
            "-c",
            ECHO_SERVER,
        )
        bookinfo.apply(ECHO_SERVICE)
        eventually(
            lambda: mesh_tcp(bookinfo, "productpage-v1", ECHO, ECHO_PORT, 1) == ["hello"],
            what="the TCP echo service to answer through the mesh",
        )
        yield bookinfo
    finally:
        bookinfo.cli("delete", "-f", "-", input=ECHO_SERVICE, check=False)
        bookinfo.cli("stop", f"{ECHO}-v1", check=False)


def test_tcp_metrics_count_connections_and_bytes(tcp_echo: Mesh) -> None:
    mesh, rounds = tcp_echo, 3
    to_echo = {"reporter": "source", "destination_service_name": ECHO, "request_protocol": "tcp"}
    at_echo = {"reporter": "destination", "destination_workload": f"{ECHO}-v1"}

    def closed_all(workload: str, match: dict[str, str]) -> bool:
        text = _scrape(mesh, workload)
        opened = _total(text, "istio_tcp_connections_opened_total", **match)
        return opened > 0 and opened == _total(text, "istio_tcp_connections_closed_total", **match)

    for workload, match in (("productpage-v1", to_echo), (f"{ECHO}-v1", at_echo)):
        eventually(functools.partial(closed_all, workload, match), timeout=60, what="closed")
    before = {w: _scrape(mesh, w) for w in ("productpage-v1", f"{ECHO}-v1")}
    assert mesh_tcp(mesh, "productpage-v1", ECHO, ECHO_PORT, rounds) == ["hello"] * rounds

    def delta(workload: str, name: str, match: dict[str, str]) -> float:
        return _total(_scrape(mesh, workload), name, **match) - _total(
            before[workload], name, **match
        )

    for workload, match in (("productpage-v1", to_echo), (f"{ECHO}-v1", at_echo)):
        eventually(functools.partial(closed_all, workload, match), timeout=60, what="closed")
        assert delta(workload, "istio_tcp_connections_opened_total", match) == rounds
        assert delta(workload, "istio_tcp_connections_closed_total", match) == rounds
        # "hello\n" each way per connection, in the request and in the response direction.
        assert delta(workload, "istio_tcp_received_bytes_total", match) >= 6 * rounds
        assert delta(workload, "istio_tcp_sent_bytes_total", match) >= 6 * rounds


# --- Telemetry: metrics overrides and access logging ------------------------------------------

QUIET_COUNT = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: productpage-metrics}
spec:
  selector: {matchLabels: {app: productpage}}
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT}
      disabled: true
    - match: {metric: REQUEST_DURATION}
      tagOverrides:
        tier: {value: "'frontend'"}
        response_flags: {operation: REMOVE}
"""


def test_telemetry_disables_a_metric_and_overrides_tags(bookinfo: Mesh) -> None:
    assert bookinfo.http("/productpage")[0] == 200
    bookinfo.apply(QUIET_COUNT)
    try:

        def overridden() -> bool:
            samples = list(parse_envoy_text(_scrape(bookinfo)))
            durations = [s for s in samples if s.name.startswith("istio_request_duration")]
            return (
                not any(s.name == "istio_requests_total" for s in samples)
                and bool(durations)
                and all(s.labels.get("tier") == "frontend" for s in durations)
                and not any("response_flags" in s.labels for s in durations)
            )

        eventually(overridden, timeout=60, what="productpage's metrics overrides")
        elsewhere = _scrape(bookinfo, "details-v1")  # productpage called it above
        assert "istio_requests_total{" in elsewhere  # other workloads keep theirs
    finally:
        bookinfo.cli("delete", "-f", "-", input=QUIET_COUNT, check=False)
    eventually(
        lambda: "istio_requests_total{" in _scrape(bookinfo), timeout=60, what="the metric back"
    )


NO_SERVER_LOGS = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: productpage-logs}
spec:
  selector: {matchLabels: {app: productpage}}
  accessLogging:
  - match: {mode: SERVER}
    disabled: true
"""


def _proxy_log(mesh: Mesh) -> str:
    """What `trellis logs productpage-v1 --proxy` prints, read straight from its file (this
    is polled; a CLI process per poll is slow on a busy machine)."""
    path = mesh.state_dir / "workloads" / "default" / "productpage-v1" / "envoy.log"
    if path.is_file():
        return path.read_text(errors="replace")
    return mesh.cli("logs", "productpage-v1", "--proxy").stdout


def _logged_after_fence(mesh: Mesh) -> bool:
    """Whether productpage's sidecar logs a request it serves. Its log is written in order, so
    once a later outbound request (the fence, still logged: client side) shows up, the marked
    inbound request would have shown up before it."""
    marker, fence = uuid.uuid4().hex, uuid.uuid4().hex
    assert mesh.http(f"/productpage?m={marker}")[0] == 200
    mesh_http(mesh, "productpage-v1", [Request(f"http://details:9080/details/{fence}")])
    log = ""

    def fenced() -> bool:
        nonlocal log
        log = _proxy_log(mesh)
        return fence in log

    eventually(fenced, what="the fence request in productpage's proxy log")
    return marker in log


def test_telemetry_access_logging_disabled_stops_server_side_log_lines(bookinfo: Mesh) -> None:
    assert _logged_after_fence(bookinfo)
    bookinfo.apply(NO_SERVER_LOGS)
    try:
        # Generous poll timeouts: each probe runs a process in the pod, and connections the
        # gateway pooled keep the old filter chain until Envoy has drained them.
        eventually(lambda: not _logged_after_fence(bookinfo), timeout=60, what="logging off")
    finally:
        bookinfo.cli("delete", "-f", "-", input=NO_SERVER_LOGS, check=False)
    eventually(lambda: _logged_after_fence(bookinfo), timeout=60, what="logging back on")
