"""Every VirtualService feature of the core issue, proved through real Envoy sidecars.

Requests are sent from inside the mesh (`trellis exec`, captured by the caller's sidecar) to an
httpbin workload, whose echo shows what arrived, or through the ingress gateway to Bookinfo.
Each test applies its rules, waits until several consecutive requests show them in force, and
deletes them again.
"""

from __future__ import annotations

import collections
import contextlib
import sys
from collections.abc import Iterator

import pytest

from tests.e2e.meshctl import (
    HTTPBIN_CLIENT,
    HTTPBIN_URL,
    Mesh,
    Reply,
    Request,
    applied,
    envoy_stat,
    eventually,
    in_parallel,
    mesh_http,
    mesh_tcp,
)

pytestmark = pytest.mark.e2e

CLIENT = HTTPBIN_CLIENT
OTHER_CLIENT = "details-v1"
BASE = HTTPBIN_URL


def wait_in_force(
    mesh: Mesh, request: Request, expected: str, workload: str = CLIENT, times: int = 3
) -> None:
    """Until `times` consecutive requests from `workload` carry the rule's X-Rule marker."""

    def check() -> bool:
        replies = mesh_http(mesh, workload, [request] * times)
        return all(r.status == 200 and r.echoed_header("X-Rule") == expected for r in replies)

    eventually(check, what=f"rule {expected!r} to be in force on {workload}")


def vs(name: str, host: str, http_rules: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  http:\n{http_rules}"
    )


def marker(rule: str) -> str:
    """A route to httpbin that tags the request with `X-Rule: rule` (httpbin echoes it)."""
    return (
        f"    headers: {{request: {{set: {{x-rule: {rule}}}}}}}\n"
        "    route: [{destination: {host: httpbin}}]\n"
    )


# --- matching -----------------------------------------------------------------------------

MATCH_RULES = vs(
    "httpbin-matches",
    "httpbin",
    "  - match: [{uri: {exact: /anything/exact}}]\n"
    + marker("uri-exact")
    + "  - match: [{uri: {prefix: /anything/prefix/}}]\n"
    + marker("uri-prefix")
    + '  - match: [{uri: {regex: "/anything/re/[0-9]+"}}]\n'
    + marker("uri-regex")
    + "  - match: [{headers: {x-exact: {exact: foo}}}]\n"
    + marker("header-exact")
    + "  - match: [{headers: {x-prefix: {prefix: pre}}}]\n"
    + marker("header-prefix")
    + '  - match: [{headers: {x-regex: {regex: "v[0-9]+"}}}]\n'
    + marker("header-regex")
    + "  - match: [{queryParams: {color: {exact: blue}}}]\n"
    + marker("query")
    + "  - match: [{method: {exact: POST}}]\n"
    + marker("method")
    + "  - match: [{uri: {prefix: /anything/both}, headers: {x-both: {exact: 'yes'}}}]\n"
    + marker("uri-and-header")
    + "  -\n"
    + marker("default"),
)

# (request, the rule that must take it): each positive case beside a near miss.
MATCH_CASES = [
    (Request(f"{BASE}/anything/exact"), "uri-exact"),
    (Request(f"{BASE}/anything/exact/more"), "default"),
    (Request(f"{BASE}/anything/prefix/a/b"), "uri-prefix"),
    (Request(f"{BASE}/anything/prefix"), "default"),
    (Request(f"{BASE}/anything/re/123"), "uri-regex"),
    (Request(f"{BASE}/anything/re/12a"), "default"),  # regexes match the whole path
    (Request(f"{BASE}/anything/h", headers={"x-exact": "foo"}), "header-exact"),
    (Request(f"{BASE}/anything/h", headers={"x-exact": "foobar"}), "default"),
    (Request(f"{BASE}/anything/h", headers={"x-prefix": "prefixed"}), "header-prefix"),
    (Request(f"{BASE}/anything/h", headers={"x-prefix": "xpre"}), "default"),
    (Request(f"{BASE}/anything/h", headers={"x-regex": "v42"}), "header-regex"),
    (Request(f"{BASE}/anything/h", headers={"x-regex": "v42b"}), "default"),
    (Request(f"{BASE}/anything/q?color=blue"), "query"),
    (Request(f"{BASE}/anything/q?color=bluer"), "default"),
    (Request(f"{BASE}/anything/m", method="POST", body="x"), "method"),
    (Request(f"{BASE}/anything/m", method="PUT", body="x"), "default"),
    (Request(f"{BASE}/anything/both", headers={"x-both": "yes"}), "uri-and-header"),
    (Request(f"{BASE}/anything/both"), "default"),  # conditions in one block are ANDed
]


