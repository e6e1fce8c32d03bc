"""Turn pydantic's errors into Trellis ValidationErrors with Istio-style field paths.

Users read `spec.http[0].route[1].weight`, in the camelCase they wrote, and a reason that says
what to do; pydantic's loc tuples and messages are translated here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import pydantic
from pydantic_core import ErrorDetails

from trellis.errors import ValidationError

# pydantic adds schema tags such as "function-after[_check(), str]" or "int" to union locs.
_SCHEMA_TAG = re.compile(r"^[a-z-]+\[.*\]$")


def field_path(loc: Sequence[int | str]) -> str:
    """('spec', 'http', 0, 'route', 1, 'weight') -> 'spec.http[0].route[1].weight'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part or not part.isprintable() or any(c.isspace() for c in part):
            path += f"[{json.dumps(part)}]"  # a key like "\n" would break the one-line message
        elif not _SCHEMA_TAG.match(part):
            path += f".{part}" if path else part
    return path


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing; add it"
    if kind == "extra_forbidden":
        return "unknown field; remove it or fix its spelling (Istio field names are camelCase)"
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    if kind == "enum" or kind == "literal_error":
        return f"{message} (got {error.get('input')!r})"
    return message


def from_pydantic(
    exc: pydantic.ValidationError,
    *,
    kind: str,
    namespace: str,
    name: str,
    document: int = 0,
) -> list[ValidationError]:
    """One ValidationError per problem pydantic found."""
    return [
        ValidationError(
            _reason(error),
            kind=kind,
            namespace=namespace,
            name=name,
            field=field_path(error["loc"]),
            document=document,
        )
        for error in exc.errors(include_url=False)
    ]
