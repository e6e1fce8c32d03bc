"""The product catalogue: Bookinfo sells exactly one book."""

from __future__ import annotations

from dataclasses import dataclass

from .common import JsonObject


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    title: str
    description_html: str  # trusted markup, written here

    def as_json(self) -> JsonObject:
        return {"id": self.id, "title": self.title, "descriptionHtml": self.description_html}


PRODUCTS: tuple[Product, ...] = (
    Product(
        id=0,
        title="The Comedy of Errors",
        description_html=(
            '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
            "an early comedy by <b>William Shakespeare</b>. Two pairs of identical twins, "
            "parted as infants, end up in the same town on the same day, and a string of "
            "mistaken identities, beatings and wordplay follows until the families are reunited."
        ),
    ),
)
