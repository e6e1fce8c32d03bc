"""ratings: stars per reviewer for a product, kept in memory (Istio's ratings v1)."""

from __future__ import annotations

import json

from aiohttp import web

from .common import JsonObject, ServiceSettings, new_app, product_id_from


class RatingsStore:
    """Ratings posted at run time; products never posted to get the default ratings."""

    DEFAULT: dict[str, int] = {"Reviewer1": 5, "Reviewer2": 4}

    def __init__(self) -> None:
        self._by_product: dict[int, dict[str, int]] = {}

    def get(self, product_id: int) -> dict[str, int]:
        return dict(self._by_product.get(product_id, self.DEFAULT))

    def put(self, product_id: int, ratings: dict[str, int]) -> None:
        self._by_product[product_id] = dict(ratings)


STORE_KEY = web.AppKey("ratings_store", RatingsStore)


def ratings_body(product_id: int, ratings: dict[str, int]) -> JsonObject:
    return {"id": product_id, "ratings": ratings}


async def get_ratings(request: web.Request) -> web.Response:
    product_id = product_id_from(request)
    return web.json_response(ratings_body(product_id, request.app[STORE_KEY].get(product_id)))


async def post_ratings(request: web.Request) -> web.Response:
    """Store `{"Reviewer1": 3, ...}` for a product; anything else is a 400."""
    product_id = product_id_from(request)
    try:
        posted = json.loads(await request.read())
    except ValueError:
        posted = None
    if not isinstance(posted, dict) or not all(
        isinstance(stars, int) and not isinstance(stars, bool) for stars in posted.values()
    ):
        return web.json_response({"error": "expected a JSON object of reviewer: stars"}, status=400)
    request.app[STORE_KEY].put(product_id, posted)
    return web.json_response(ratings_body(product_id, request.app[STORE_KEY].get(product_id)))


async def get_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "Ratings is healthy"})


def build_app(settings: ServiceSettings) -> web.Application:
    app = new_app(settings, with_client=False)
    app[STORE_KEY] = RatingsStore()
    app.router.add_get("/ratings/{product_id}", get_ratings)
    app.router.add_post("/ratings/{product_id}", post_ratings)
    app.router.add_get("/health", get_health)
    return app
