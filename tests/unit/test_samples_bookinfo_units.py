"""Bookinfo's pure pieces: settings from the environment, header rules, page rendering."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from samples.bookinfo import cli, productpage, productpage_html, reviews  # noqa: E402
from samples.bookinfo.catalogue import PRODUCTS  # noqa: E402
from samples.bookinfo.common import Upstreams  # noqa: E402


def test_settings_follow_istio_environment_names() -> None:
    env = {
        "DETAILS_HOSTNAME": "10.0.0.1",
        "REVIEWS_SERVICE_PORT": "9999",
        "SERVICES_DOMAIN": "default.svc.cluster.local",
        "HOSTNAME": "pod-abc",
        "TRELLIS_WORKLOAD_NAME": "reviews-v2-0",
    }
    settings = cli.settings_from("reviews", "v2", env)
    assert settings.workload == "reviews-v2-0"
    assert settings.cluster == "Kubernetes"
    assert settings.star_color == "black"
    assert settings.upstreams == Upstreams(
        details="http://10.0.0.1.default.svc.cluster.local:9080",
        reviews="http://reviews.default.svc.cluster.local:9999",
        ratings="http://ratings.default.svc.cluster.local:9080",
    )


def test_default_settings_use_kubernetes_service_names() -> None:
    settings = cli.settings_from("productpage", None, {})
    assert (settings.version, settings.workload) == ("v1", "productpage-v1")
    assert settings.upstreams.reviews == "http://reviews:9080"
    assert settings.star_color is None


@pytest.mark.parametrize(
    ("version", "env", "color"),
    [
        ("v1", {}, None),
        ("v2", {}, "black"),
        ("v3", {}, "red"),
        ("v1", {"ENABLE_RATINGS": "true"}, "black"),
        ("v2", {"ENABLE_RATINGS": "false"}, None),
        ("v2", {"STAR_COLOR": "green"}, "green"),
    ],
)
def test_reviews_star_colour_by_version_and_environment(
    version: str, env: dict[str, str], color: str | None
) -> None:
    assert cli.star_color_for(version, env) == color


def test_reviews_ratings_timeouts_match_istio() -> None:
    assert reviews.ratings_timeout_s("black") == 10.0
    assert reviews.ratings_timeout_s("red") == 2.5


def test_signed_in_user_overrides_incoming_end_user() -> None:
    incoming = {"end-user": "mallory", "x-b3-traceid": "t", "x-other": "o"}
    assert productpage.outgoing_headers(incoming, "jason") == {
        "x-b3-traceid": "t",
        "end-user": "jason",
    }


@pytest.mark.parametrize(
    ("rating", "expected", "absent"),
    [
        (None, "", "rating"),
        ({"stars": 4, "color": "red"}, "rating-red", "rating-black"),
        ({"error": "Ratings service is currently unavailable"}, "currently unavailable", "&#9733;"),
    ],
)
def test_page_renders_stars_by_colour_or_the_ratings_error(
    rating: dict[str, Any] | None, expected: str, absent: str
) -> None:
    review: dict[str, Any] = {"reviewer": "R", "text": "t"}
    if rating is not None:
        review["rating"] = rating
    html = productpage_html.render_product_page(
        product=PRODUCTS[0],
        details={"error": "x"},
        reviews={"podname": "p", "reviews": [review]},
        user=None,
    )
    assert expected in html
    assert absent not in html.split('<ul class="reviews">')[1]


def test_page_escapes_what_upstreams_send() -> None:
    html = productpage_html.render_reviews(
        {"podname": "<script>", "reviews": [{"reviewer": "<b>x</b>", "text": "a&b"}]}
    )
    assert "<script>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "a&amp;b" in html
