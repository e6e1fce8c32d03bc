"""HTML of productpage's pages, rendered from plain data (no I/O here).

Istio's tasks check the page with `grep -o "<title>.*</title>"` and by the colour of the
stars, so the title and the star markup are part of the contract.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from .catalogue import Product
from .common import JsonObject

PAGE_TITLE = "Simple Bookstore App"
MAX_STARS = 5

DETAIL_FIELDS: tuple[tuple[str, str], ...] = (
    ("Type", "type"),
    ("Pages", "pages"),
    ("Publisher", "publisher"),
    ("Language", "language"),
    ("ISBN-10", "ISBN-10"),
    ("ISBN-13", "ISBN-13"),
)


def render_product_page(
    *, product: Product, details: JsonObject, reviews: JsonObject, user: str | None
) -> str:
    body = "\n".join(
        (
            render_navbar(user),
            '<main class="product">',
            f"<h1>{escape(product.title)}</h1>",
            f'<p class="summary">{product.description_html}</p>',
            '<div class="columns">',
            render_details(details),
            render_reviews(reviews),
            "</div>",
            "</main>",
        )
    )
    return _document(body)


def render_navbar(user: str | None) -> str:
    if user is None:
        account = (
            '<form class="login" method="post" action="/login">'
            '<input type="text" name="username" placeholder="User name">'
            '<input type="password" name="passwd" placeholder="Password">'
            '<button type="submit">Sign in</button></form>'
        )
    else:
        account = (
            f'<span class="user">Signed in as {escape(user)}</span> '
            '<a class="logout" href="/logout">Sign out</a>'
        )
    return f'<nav><a class="brand" href="/productpage">BookInfo Sample</a>{account}</nav>'


def render_details(details: JsonObject) -> str:
    if "error" in details:
        return _section("Book Details", _error(details["error"]))
    rows = "".join(
        f"<dt>{escape(label)}</dt><dd>{_text(details.get(key, ''))}</dd>"
        for label, key in DETAIL_FIELDS
    )
    return _section("Book Details", f'<dl class="details">{rows}</dl>')


def render_reviews(reviews: JsonObject) -> str:
    if "error" in reviews:
        return _section("Book Reviews", _error(reviews["error"]))
    items = "".join(render_review(review) for review in _objects(reviews.get("reviews")))
    served_by = f"Reviews served by: <b>{_text(reviews.get('podname', 'unknown'))}</b>"
    cluster = reviews.get("clustername")
    if cluster not in (None, "", "null"):
        served_by += f" on cluster <b>{_text(cluster)}</b>"
    return _section(
        "Book Reviews", f'<ul class="reviews">{items}</ul><p class="served-by">{served_by}</p>'
    )


def render_review(review: JsonObject) -> str:
    return (
        '<li class="review">'
        f"<blockquote>{_text(review.get('text', ''))}</blockquote>"
        f'<p class="reviewer">{_text(review.get("reviewer", ""))}</p>'
        f"{render_rating(review.get('rating'))}"
        "</li>"
    )


def render_rating(rating: Any) -> str:
    """Stars in the reported colour, the ratings error, or nothing (reviews v1)."""
    if not isinstance(rating, dict):
        return ""
    stars = rating.get("stars")
    if isinstance(stars, int):
        count = max(0, min(stars, MAX_STARS))
        color = escape(str(rating.get("color", "black")))
        glyphs = "&#9733;" * count + "&#9734;" * (MAX_STARS - count)
        return (
            f'<p class="rating rating-{color}" style="color: {color}" '
            f'data-stars="{count}" title="{count} of {MAX_STARS} stars">{glyphs}</p>'
        )
    return f'<p class="rating-error">{_text(rating.get("error", ""))}</p>'


def render_index() -> str:
    """The index page: what Bookinfo is made of and where to look."""
    rows = "".join(
        f"<tr><td>{name}</td><td>{what}</td><td><code>{path}</code></td></tr>"
        for name, what, path in (
            ("productpage", "this page and the book page", "/productpage"),
            ("details", "bibliographic details", "/details/0"),
            ("reviews", "reviews; v2 and v3 add star ratings", "/reviews/0"),
            ("ratings", "stars given by each reviewer", "/ratings/0"),
        )
    )
    body = (
        render_navbar(None)
        + "<main><h1>Bookinfo</h1>"
        + '<p>Open the <a href="/productpage">product page</a> '
        + '(<a href="/api/v1/products">API</a>).</p>'
        + "<table><tr><th>Service</th><th>Serves</th><th>Path</th></tr>"
        + rows
        + "</table></main>"
    )
    return _document(body)


def _document(body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{PAGE_TITLE}</title>\n"
        '<link rel="stylesheet" href="/static/bookinfo.css">\n'
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _section(title: str, content: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{content}</section>"


def _error(message: Any) -> str:
    return f'<p class="error">{_text(message)}</p>'


def _text(value: Any) -> str:
    return escape(str(value))


def _objects(value: Any) -> Iterable[JsonObject]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
