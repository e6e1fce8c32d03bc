"""reviews: two reviews of the book; v2 and v3 add each reviewer's stars from ratings.

v1 shows no stars, v2 black ones, v3 red ones, which is how Istio's routing tasks make the
serving version visible on the product page.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from .common import (
    CLIENT_KEY,
    SETTINGS_KEY,
    JsonObject,
    ServiceSettings,
    UpstreamReply,
    get_json,
    new_app,
    product_id_from,
    propagated_headers,
)

RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"

REVIEWS: tuple[tuple[str, str], ...] = (
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. "
        "The play lacks thematic depth when compared to other plays by Shakespeare.",
    ),
)

STAR_COLOR_BY_VERSION: Mapping[str, str | None] = {"v1": None, "v2": "black", "v3": "red"}


def ratings_timeout_s(star_color: str) -> float:
    """Istio's reviews waits 10 s for ratings when its stars are black (v2), 2.5 s otherwise.

    The fault-injection task depends on it: a 7 s ratings delay is survived by v2 only.
    """
    return 10.0 if star_color == "black" else 2.5


def stars_by_reviewer(reply: UpstreamReply | None) -> dict[str, int] | None:
    """The ratings out of a ratings reply; None when the call failed or the reply was not 200."""
    if reply is None or reply.status != 200 or reply.body is None:
        return None
    ratings = reply.body.get("ratings")
    if not isinstance(ratings, dict):
        return None
    return {name: stars for name, stars in ratings.items() if isinstance(stars, int)}


def rating_of(reviewer: str, stars: Mapping[str, int] | None, star_color: str) -> JsonObject:
    if stars is None or reviewer not in stars:
        return {"error": RATINGS_UNAVAILABLE}
    return {"stars": stars[reviewer], "color": star_color}


def reviews_body(
    product_id: int, settings: ServiceSettings, stars: Mapping[str, int] | None
) -> JsonObject:
    """The reviews document; `rating` is present only when this version shows stars."""
    reviews: list[JsonObject] = []
    for reviewer, text in REVIEWS:
        review: JsonObject = {"reviewer": reviewer, "text": text}
        if settings.star_color is not None:
            review["rating"] = rating_of(reviewer, stars, settings.star_color)
        reviews.append(review)
    return {
        "id": str(product_id),
        "podname": settings.workload,
        "clustername": settings.cluster,
        "reviews": reviews,
    }


async def get_reviews(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    product_id = product_id_from(request)
    stars = None
    if settings.star_color is not None:
        reply = await get_json(
            request.app[CLIENT_KEY],
            f"{settings.upstreams.ratings}/ratings/{product_id}",
            headers=propagated_headers(request.headers),
            timeout_s=ratings_timeout_s(settings.star_color),
        )
        stars = stars_by_reviewer(reply)
    return web.json_response(reviews_body(product_id, settings, stars))


async def get_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "Reviews is healthy"})


def build_app(settings: ServiceSettings) -> web.Application:
    app = new_app(settings, with_client=settings.star_color is not None)
    app.router.add_get("/reviews/{product_id}", get_reviews)
    app.router.add_get("/health", get_health)
    return app