def test_uri_header_query_and_method_matches_pick_the_rule(httpbin: Mesh) -> None:
    with applied(httpbin, MATCH_RULES):
        wait_in_force(httpbin, Request(f"{BASE}/anything/other"), "default")
        replies = mesh_http(httpbin, CLIENT, [request for request, _ in MATCH_CASES])
        got = [(r.status, r.echoed_header("X-Rule")) for r in replies]
        assert got == [(200, rule) for _, rule in MATCH_CASES]
        echo = replies[14].json()  # the POST
        assert echo["method"] == "POST" and echo["data"] == "x"


# --- weighted routes to subsets -----------------------------------------------------------

REVIEWS_WEIGHTED = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-weighted}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: probe}}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route:
    - {destination: {host: reviews, subset: v2}, weight: 25}
    - {destination: {host: reviews, subset: v3}, weight: 75}
"""


def test_weighted_routes_split_reviews_between_subsets(httpbin: Mesh) -> None:
    with applied(httpbin, REVIEWS_WEIGHTED):
        # The probe user's rule and the weights arrive in one route configuration.
        eventually(
            lambda: (
                all(httpbin.reviews_pod("probe") == "reviews-v1" for _ in range(6))
                and "reviews-v1" not in {httpbin.reviews_pod() for _ in range(10)}
            ),
            what="the weighted reviews rule",
        )
        counts = collections.Counter(httpbin.reviews_pod() for _ in range(200))
        assert set(counts) == {"reviews-v2", "reviews-v3"}, counts
        # Binomial(200, 0.25): mean 50, sd 6.1; 20..85 is wider than 4.9 sd either side.
        assert 20 <= counts["reviews-v2"] <= 85, counts


# --- rewrite, redirect, header operations --------------------------------------------------

REWRITE_AND_REDIRECT = vs(
    "httpbin-rewrite",
    "httpbin",
    "  - match: [{uri: {prefix: /old/}}]\n"
    "    rewrite: {uri: /anything/new/, authority: rewritten.example}\n"
    "    route: [{destination: {host: httpbin}}]\n"
    "  - match: [{uri: {prefix: /moved}}]\n"
    "    redirect: {uri: /anything/here, authority: elsewhere.example, redirectCode: 302}\n"
    "  - match: [{uri: {prefix: /gone}}]\n"
    "    redirect: {uri: /anything/forever}\n"
    "  -\n" + marker("rewrite-test"),
)


def test_rewrite_changes_path_and_authority(httpbin: Mesh) -> None:
    with applied(httpbin, REWRITE_AND_REDIRECT):
        wait_in_force(httpbin, Request(f"{BASE}/anything"), "rewrite-test")
        (reply,) = mesh_http(httpbin, CLIENT, [Request(f"{BASE}/old/thing?q=1")])
        assert reply.status == 200
        echo = reply.json()
        assert echo["url"] == "http://rewritten.example/anything/new/thing?q=1"
        assert echo["headers"]["Host"] == ["rewritten.example"]
        assert echo["headers"]["X-Envoy-Original-Path"] == ["/old/thing?q=1"]


def test_redirect_answers_with_code_and_location(httpbin: Mesh) -> None:
    with applied(httpbin, REWRITE_AND_REDIRECT):
        wait_in_force(httpbin, Request(f"{BASE}/anything"), "rewrite-test")
        moved, gone = mesh_http(
            httpbin, CLIENT, [Request(f"{BASE}/moved/x"), Request(f"{BASE}/gone")]
        )
        assert moved.status == 302
        assert moved.headers["location"] == "http://elsewhere.example/anything/here"
        assert gone.status == 301  # Istio's default redirect code
        assert gone.headers["location"] == "http://httpbin:8000/anything/forever"


HEADER_OPERATIONS = vs(
    "httpbin-headers",
    "httpbin",
    "  - match: [{uri: {prefix: /anything/ops}}]\n"
    "    headers:\n"
    "      request:\n"
    "        set: {x-set-me: new}\n"
    "        add: {x-added: 'yes'}\n"
    "        remove: [x-remove-me]\n"
    "      response:\n"
    "        set: {x-resp-set: set}\n"
    "        add: {x-resp-added: added}\n"
    "        remove: [x-envoy-upstream-service-time]\n"
    "    route: [{destination: {host: httpbin}}]\n"
    "  -\n" + marker("headers-test"),
)


def test_request_and_response_header_operations(httpbin: Mesh) -> None:
    sent = {"x-set-me": "old", "x-added": "first", "x-remove-me": "1"}
    with applied(httpbin, HEADER_OPERATIONS):
        wait_in_force(httpbin, Request(f"{BASE}/anything"), "headers-test")
        ops, plain = mesh_http(
            httpbin,
            CLIENT,
            [
                Request(f"{BASE}/anything/ops", headers=sent),
                Request(f"{BASE}/anything", headers=sent),
            ],
        )
        arrived = ops.json()["headers"]
        assert arrived["X-Set-Me"] == ["new"]  # set overwrites
        assert arrived["X-Added"] == ["first", "yes"]  # add appends
        assert "X-Remove-Me" not in arrived
        assert ops.headers["x-resp-set"] == "set"
        assert ops.headers["x-resp-added"] == "added"
        assert "x-envoy-upstream-service-time" not in ops.headers
        # The other rule leaves every header alone.
        untouched = plain.json()["headers"]
        assert untouched["X-Set-Me"] == ["old"] and untouched["X-Remove-Me"] == ["1"]
        assert "x-resp-set" not in plain.headers
        assert "x-envoy-upstream-service-time" in plain.headers


# --- sourceLabels ---------------------------------------------------------------------------

SOURCE_LABELS = vs(
    "httpbin-source",
    "httpbin",
    "  - match: [{sourceLabels: {app: productpage}}]\n"
    + marker("from-productpage")
    + "  -\n"
    + marker("from-anyone-else"),
)


def test_source_labels_limit_a_rule_to_productpage_callers(httpbin: Mesh) -> None:
    probe = Request(f"{BASE}/anything/who")
    with applied(httpbin, SOURCE_LABELS):
        wait_in_force(httpbin, probe, "from-anyone-else", workload=OTHER_CLIENT)
        wait_in_force(httpbin, probe, "from-productpage", workload=CLIENT)
        assert [r.echoed_header("X-Rule") for r in mesh_http(httpbin, CLIENT, [probe] * 5)] == [
            "from-productpage"
        ] * 5
        assert [
            r.echoed_header("X-Rule") for r in mesh_http(httpbin, OTHER_CLIENT, [probe] * 5)
        ] == ["from-anyone-else"] * 5


# --- TCP routes -----------------------------------------------------------------------------

TCP_ECHO_PORT = 9000
# A plain TCP echo server; answers each line prefixed with its version (argv[1]).
TCP_ECHO = """
import asyncio, sys
async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(sys.argv[1].encode() + b" " + line)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "0.0.0.0", 9000)
    await server.serve_forever()
