"""details: the book's bibliographic record (Istio's details v1, without the external lookup)."""

from __future__ import annotations

from aiohttp import web

from .common import JsonObject, ServiceSettings, new_app, product_id_from


def book_details(product_id: int) -> JsonObject:
    """The same record for every product id, with the field names Istio's details uses."""
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


async def get_details(request: web.Request) -> web.Response:
    return web.json_response(book_details(product_id_from(request)))


async def get_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "Details is healthy"})


def build_app(settings: ServiceSettings) -> web.Application:
    app = new_app(settings, with_client=False)
    app.router.add_get("/details/{product_id}", get_details)
    app.router.add_get("/health", get_health)
    return app
