"""Istio's traffic-management tasks, done on Trellis as istio.io does them (issue #3, item 6).

Bookinfo's fault-injection and request-timeout tasks go through the ingress gateway; circuit
breaking, outlier detection, mirroring, retries, load balancing and CORS are proved on httpbin
instances called from inside the mesh; TCP traffic shifting on the tcp-echo sample. Every test
applies its resources, polls until they are in force, asserts, and deletes them again.
"""

from __future__ import annotations

import collections
import contextlib
import json
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from samples.bookinfo.productpage import REVIEWS_UNAVAILABLE
from samples.bookinfo.reviews import RATINGS_UNAVAILABLE

from tests.e2e.meshctl import (
    HTTPBIN_CLIENT,
    HTTPBIN_URL,
    NETWORKING,
    REPO,
    Mesh,
    Request,
    applied,
    envoy_stat,
    eventually,
    in_parallel,
    mesh_http,
    mesh_tcp,
    run_httpbin,
)

pytestmark = pytest.mark.e2e

CLIENT = HTTPBIN_CLIENT
TCP_ECHO_DIR = REPO / "samples" / "tcp-echo"
DOMAIN = "default.svc.cluster.local"

# Two more Services of httpbin instances: `resilient` has a healthy and an always-failing
# instance (outlier detection), `flaky` one instance failing every other request (retries).
EXTRA_SERVICES = "\n---\n".join(
    f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 8000, targetPort: 8080}}]
