"""productpage: the front end; calls details and reviews and renders the book's page.

Its upstream calls follow Istio's productpage because the fault-injection and timeout tasks
measure them: details gets one try with a 3 s timeout, reviews two tries with 3 s each.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import aiohttp
from aiohttp import web

from . import productpage_html as page
from .catalogue import PRODUCTS
from .common import (
    CLIENT_KEY,
    SETTINGS_KEY,
    JsonObject,
    ServiceSettings,
    get_json,
    new_app,
    product_id_from,
    propagated_headers,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "session"
UPSTREAM_TIMEOUT_S = 3.0
# Istio's productpage tries reviews twice on purpose, to illustrate application retries in
# the fault-injection task ("bug introduced explicitly for illustration").
REVIEWS_TRIES = 2

DETAILS_UNAVAILABLE = "Sorry, product details are currently unavailable for this book."
REVIEWS_UNAVAILABLE = "Sorry, product reviews are currently unavailable for this book."
RATINGS_UNAVAILABLE = "Sorry, product ratings are currently unavailable for this book."


def session_user(request: web.Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def outgoing_headers(incoming: Mapping[str, str], user: str | None) -> dict[str, str]:
    """Propagated headers plus `end-user` for a signed-in user (the session wins)."""
    headers = propagated_headers(incoming)
    if user is not None:
        headers["end-user"] = user
    return headers


async def call_upstream(
    client: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    tries: int,
    error: str,
) -> tuple[int, JsonObject]:
    """(status, JSON) of the first 200 among `tries` attempts, else (last status, error)."""
    status = 500
    for _ in range(tries):
        reply = await get_json(client, url, headers=headers, timeout_s=UPSTREAM_TIMEOUT_S)
        if reply is not None and reply.status == 200 and reply.body is not None:
            return 200, reply.body
        status = reply.status if reply is not None and reply.status != 200 else 500
    return status, {"error": error}


async def fetch_details(
    request: web.Request, product_id: int, headers: Mapping[str, str]
) -> tuple[int, JsonObject]:
    base = request.app[SETTINGS_KEY].upstreams.details
    return await call_upstream(
        request.app[CLIENT_KEY],
        f"{base}/details/{product_id}",
        headers=headers,
        tries=1,
        error=DETAILS_UNAVAILABLE,
    )


async def fetch_reviews(
    request: web.Request, product_id: int, headers: Mapping[str, str]
) -> tuple[int, JsonObject]:
    base = request.app[SETTINGS_KEY].upstreams.reviews
    return await call_upstream(
        request.app[CLIENT_KEY],
        f"{base}/reviews/{product_id}",
        headers=headers,
        tries=REVIEWS_TRIES,
        error=REVIEWS_UNAVAILABLE,
    )


async def fetch_ratings(
    request: web.Request, product_id: int, headers: Mapping[str, str]
) -> tuple[int, JsonObject]:
    base = request.app[SETTINGS_KEY].upstreams.ratings
    return await call_upstream(
        request.app[CLIENT_KEY],
        f"{base}/ratings/{product_id}",
        headers=headers,
        tries=1,
        error=RATINGS_UNAVAILABLE,
    )


async def get_product_page(request: web.Request) -> web.Response:
    """The book page; details before reviews, one after the other, as Istio's does."""
    product = PRODUCTS[0]
    user = session_user(request)
    headers = outgoing_headers(request.headers, user)
    _, details = await fetch_details(request, product.id, headers)
    _, reviews = await fetch_reviews(request, product.id, headers)
    html = page.render_product_page(product=product, details=details, reviews=reviews, user=user)
    return web.Response(text=html, content_type="text/html")


async def get_index(request: web.Request) -> web.Response:
    return web.Response(text=page.render_index(), content_type="text/html")


async def get_products(request: web.Request) -> web.Response:
    return web.json_response([product.as_json() for product in PRODUCTS])


async def get_product(request: web.Request) -> web.Response:
    product_id = product_id_from(request)
    headers = outgoing_headers(request.headers, session_user(request))
    status, body = await fetch_details(request, product_id, headers)
    return web.json_response(body, status=status)


async def get_product_reviews(request: web.Request) -> web.Response:
    product_id = product_id_from(request)
    headers = outgoing_headers(request.headers, session_user(request))
    status, body = await fetch_reviews(request, product_id, headers)
    return web.json_response(body, status=status)


async def get_product_ratings(request: web.Request) -> web.Response:
    product_id = product_id_from(request)
    headers = outgoing_headers(request.headers, session_user(request))
    status, body = await fetch_ratings(request, product_id, headers)
    return web.json_response(body, status=status)


async def post_login(request: web.Request) -> web.Response:
    """Sign in as the form's `username`; any password is accepted, as in Istio's sample."""
    form = await request.post()
    user = form.get("username")
    response = redirect_to_product_page()
    if isinstance(user, str) and user:
        response.set_cookie(SESSION_COOKIE, user, path="/", httponly=True)
    return response


async def get_logout(request: web.Request) -> web.Response:
    response = redirect_to_product_page()
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def redirect_to_product_page() -> web.Response:
    return web.Response(status=302, headers={"Location": "/productpage"})


async def get_health(request: web.Request) -> web.Response:
    return web.Response(text="Product page is healthy")


def build_app(settings: ServiceSettings) -> web.Application:
    app = new_app(settings, with_client=True)
    routes = app.router
    routes.add_get("/", get_index)
    routes.add_get("/index.html", get_index)
    routes.add_get("/productpage", get_product_page)
    routes.add_post("/login", post_login)
    routes.add_get("/logout", get_logout)
    routes.add_get("/api/v1/products", get_products)
    routes.add_get("/api/v1/products/{product_id}", get_product)
    routes.add_get("/api/v1/products/{product_id}/reviews", get_product_reviews)
    routes.add_get("/api/v1/products/{product_id}/ratings", get_product_ratings)
    routes.add_get("/health", get_health)
    routes.add_static("/static", STATIC_DIR)
    return app
