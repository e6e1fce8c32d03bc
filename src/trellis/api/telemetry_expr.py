"""The CEL expressions of a Telemetry resource that Trellis can carry out without a CEL engine.

Upstream Envoy evaluates no CEL in its access-log filters and the metrics are labelled by the
agent, so only these forms are accepted (anything else is a validation error that says so):
- accessLogging `filter.expression`: `response.code OP N` with OP one of >= > <= < == !=
  (Envoy's status_code access-log filter);
- metrics `tagOverrides[*].value`: a string literal, `'canary'` or `"canary"` (a constant
  label value).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_STATUS = re.compile(r"^\s*response\.code\s*(>=|<=|==|!=|>|<)\s*([0-9]{1,3})\s*$")
_LITERAL = re.compile(r"""^\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*$""")

SUPPORTED_FILTERS = "response.code OP N (OP one of >= > <= < == !=)"
SUPPORTED_TAG_VALUES = "a string literal such as 'canary'"


class StatusOp(enum.Enum):
    GE = ">="
    GT = ">"
    LE = "<="
    LT = "<"
    EQ = "=="
    NE = "!="


@dataclass(frozen=True, slots=True)
class StatusFilter:
    """Log only requests whose response code compares so with `code`."""

    op: StatusOp
    code: int


def parse_status_filter(expression: str) -> StatusFilter:
    """ValueError naming the supported form when `expression` is not one."""
    match = _STATUS.match(expression)
    if match is None:
        raise ValueError(
            f"unsupported access-log filter {expression!r}; Trellis supports {SUPPORTED_FILTERS}"
        )
    return StatusFilter(StatusOp(match.group(1)), int(match.group(2)))


def parse_tag_literal(expression: str) -> str:
    """The constant a tag override sets; ValueError when it is not a string literal."""
    match = _LITERAL.match(expression)
    if match is None:
        raise ValueError(
            f"unsupported tag value {expression!r}; Trellis supports {SUPPORTED_TAG_VALUES}"
        )
    return match.group(1) if match.group(1) is not None else match.group(2)
