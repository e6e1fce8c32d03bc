"""JSON Schema of Jaeger's HTTP query API answers, checked against every answer in the e2e tests.

Written from Jaeger's own definitions, not from our encoder: the `structuredResponse` envelope
(`data`, `total`, `limit`, `offset`, `errors`) and `structuredError` (`code`, `msg`,
`traceID`) of cmd/query/app/http_handler.go, and the UI model (internal/uimodel/model.go,
formerly model/json/model.go): Trace, Span, Reference, Process, Log, KeyValue, DependencyLink,
Operation. Times are microseconds since the epoch, IDs lower-case hex (a trace ID is 16 digits
in Jaeger v1 when its high half is zero, 32 otherwise; Jaeger v2 always writes 32), an int64
tag beyond JavaScript's 2**53 - 1 is written as a decimal string, binary as base64.
https://www.jaegertracing.io/docs/latest/architecture/apis/#internal-http-json
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

Schema = dict[str, Any]

_HEX_TRACE_ID = {"type": "string", "pattern": "^([0-9a-f]{16}){1,2}$"}
_HEX_SPAN_ID = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
_MICROS = {"type": "integer", "minimum": 0}
_NULLABLE_STRINGS = {"type": ["array", "null"], "items": {"type": "string"}}


def _obj(required: Schema, optional: Schema | None = None) -> Schema:
    """An object with exactly these keys (the required ones always present)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": sorted(required),
        "additionalProperties": False,
    }


def _tag(kind: str, value: Schema) -> Schema:
    return _obj({"key": {"type": "string"}, "type": {"const": kind}, "value": value})


KEY_VALUE: Schema = {
    "oneOf": [
        _tag("string", {"type": "string"}),
        _tag("bool", {"type": "boolean"}),
        _tag("int64", {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^-?\\d+$"}]}),
        _tag("float64", {"type": "number"}),
        _tag("binary", {"type": "string", "contentEncoding": "base64"}),
    ]
}
KEY_VALUES: Schema = {"type": "array", "items": {"$ref": "#/$defs/keyValue"}}
REFERENCE = _obj(
    {
        "refType": {"enum": ["CHILD_OF", "FOLLOWS_FROM"]},
        "traceID": _HEX_TRACE_ID,
        "spanID": _HEX_SPAN_ID,
    }
)
LOG = _obj({"timestamp": _MICROS, "fields": KEY_VALUES})
PROCESS = _obj({"serviceName": {"type": "string", "minLength": 1}, "tags": KEY_VALUES})
SPAN = _obj(
    {
        "traceID": _HEX_TRACE_ID,
        "spanID": _HEX_SPAN_ID,
        "operationName": {"type": "string"},
        "references": {"type": "array", "items": REFERENCE},
        "startTime": _MICROS,
        "duration": _MICROS,
        "tags": KEY_VALUES,
        "logs": {"type": "array", "items": LOG},
        "processID": {"type": "string", "minLength": 1},
        "warnings": _NULLABLE_STRINGS,
    },
    {"flags": {"type": "integer", "minimum": 0}},
)
TRACE = _obj(
    {
        "traceID": _HEX_TRACE_ID,
        "spans": {"type": "array", "items": SPAN, "minItems": 1},
        "processes": {
            "type": "object",
            "additionalProperties": PROCESS,
            "propertyNames": {"minLength": 1},
        },
        "warnings": _NULLABLE_STRINGS,
    }
)
STRUCTURED_ERROR = _obj(
    {"msg": {"type": "string"}},
    {"code": {"type": "integer"}, "traceID": _HEX_TRACE_ID},
)
DEPENDENCY_LINK = _obj(
    {
        "parent": {"type": "string"},
        "child": {"type": "string"},
        "callCount": {"type": "integer", "minimum": 0},
    }
)
OPERATION = _obj({"name": {"type": "string"}, "spanKind": {"type": "string"}})


def envelope(data: Schema) -> Schema:
    """Jaeger's structuredResponse around `data`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"keyValue": KEY_VALUE},
        **_obj(
            {
                "data": data,
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
                "errors": {"type": ["array", "null"], "items": STRUCTURED_ERROR},
            }
        ),
    }


TRACES_ANSWER = envelope({"type": "array", "items": TRACE})
SERVICES_ANSWER = envelope({"type": "array", "items": {"type": "string"}})
OPERATION_NAMES_ANSWER = SERVICES_ANSWER
OPERATIONS_ANSWER = envelope({"type": "array", "items": OPERATION})
DEPENDENCIES_ANSWER = envelope({"type": "array", "items": DEPENDENCY_LINK})
ERROR_ANSWER = envelope({"type": "null"})


def schema_for(path: str, status: int = 200) -> Schema:
    """The schema an answer to `path` (a Jaeger API path, query string allowed) must meet."""
    route = path.split("?", 1)[0]
    if status != 200:
        return ERROR_ANSWER
    if route.startswith("/api/traces"):
        return TRACES_ANSWER
    if route == "/api/services":
        return SERVICES_ANSWER
    if route.startswith("/api/services/") and route.endswith("/operations"):
        return OPERATION_NAMES_ANSWER
    if route == "/api/operations":
        return OPERATIONS_ANSWER
    if route == "/api/dependencies":
        return DEPENDENCIES_ANSWER
    raise KeyError(f"no Jaeger API schema for {route}")


def validate_answer(path: str, status: int, body: Any) -> None:
    """Raise jsonschema.ValidationError where the answer is not in Jaeger's shape; also check
    what a schema cannot say: each span's processID names a process of its trace."""
    schema = schema_for(path, status)
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(body)
    if schema is TRACES_ANSWER:
        for trace in body["data"]:
            for span in trace["spans"]:
                assert span["processID"] in trace["processes"], span
                assert span["traceID"] == trace["traceID"], span
