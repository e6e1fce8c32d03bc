"""The Jaeger API schema the e2e tests validate against is not vacuous: our encoder's answers
meet it, and answers that differ from Jaeger's shape in the ways a client would notice fail."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import ValidationError
from tests.jaeger_api_schema import validate_answer
from tests.tracing_payloads import chain_trace, otlp_request

from trellis.tracing.jaeger_json import encode_dependencies, encode_trace, envelope
from trellis.tracing.model import DependencyLink, Trace
from trellis.tracing.otlp_proto import spans_from_request


def _traces_answer() -> dict[str, Any]:
    spans = spans_from_request(otlp_request(chain_trace(0xAB, ("front", "back")))).spans
    return envelope([encode_trace(Trace(0xAB, tuple(spans)))])


def test_our_answers_meet_jaegers_schema() -> None:
    validate_answer("/api/traces?service=front", 200, _traces_answer())
    validate_answer("/api/services", 200, envelope(["a", "b"], total=2))
    links = encode_dependencies([DependencyLink("a", "b", 3)])
    validate_answer("/api/dependencies?endTs=1&lookback=1", 200, envelope(links))
    error = {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": 404, "msg": "x"}],
    }
    validate_answer("/api/traces/00000000000000ab", 404, error)


def _break(path: list[Any], value: Any) -> dict[str, Any]:
    answer = copy.deepcopy(_traces_answer())
    target: Any = answer
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return answer


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["errors"], KeyError),
        (["data", 0, "processes"], KeyError),
        (["data", 0, "spans", 0, "startTime"], "1700000000000000"),
        (["data", 0, "spans", 0, "duration"], 1.5),
        (["data", 0, "spans", 0, "traceID"], "AB"),
        (["data", 0, "spans", 0, "tags", 0, "type"], "integer"),
        (["data", 0, "spans", 0, "parentSpanID"], "0000000000000001"),
        (["data", 0, "spans", 1, "references", 0, "refType"], "child_of"),
        (["data", 0, "spans", 0, "processID"], "p9"),
    ],
)
def test_answers_out_of_jaegers_shape_fail(path: list[Any], value: Any) -> None:
    with pytest.raises((ValidationError, AssertionError)):
        validate_answer("/api/traces?service=front", 200, _break(path, value))
