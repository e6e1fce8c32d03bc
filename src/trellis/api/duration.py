"""Durations as Istio users write them ("10s", "0.5s", "100ms", "1m", "1h30m").

Istio's CRDs take protobuf Durations; the API server also accepts Go-style unit sequences, so
both forms are parsed here into seconds. The models keep the user's string (round-trip exact)
and validate it with this module; the compiler calls `parse_duration` for the number.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_UNIT_SECONDS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError with a hint when it is not a duration."""
    stripped = text.strip()
    position, total = 0, 0.0
    for part in _PART.finditer(stripped):
        if part.start() != position:
            break
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if not stripped or position != len(stripped):
        raise ValueError(
            f"{text!r} is not a duration; write a number with a unit, e.g. 10s, 0.5s, 100ms, 1m"
        )
    return total


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A duration field: the user's string, checked to parse."""