"""
    for name in ("resilient", "flaky")
)
EXTRA_INSTANCES: dict[str, tuple[str, ...]] = {
    "httpbin-v2": ("app=httpbin,version=v2",),
    "resilient-ok": ("app=resilient,version=v1",),
    "resilient-bad": ("app=resilient,version=v2", "--fail-every", "1", "--fail-status", "500"),
    "flaky": ("app=flaky,version=v1", "--fail-every", "2"),
}


def run_tcp_echo(mesh: Mesh, version: str, prefix: str) -> None:
    """One tcp-echo version from samples/tcp-echo, answering `prefix <line>`."""
    mesh.cli(
        "run",
        f"tcp-echo-{version}",
        "--port",
        "9000",
        "--labels",
        f"app=tcp-echo,version={version}",
        "--",
        sys.executable,
        str(TCP_ECHO_DIR / "tcp_echo.py"),
        "--port",
        "9000",
        "--prefix",
        prefix,
    )


TCP_ECHO_INSTANCES = {"tcp-echo-v1": "one", "tcp-echo-v2": "two"}


@pytest.fixture(scope="module")
def mesh(httpbin: Mesh) -> Iterator[Mesh]:
    """The module's httpbin (v1) plus the instances above and tcp-echo v1/v2, all started at
    once and stopped at once (a stop drains its sidecar for seconds)."""
    starts = [
        *(
            lambda name=name, args=args: run_httpbin(httpbin, name, *args)
            for name, args in EXTRA_INSTANCES.items()
        ),
        *(
            lambda name=name, prefix=prefix: run_tcp_echo(httpbin, name[-2:], prefix)
            for name, prefix in TCP_ECHO_INSTANCES.items()
        ),
    ]
    try:
        in_parallel(*starts)
        httpbin.apply(EXTRA_SERVICES)
        httpbin.cli("apply", "-f", str(TCP_ECHO_DIR / "tcp-echo.yaml"))
        yield httpbin
    finally:
        httpbin.cli("delete", "-f", str(TCP_ECHO_DIR / "tcp-echo.yaml"), check=False)
        httpbin.cli("delete", "-f", "-", input=EXTRA_SERVICES, check=False)
        names = [*EXTRA_INSTANCES, *TCP_ECHO_INSTANCES]
        in_parallel(*(lambda name=name: httpbin.cli("stop", name, check=False) for name in names))


def statuses(mesh: Mesh, url: str, count: int, headers: dict[str, str] | None = None) -> list[int]:
    """Status codes of `count` sequential requests from the client workload."""
    return [r.status for r in mesh_http(mesh, CLIENT, [Request(url, headers=headers)] * count)]


def hostnames(mesh: Mesh, count: int, headers: dict[str, str] | None = None) -> list[str]:
    """Which httpbin instance answered each of `count` requests (go-httpbin's /hostname)."""
    replies = mesh_http(mesh, CLIENT, [Request(f"{HTTPBIN_URL}/hostname", headers=headers)] * count)
    return [str(r.json()["hostname"]) for r in replies]


_CLUSTER_STATS = """
import urllib.parse, urllib.request
query = urllib.parse.quote("^" + {prefix!r}.replace(".", "[.]").replace("|", "[|]"), safe="")
print(urllib.request.urlopen("http://127.0.0.1:15000/stats?filter=" + query, timeout=5).read().decode())
"""


def cluster_stats(mesh: Mesh, service: str) -> dict[str, int]:
    """The client Envoy's stats of `service`'s port-8000 cluster, by short name (one exec)."""
    prefix = f"cluster.outbound|8000||{service}.{DOMAIN}."
    stats: dict[str, int] = {}
    for line in mesh.exec_in(CLIENT, _CLUSTER_STATS.format(prefix=prefix)).splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(prefix) and value.strip().isdigit():
            stats[name.removeprefix(prefix)] = int(value)
    return stats


# --- Bookinfo: fault injection and request timeouts ------------------------------------------


def page(mesh: Mesh, user: str | None) -> str:
    """The product page, signed in as `user` (productpage's session cookie) or anonymous."""
    status, body = mesh.http("/productpage", {"cookie": f"session={user}"} if user else {})
    assert status == 200
    return body


def reviews_json(mesh: Mesh, user: str | None) -> Any:
    headers = {"cookie": f"session={user}"} if user else {}
    status, body = mesh.http("/api/v1/products/0/reviews", headers)
    assert status == 200, body
    return json.loads(body)


@contextlib.contextmanager
def bookinfo_files(mesh: Mesh, *names: str) -> Iterator[None]:
    """samples/bookinfo/networking files applied as `kubectl apply` of each in turn would leave
    them (a later file's resource replaces an earlier one of the same name), in one apply."""
    latest: dict[tuple[str, str], Any] = {}
    for name in names:
        for doc in yaml.safe_load_all((NETWORKING / name).read_text()):
            latest[(doc["kind"], doc["metadata"]["name"])] = doc
    with applied(mesh, yaml.safe_dump_all(latest.values())):
        yield


def test_ratings_delay_for_jason_makes_reviews_unavailable(bookinfo: Mesh) -> None:
    """7 s on ratings outlasts productpage's 3 s reviews timeout (twice): reviews unavailable."""
    files = (
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-ratings-test-delay.yaml",
    )
    with bookinfo_files(bookinfo, *files):
        eventually(
            lambda: REVIEWS_UNAVAILABLE in page(bookinfo, "jason"),
            timeout=60,
            what="jason's reviews to time out behind the ratings delay",
        )
        anonymous = page(bookinfo, None)
        assert REVIEWS_UNAVAILABLE not in anonymous and "Reviewer1" in anonymous
        # reviews v2 did call ratings for jason: the delay was injected by its sidecar.
        assert envoy_stat(
            bookinfo, "reviews-v2", "http.outbound_0.0.0.0_9080.fault.delays_injected"
        )


def test_ratings_abort_for_jason_puts_the_error_in_reviews(bookinfo: Mesh) -> None:
    """HTTP 500 for jason's ratings calls: reviews v2 reports the error; others get v3 stars."""
    files = ("virtual-service-reviews-jason-v2-v3.yaml", "virtual-service-ratings-test-abort.yaml")

    def jason_sees_the_error() -> bool:
        ratings = [review["rating"] for review in reviews_json(bookinfo, "jason")["reviews"]]
        return ratings == [{"error": RATINGS_UNAVAILABLE}] * 2

    with bookinfo_files(bookinfo, *files):
        eventually(jason_sees_the_error, what="the ratings abort for jason")
        for _ in range(3):
            others = reviews_json(bookinfo, None)
            assert others["podname"] == "reviews-v3"
            assert [r["rating"]["stars"] for r in others["reviews"]] == [5, 4]
        assert 'data-stars="5"' in page(bookinfo, None)


REVIEWS_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: v2}}}}]
{timeout}"""

RATINGS_DELAY_2S = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - fault: {delay: {fixedDelay: 2s, percentage: {value: 100}}}
    route: [{destination: {host: ratings, subset: v1}}]
"""