asyncio.run(main())
"""

TCP_ECHO_CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: tcp-echo}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp-echo, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo}
spec:
  host: tcp-echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""

TCP_BY_WEIGHT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{port: 9000}]
    route:
    - {destination: {host: tcp-echo, subset: v1}, weight: 0}
    - {destination: {host: tcp-echo, subset: v2}, weight: 100}
"""

TCP_BY_SUBSET = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{port: 9000}]
    route:
    - destination: {host: tcp-echo, port: {number: 9000}, subset: v1}
"""


def _run_tcp_echo(mesh: Mesh, version: str) -> None:
    mesh.cli(
        "run",
        f"tcp-echo-{version}",
        "--port",
        str(TCP_ECHO_PORT),
        "--labels",
        f"app=tcp-echo,version={version}",
        "--",
        sys.executable,
        "-c",
        TCP_ECHO,
        version,
    )


@contextlib.contextmanager
def tcp_echo_versions(mesh: Mesh) -> Iterator[None]:
    """tcp-echo v1 and v2 with their Service and subsets; started and stopped together."""
    try:
        in_parallel(lambda: _run_tcp_echo(mesh, "v1"), lambda: _run_tcp_echo(mesh, "v2"))
        with applied(mesh, TCP_ECHO_CONFIG):
            yield
    finally:
        in_parallel(
            *(lambda v=v: mesh.cli("stop", f"tcp-echo-{v}", check=False) for v in ("v1", "v2"))
        )


def _tcp_answers(mesh: Mesh, rounds: int) -> list[str]:
    return mesh_tcp(mesh, CLIENT, "tcp-echo", TCP_ECHO_PORT, rounds)


def test_tcp_route_by_port_picks_the_version(bookinfo: Mesh) -> None:
    def answers_only(expected: set[str]) -> bool:
        return set(_tcp_answers(bookinfo, 20)) == expected  # 20 connections agree

    with tcp_echo_versions(bookinfo):
        # Without a rule both versions answer; 2 * 0.5**20 says this is no chance.
        eventually(
            lambda: answers_only({"v1 hello", "v2 hello"}), what="both tcp-echo versions to answer"
        )
        with applied(bookinfo, TCP_BY_WEIGHT):
            eventually(lambda: answers_only({"v2 hello"}), what="v1 weight 0, v2 weight 100")
            bookinfo.apply(TCP_BY_SUBSET)
            eventually(lambda: answers_only({"v1 hello"}), what="all to subset v1")


# --- faults and direct responses ------------------------------------------------------------

FAULTS = vs(
    "httpbin-faults",
    "httpbin",
    "  - match: [{uri: {prefix: /anything/abort}}]\n"
    "    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n"
    "    route: [{destination: {host: httpbin}}]\n"
    "  - match: [{uri: {prefix: /anything/teapot}}]\n"
    "    directResponse: {status: 418, body: {string: short and stout}}\n"
    "  - match: [{uri: {prefix: /anything/slow}}]\n"
    "    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}\n"
    + marker("slow")
    + "  -\n"
    + marker("fault-test"),
)


FAULT_STATS = "http.outbound_0.0.0.0_8000.fault."


def _fault_counts(mesh: Mesh) -> tuple[int, int]:
    """(aborts, delays) productpage's Envoy injected on httpbin's port so far."""
    return (
        envoy_stat(mesh, CLIENT, FAULT_STATS + "aborts_injected"),
        envoy_stat(mesh, CLIENT, FAULT_STATS + "delays_injected"),
    )


def test_fault_abort_and_direct_response_are_answered_by_envoy(httpbin: Mesh) -> None:
    with applied(httpbin, FAULTS):
        wait_in_force(httpbin, Request(f"{BASE}/anything"), "fault-test")
        aborts, delays = _fault_counts(httpbin)
        abort, teapot = mesh_http(
            httpbin, CLIENT, [Request(f"{BASE}/anything/abort"), Request(f"{BASE}/anything/teapot")]
        )
        assert (abort.status, abort.body) == (503, "fault filter abort")
        assert (teapot.status, teapot.body) == (418, "short and stout")
        assert abort.headers["server"] == teapot.headers["server"] == "envoy"
        assert _fault_counts(httpbin) == (aborts + 1, delays)  # Envoy's fault filter did it
        # httpbin never saw either request.
        app_log = httpbin.cli("logs", "httpbin").stdout
        assert "/anything/abort" not in app_log and "/anything/teapot" not in app_log


def test_fault_delay_adds_latency_on_one_path(httpbin: Mesh) -> None:
    with applied(httpbin, FAULTS):
        wait_in_force(httpbin, Request(f"{BASE}/anything"), "fault-test")
        aborts, delays = _fault_counts(httpbin)
        slow, fast = mesh_http(
            httpbin, CLIENT, [Request(f"{BASE}/anything/slow"), Request(f"{BASE}/anything/fast")]
        )
        assert (slow.status, _rule(slow)) == (200, "slow")
        assert (fast.status, _rule(fast)) == (200, "fault-test")
        # The 1 s fixed delay shows in the caller's clock; Envoy's timer may fire a few ms
        # early against it, so allow that much (this proves the delay, it measures no speed).
        assert slow.seconds >= 0.9
        assert fast.seconds < slow.seconds
        assert _fault_counts(httpbin) == (aborts, delays + 1)


def _rule(reply: Reply) -> str | None:
    return reply.echoed_header("X-Rule")


# --- through the ingress gateway: Istio's fault-injection task ------------------------------


def test_ratings_abort_for_jason_through_the_ingress_gateway(bookinfo: Mesh) -> None:
    """Istio's task: jason is routed to reviews v2, whose ratings calls fail with HTTP 500."""
    files = ("virtual-service-reviews-test-v2.yaml", "virtual-service-ratings-test-abort.yaml")
    try:
        for name in files:
            bookinfo.apply_file(name)
        eventually(
            lambda: all(
                "Ratings service is currently unavailable" in _page(bookinfo, "jason")
                for _ in range(3)
            ),
            what="the ratings abort for jason",
        )
        assert "Ratings service is currently unavailable" not in _page(bookinfo, None)
        assert {bookinfo.reviews_pod("jason") for _ in range(5)} == {"reviews-v2"}
    finally:
        for name in files:
            bookinfo.delete_file(name)


def _page(mesh: Mesh, user: str | None) -> str:
    status, page = mesh.http("/productpage", {"cookie": f"session={user}"} if user else {})
    assert status == 200
    return page
