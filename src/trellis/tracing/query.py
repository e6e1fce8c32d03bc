"""Jaeger query-API parameters -> store queries (pure: `now` is passed in).

Parameters follow Jaeger's query service: `service` (required unless `traceID` is given),
`operation`, `tags` (a JSON object) and `tag=key:value`, `minDuration`/`maxDuration` as Go
durations ("1.2s", "100ms"), `limit` (default 100), `start`/`end` in microseconds. Trellis also
honours `lookback` ("1h", "2d") when `start` is absent: Jaeger's UI always sends `start`, while
people and scripts find `lookback` easier. Without either, the search looks back 2 days, as
Jaeger does. `/api/dependencies` takes `endTs` and `lookback` in milliseconds (default 24 h).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from trellis.errors import TrellisError
from trellis.tracing.model import SpanDecodeError, parse_trace_id, tag_value_text
from trellis.tracing.store import DEFAULT_QUERY_LIMIT, TraceQuery

DEFAULT_SEARCH_LOOKBACK_US = 2 * 24 * 3600 * 1_000_000
DEFAULT_DEPENDENCIES_LOOKBACK_US = 24 * 3600 * 1_000_000

# Go's time.ParseDuration units, plus d and w (the lookbacks Jaeger's UI offers), in µs.
_UNIT_US = {
    "ns": 0.001,
    "us": 1,
    "µs": 1,
    "μs": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")

Params = Iterable[tuple[str, str]]


class QueryError(TrellisError):
    """A query parameter is malformed; the API answers 400 with this message."""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """Either a search (`query`) or a lookup of explicit trace IDs (`trace_ids`)."""

    query: TraceQuery | None
    trace_ids: tuple[int, ...] = ()


def parse_duration_us(text: str) -> int:
    """Go-style duration ("1h30m", "1.2s", "250ms") -> microseconds."""
    if text == "0":
        return 0
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_US[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise QueryError(f"invalid duration {text!r}; use e.g. 100ms, 1.5s, 1h")
    if not math.isfinite(total):  # hundreds of digits: round() would raise OverflowError
        raise QueryError(f"duration {text[:20]!r}... is too long")
    return round(total)


def parse_search(params: Params, *, now_us: int) -> SearchRequest:
    values = _collect(params)
    trace_ids = tuple(_trace_id(text) for text in values.get("traceID", []))
    service = _first(values, "service")
    if not service and not trace_ids:
        raise QueryError("parameter 'service' is required")
    end = _int_param(values, "end", now_us)
    start = _start_us(values, end)
    min_duration = _duration_param(values, "minDuration")
    max_duration = _duration_param(values, "maxDuration")
    if min_duration and max_duration and max_duration < min_duration:
        raise QueryError("'maxDuration' should be greater than 'minDuration'")
    query = TraceQuery(
        service=service,
        operation=_first(values, "operation"),
        tags=_tags(values),
        start_min_us=start,
        start_max_us=end,
        duration_min_us=min_duration,
        duration_max_us=max_duration,
        limit=_int_param(values, "limit", DEFAULT_QUERY_LIMIT),
    )
    return SearchRequest(query=None if trace_ids else query, trace_ids=trace_ids)


def parse_dependencies(params: Params, *, now_us: int) -> tuple[int, int]:
    """(end, lookback) in microseconds from `endTs` and `lookback` in milliseconds."""
    values = _collect(params)
    end_ms = _int_param(values, "endTs", now_us // 1000)
    lookback_ms = _int_param(values, "lookback", DEFAULT_DEPENDENCIES_LOOKBACK_US // 1000)
    return end_ms * 1000, lookback_ms * 1000


def parse_trace_id_param(text: str) -> int:
    return _trace_id(text)


def _collect(params: Params) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in params:
        values.setdefault(key, []).append(value)
    return values


def _first(values: dict[str, list[str]], name: str) -> str:
    found = values.get(name)
    return found[0] if found else ""


def _int_param(values: dict[str, list[str]], name: str, default: int) -> int:
    text = _first(values, name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise QueryError(f"unable to parse param '{name}': {text!r} is not an integer") from None


def _duration_param(values: dict[str, list[str]], name: str) -> int | None:
    text = _first(values, name)
    if not text:
        return None
    try:
        return parse_duration_us(text)
    except QueryError as e:
        raise QueryError(f"unable to parse param '{name}': {e}") from None


def _start_us(values: dict[str, list[str]], end_us: int) -> int:
    if _first(values, "start"):
        return _int_param(values, "start", 0)
    lookback = _first(values, "lookback")
    if lookback and lookback != "custom":  # Jaeger's UI sends "custom" with explicit start/end
        return end_us - parse_duration_us(lookback)
    return end_us - DEFAULT_SEARCH_LOOKBACK_US


def _tags(values: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
    tags: dict[str, str] = {}
    for text in values.get("tag", []):
        key, sep, value = text.partition(":")
        if not sep:
            raise QueryError(f"malformed 'tag' parameter, expecting key:value, received: {text}")
        tags[key] = value
    for text in values.get("tags", []):
        tags.update(_json_tags(text))
    return tuple(tags.items())


def _json_tags(text: str) -> dict[str, str]:
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise QueryError(f"malformed 'tags' parameter, expecting a JSON object: {text}")
    tags = {}
    for key, value in document.items():
        if not isinstance(value, str | bool | int | float):
            raise QueryError(f"malformed 'tags' parameter: value of {key!r} is not a scalar")
        tags[str(key)] = value if isinstance(value, str) else tag_value_text(value)
    return tags


def _trace_id(text: str) -> int:
    try:
        return parse_trace_id(text)
    except SpanDecodeError as e:
        raise QueryError(f"cannot parse traceID param: {e}") from None