def test_route_timeout_on_reviews_cuts_off_a_slow_ratings(bookinfo: Mesh) -> None:
    """Istio's request-timeouts task: stars after 2 s, then reviews unavailable at 0.5 s."""
    delays = "http.outbound_0.0.0.0_9080.fault.delays_injected"
    with applied(bookinfo, REVIEWS_V2.format(timeout="") + "---" + RATINGS_DELAY_2S):
        before = envoy_stat(bookinfo, "reviews-v2", delays)
        eventually(
            lambda: (
                'data-stars="5"' in page(bookinfo, None)
                and envoy_stat(bookinfo, "reviews-v2", delays) > before
            ),
            timeout=30,
            what="reviews v2 with stars behind a delayed ratings",
        )
        bookinfo.apply(REVIEWS_V2.format(timeout="    timeout: 0.5s\n"))
        eventually(
            lambda: REVIEWS_UNAVAILABLE in page(bookinfo, None),
            timeout=30,
            what="the 0.5 s reviews timeout",
        )


# --- circuit breaking and outlier detection ---------------------------------------------------

# Runs inside the client workload: `clients` threads, each sending `per_client` requests over
# fresh connections; prints [status, x-envoy-overloaded] per request.
_LOAD = """
import http.client, json, threading
results, lock = [], threading.Lock()
def client():
    for _ in range({per_client}):
        conn = http.client.HTTPConnection("httpbin", 8000, timeout=15)
        conn.request("GET", {path!r})
        resp = conn.getresponse()
        resp.read()
        with lock:
            results.append([resp.status, resp.getheader("x-envoy-overloaded")])
        conn.close()
threads = [threading.Thread(target=client) for _ in range({clients})]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""

CIRCUIT_BREAKER = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"""


def load(mesh: Mesh, clients: int, per_client: int, path: str) -> list[tuple[int, str | None]]:
    code = _LOAD.format(clients=clients, per_client=per_client, path=path)
    return [(int(status), flag) for status, flag in json.loads(mesh.exec_in(CLIENT, code))]


def overflow_logged(mesh: Mesh) -> bool:
    """The client sidecar logged a 503 with the overflow flag (UO) for httpbin's cluster."""
    log = mesh.cli("logs", CLIENT, "--proxy").stdout.splitlines()
    cluster = f"outbound|8000||httpbin.{DOMAIN}"
    return any('" 503 UO ' in line and cluster in line for line in log)


def test_circuit_breaker_overflows_concurrent_clients_only(mesh: Mesh) -> None:
    """One connection and one pending request allowed: concurrent callers get 503 UO."""
    # Each request holds its connection for a moment, so four callers always overlap.
    path = "/delay/0.2"
    with applied(mesh, CIRCUIT_BREAKER):
        eventually(
            lambda: any(status == 503 for status, _ in load(mesh, 4, 3, path)),
            timeout=30,
            what="the circuit breaker to trip",
        )
        results = load(mesh, 4, 5, path)
        codes = collections.Counter(status for status, _ in results)
        assert set(codes) == {200, 503}, codes
        assert all(flag == "true" for status, flag in results if status == 503), results
        assert cluster_stats(mesh, "httpbin")["upstream_rq_pending_overflow"] > 0
        # Envoy flushes its access log about once a second.
        eventually(lambda: overflow_logged(mesh), what="UO in the client sidecar's access log")
        # One caller at a time never exceeds the limits.
        assert statuses(mesh, f"{HTTPBIN_URL}/get", 20) == [200] * 20


OUTLIER_DETECTION = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: resilient}
spec:
  host: resilient
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
"""


def test_outlier_detection_ejects_the_failing_instance(mesh: Mesh) -> None:
    """resilient-bad answers 500 to everything; once ejected, every call lands on resilient-ok."""
    url = "http://resilient:8000/get"
    # Both instances are in the pool: 20 calls spread over two of them hit the bad one.
    eventually(lambda: {200, 500} <= set(statuses(mesh, url, 20)), what="both instances")
    with applied(mesh, OUTLIER_DETECTION):
        eventually(
            lambda: statuses(mesh, url, 20) == [200] * 20,
            timeout=30,
            what="the failing instance to be ejected",
        )
        stats = cluster_stats(mesh, "resilient")
        assert stats["outlier_detection.ejections_active"] == 1, stats
        assert stats["outlier_detection.ejections_enforced_total"] >= 1, stats


# --- mirroring ----------------------------------------------------------------------------

MIRROR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin, subset: v1}, weight: 100}]
    mirror: {host: httpbin, subset: v2}
    mirrorPercentage: {value: 100.0}
"""


