"""Spans and traces as the store keeps them: Jaeger's data model, whatever the wire format was.

Every ingest format is decoded into these types once, so the store and the query API know one
model only. IDs are ints (a 128-bit trace ID, a 64-bit span ID); times are microseconds since
the Unix epoch, as Jaeger's API speaks them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from trellis.errors import TrellisError

TagValue = str | bool | int | float | bytes


class SpanDecodeError(TrellisError):
    """A payload could not be read as spans at all (bad JSON, bad protobuf, wrong shape)."""


class RefType(enum.Enum):
    CHILD_OF = "CHILD_OF"
    FOLLOWS_FROM = "FOLLOWS_FROM"


@dataclass(frozen=True, slots=True)
class Tag:
    """A key/value on a span, process or log; the value keeps its type (Jaeger's ValueType)."""

    key: str
    value: TagValue


@dataclass(frozen=True, slots=True)
class SpanLog:
    timestamp_us: int
    fields: tuple[Tag, ...]


@dataclass(frozen=True, slots=True)
class SpanRef:
    ref_type: RefType
    trace_id: int
    span_id: int


@dataclass(frozen=True, slots=True)
class Process:
    """The emitting service: OTLP's resource or Zipkin's local endpoint. Hashable, so deduped."""

    service_name: str
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: int
    span_id: int
    operation_name: str
    references: tuple[SpanRef, ...]
    start_us: int
    duration_us: int
    tags: tuple[Tag, ...]
    logs: tuple[SpanLog, ...]
    process: Process
    span_kind: str = ""  # "server", "client", "producer", "consumer", "internal" or ""
    warnings: tuple[str, ...] = ()

    @property
    def parent_span_id(self) -> int | None:
        """The span this one is a CHILD_OF in the same trace (None for a root span)."""
        for ref in self.references:
            if ref.ref_type is RefType.CHILD_OF and ref.trace_id == self.trace_id:
                return ref.span_id
        return None


@dataclass(frozen=True, slots=True)
class Trace:
    trace_id: int
    spans: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    span_kind: str


@dataclass(frozen=True, slots=True)
class DependencyLink:
    parent: str
    child: str
    call_count: int


def format_trace_id(trace_id: int) -> str:
    """Jaeger's rendering: 16 hex digits when the high 64 bits are zero, else 32."""
    if trace_id >> 64 == 0:
        return f"{trace_id:016x}"
    return f"{trace_id:032x}"


def format_span_id(span_id: int) -> str:
    return f"{span_id:016x}"


def parse_trace_id(text: str) -> int:
    """Accept 1-32 hex digits (Jaeger, Zipkin and OTLP forms all map to the same trace)."""
    value = _parse_hex(text, 32, "trace ID")
    if value == 0:
        raise SpanDecodeError(f"trace ID {text!r} is all zeros")
    return value


def parse_span_id(text: str) -> int:
    value = _parse_hex(text, 16, "span ID")
    if value == 0:
        raise SpanDecodeError(f"span ID {text!r} is all zeros")
    return value


def trace_id_from_bytes(raw: bytes) -> int:
    """OTLP carries IDs as 16 (trace) or 8 (span) big-endian bytes; all zeros means invalid."""
    if len(raw) != 16:
        raise SpanDecodeError(f"trace ID must be 16 bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    if value == 0:
        raise SpanDecodeError("trace ID is all zeros")
    return value


def span_id_from_bytes(raw: bytes) -> int:
    if len(raw) != 8:
        raise SpanDecodeError(f"span ID must be 8 bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    if value == 0:
        raise SpanDecodeError("span ID is all zeros")
    return value


def _parse_hex(text: str, max_digits: int, what: str) -> int:
    if not 0 < len(text) <= max_digits:
        raise SpanDecodeError(f"{what} {text!r} must be 1 to {max_digits} hex digits")
    try:
        return int(text, 16)
    except ValueError:
        raise SpanDecodeError(f"{what} {text!r} is not hexadecimal") from None


def tag_value_text(value: TagValue) -> str:
    """A tag value as the text a search compares (`tags={"error":"true"}`), Go-style."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)
