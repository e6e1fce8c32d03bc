"""Istio's request-routing and traffic-shifting tasks on Bookinfo, through real Envoy sidecars."""

from __future__ import annotations

import collections
import json

import pytest

from tests.e2e.meshctl import Mesh, eventually

pytestmark = pytest.mark.e2e


def test_productpage_is_served_through_the_ingress_gateway(bookinfo: Mesh) -> None:
    status, body = bookinfo.http("/productpage")
    assert status == 200
    assert "The Comedy of Errors" in body
    status, body = bookinfo.http("/api/v1/products")
    assert status == 200 and json.loads(body)[0]["title"] == "The Comedy of Errors"


def test_without_routing_rules_all_reviews_versions_serve(bookinfo: Mesh) -> None:
    seen = {bookinfo.reviews_pod() for _ in range(60)}
    assert seen == {"reviews-v1", "reviews-v2", "reviews-v3"}


def test_route_all_reviews_traffic_to_v1(bookinfo: Mesh) -> None:
    bookinfo.apply_file("virtual-service-all-v1.yaml")
    try:
        eventually(
            lambda: all(bookinfo.reviews_pod() == "reviews-v1" for _ in range(5)),
            what="reviews traffic to go to v1 only",
        )
        assert {bookinfo.reviews_pod() for _ in range(30)} == {"reviews-v1"}
    finally:
        bookinfo.delete_file("virtual-service-all-v1.yaml")


def test_user_jason_is_routed_to_reviews_v2(bookinfo: Mesh) -> None:
    bookinfo.apply_file("virtual-service-reviews-test-v2.yaml")
    try:
        eventually(
            lambda: all(bookinfo.reviews_pod("jason") == "reviews-v2" for _ in range(6)),
            what="jason -> v2",
        )
        assert {bookinfo.reviews_pod("jason") for _ in range(20)} == {"reviews-v2"}
        assert {bookinfo.reviews_pod() for _ in range(20)} == {"reviews-v1"}
        assert {bookinfo.reviews_pod("alice") for _ in range(10)} == {"reviews-v1"}
        status, page = bookinfo.http("/productpage", {"cookie": "session=jason"})
        assert status == 200 and "black" in page
    finally:
        bookinfo.delete_file("virtual-service-reviews-test-v2.yaml")


def test_fifty_fifty_split_between_v1_and_v3(bookinfo: Mesh) -> None:
    bookinfo.apply_file("virtual-service-reviews-50-v3.yaml")
    try:
        eventually(
            lambda: (
                bookinfo.reviews_pod() != "reviews-v2"
                and "reviews-v2" not in {bookinfo.reviews_pod() for _ in range(10)}
            ),
            what="the 50/50 rule to take effect",
        )
        counts = collections.Counter(bookinfo.reviews_pod() for _ in range(200))
        assert set(counts) == {"reviews-v1", "reviews-v3"}
        # Binomial(200, 0.5): 70..130 is more than 4 standard deviations wide.
        assert 70 <= counts["reviews-v1"] <= 130, counts
    finally:
        bookinfo.delete_file("virtual-service-reviews-50-v3.yaml")


HEADER_AND_PATH_RULES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-header-path}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        x-canary: {exact: "yes"}
    route:
    - destination: {host: reviews, subset: v3}
  - match:
    - uri: {prefix: /reviews/7}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
"""

FETCH = """
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] if len(sys.argv) > 1 else "{url}", headers={headers})
print(json.load(urllib.request.urlopen(req, timeout=10))["podname"])
"""


def _pod_from(bookinfo: Mesh, url: str, headers: dict[str, str]) -> str:
    return bookinfo.exec_in("productpage-v1", FETCH.format(url=url, headers=headers)).strip()


def test_header_and_path_based_routing_from_inside_the_mesh(bookinfo: Mesh) -> None:
    bookinfo.apply(HEADER_AND_PATH_RULES)
    try:
        eventually(
            lambda: (
                _pod_from(bookinfo, "http://reviews:9080/reviews/0", {"x-canary": "yes"})
                == "reviews-v3"
            ),
            what="header rule",
        )
        for name in (
            "reviews",
            "reviews.default",
            "reviews.default.svc",
            "reviews.default.svc.cluster.local",
        ):
            assert _pod_from(bookinfo, f"http://{name}:9080/reviews/0", {}) == "reviews-v1"
        assert _pod_from(bookinfo, "http://reviews:9080/reviews/7", {}) == "reviews-v2"
        assert (
            _pod_from(bookinfo, "http://reviews:9080/reviews/0", {"x-canary": "yes"})
            == "reviews-v3"
        )
    finally:
        bookinfo.cli("delete", "vs", "reviews-header-path")


BAD_WEIGHTS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 70
    - destination: {host: reviews, subset: v3}
      weight: 20
"""


def test_a_rejected_apply_leaves_the_old_routing_in_force(bookinfo: Mesh) -> None:
    bookinfo.apply_file("virtual-service-all-v1.yaml")
    try:
        eventually(
            lambda: all(bookinfo.reviews_pod() == "reviews-v1" for _ in range(6)), what="v1 routing"
        )
        good = "apiVersion: v1\nkind: Service\nmetadata: {name: extra}\nspec:\n  ports: [{port: 80, name: http}]\n"
        proc = bookinfo.cli("apply", "-f", "-", input=good + "---\n" + BAD_WEIGHTS, check=False)
        assert proc.returncode != 0
        assert "spec.http[0].route" in proc.stderr and "100" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert bookinfo.cli("get", "svc", "extra", check=False).returncode != 0
        assert {bookinfo.reviews_pod() for _ in range(20)} == {"reviews-v1"}
    finally:
        bookinfo.delete_file("virtual-service-all-v1.yaml")