def mirrored_copies(mesh: Mesh, probe: str) -> list[str]:
    """httpbin-v2's log lines for requests carrying `probe` in their query."""
    return [line for line in mesh.cli("logs", "httpbin-v2").stdout.splitlines() if probe in line]


def test_mirror_copies_v1_traffic_to_v2_with_shadow_host(mesh: Mesh) -> None:
    with applied(mesh, MIRROR):
        eventually(
            lambda: (
                set(hostnames(mesh, 6)) == {"httpbin"} and bool(mirrored_copies(mesh, ""))
            ),  # v2 has seen some copy
            what="all traffic on v1, mirrored to v2",
        )
        probe = f"probe={uuid.uuid4().hex}"
        replies = mesh_http(mesh, CLIENT, [Request(f"{HTTPBIN_URL}/hostname?{probe}")] * 10)
        assert [(r.status, r.json()["hostname"]) for r in replies] == [(200, "httpbin")] * 10
        eventually(lambda: len(mirrored_copies(mesh, probe)) == 10, what="v2 to log 10 copies")
        # Envoy marks the copies by appending -shadow to the authority's host.
        assert all('host="httpbin-shadow:8000"' in line for line in mirrored_copies(mesh, probe))


# --- load balancing, CORS, retries ----------------------------------------------------------

CONSISTENT_HASH = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
"""


def instance_per_user(mesh: Mesh, users: int, per_user: int) -> dict[str, set[str]]:
    """Which instances answered each user's calls (users interleaved, all in one exec)."""
    names = [f"user-{i}" for i in range(users)] * per_user
    requests = [Request(f"{HTTPBIN_URL}/hostname", headers={"x-user": name}) for name in names]
    seen: dict[str, set[str]] = collections.defaultdict(set)
    for name, reply in zip(names, mesh_http(mesh, CLIENT, requests), strict=True):
        seen[name].add(str(reply.json()["hostname"]))
    return dict(seen)


def test_consistent_hash_on_a_header_pins_each_user_to_one_instance(mesh: Mesh) -> None:
    eventually(lambda: set(hostnames(mesh, 12)) == {"httpbin", "httpbin-v2"}, what="2 instances")
    with applied(mesh, CONSISTENT_HASH):
        # Under the default balancing 8 users x 6 calls each landing on one instance is no luck.
        eventually(
            lambda: all(len(seen) == 1 for seen in instance_per_user(mesh, 8, 6).values()),
            what="the consistent-hash policy",
        )
        pinned = instance_per_user(mesh, 16, 10)
        assert all(len(seen) == 1 for seen in pinned.values()), pinned
        # The ring spreads users: 16 of them all hashing to one of two hosts would be 2**-15.
        assert set().union(*pinned.values()) == {"httpbin", "httpbin-v2"}, pinned


_ACTIVE_CLUSTER = """
import json, urllib.request
url = "http://127.0.0.1:15000/config_dump?resource=dynamic_active_clusters"
dump = json.load(urllib.request.urlopen(url, timeout=5))
for item in dump["configs"]:
    if item["cluster"]["name"] == {name!r}:
        print(json.dumps(item["cluster"]))
"""


def active_cluster(mesh: Mesh, name: str) -> Any:
    """The cluster as the client's Envoy accepted and runs it, or None."""
    out = mesh.exec_in(CLIENT, _ACTIVE_CLUSTER.format(name=name)).strip()
    return json.loads(out) if out else None


@pytest.mark.parametrize("policy", ["RANDOM", "LEAST_REQUEST", "ROUND_ROBIN"])
def test_simple_load_balancer_is_accepted_by_envoy(mesh: Mesh, policy: str) -> None:
    rule = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: httpbin}\n"
        f"spec: {{host: httpbin, trafficPolicy: {{loadBalancer: {{simple: {policy}}}}}}}\n"
    )
    name = f"outbound|8000||httpbin.{DOMAIN}"
    with applied(mesh, rule):
        eventually(
            lambda: (active_cluster(mesh, name) or {}).get("lb_policy", "ROUND_ROBIN") == policy,
            what=f"Envoy to run httpbin's cluster with {policy}",
        )
        # 16 calls under any of these policies reach both instances (2**-15 otherwise).
        assert set(hostnames(mesh, 16)) == {"httpbin", "httpbin-v2"}


CORS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - corsPolicy:
      allowOrigins: [{exact: "https://shop.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-exposed]
      maxAge: 24h
    route: [{destination: {host: httpbin}}]
"""


def preflight(origin: str) -> Request:
    headers = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "x-custom",
    }
    return Request(f"{HTTPBIN_URL}/anything/cors", method="OPTIONS", headers=headers)


def test_cors_preflight_is_answered_by_envoy(mesh: Mesh) -> None:
    allowed = preflight("https://shop.example")
    with applied(mesh, CORS):
        eventually(
            lambda: "access-control-allow-origin" in mesh_http(mesh, CLIENT, [allowed])[0].headers,
            what="the CORS policy",
        )
        ok, refused = mesh_http(mesh, CLIENT, [allowed, preflight("https://evil.example")])
        assert ok.status == 200 and ok.headers["server"] == "envoy"
        assert ok.headers["access-control-allow-origin"] == "https://shop.example"
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert ok.headers["access-control-allow-headers"] == "x-custom"
        assert ok.headers["access-control-max-age"] == "86400"
        assert "access-control-allow-origin" not in refused.headers
        (simple,) = mesh_http(
            mesh,
            CLIENT,
            [Request(f"{HTTPBIN_URL}/get", headers={"origin": "https://shop.example"})],
        )
        assert simple.headers["access-control-allow-origin"] == "https://shop.example"
        assert simple.headers["access-control-expose-headers"] == "x-exposed"


RETRIES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky}
spec:
  hosts: [flaky]
  http:
  - route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: 5xx}
"""


def test_retries_on_5xx_hide_a_flaky_instance(mesh: Mesh) -> None:
    """flaky fails every other request with 503; Envoy's retry makes every call succeed."""
    url = "http://flaky:8000/get"
    # Istio's default policy does not retry an upstream's own 503.
    eventually(lambda: 503 in statuses(mesh, url, 4), what="flaky to fail without retries")
    with applied(mesh, RETRIES):
        eventually(lambda: statuses(mesh, url, 10) == [200] * 10, what="the retry policy")
        retried = cluster_stats(mesh, "flaky")["upstream_rq_retry"]
        assert statuses(mesh, url, 10) == [200] * 10
        # flaky failed every other attempt: at least 5 of these 10 calls needed a retry.
        assert cluster_stats(mesh, "flaky")["upstream_rq_retry"] >= retried + 5


# --- TCP traffic shifting -------------------------------------------------------------------


def test_tcp_traffic_shifts_a_fifth_of_connections_to_v2(mesh: Mesh) -> None:
    def answers(rounds: int) -> collections.Counter[str]:
        return collections.Counter(mesh_tcp(mesh, CLIENT, "tcp-echo", 9000, rounds))

    try:
        mesh.cli("apply", "-f", str(TCP_ECHO_DIR / "tcp-echo-all-v1.yaml"))
        eventually(lambda: set(answers(20)) == {"one hello"}, what="all connections to v1")
        mesh.cli("apply", "-f", str(TCP_ECHO_DIR / "tcp-echo-20-v2.yaml"))
        eventually(lambda: "two hello" in answers(20), what="the 80/20 split")
        counts = answers(100)
        assert set(counts) == {"one hello", "two hello"}, counts
        # Binomial(100, 0.8): mean 80, sd 4; 60..95 is 5 sd below and 3.75 sd above.
        assert 60 <= counts["one hello"] <= 95, counts
    finally:
        mesh.cli("delete", "-f", str(TCP_ECHO_DIR / "tcp-echo-20-v2.yaml"), check=False)
