"""HTTP ingest: OTLP/HTTP `POST /v1/traces` (4318) and Zipkin v2 `POST /api/v2/spans` (9411).

A request is answered only after its spans are in the store, so a 200/202 means stored. OTLP's
partial success reports spans that were not stored (malformed, or their trace is full): an
exporter is never told a span was kept that was not.
https://opentelemetry.io/docs/specs/otlp/#otlphttp
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from trellis.tracing.model import SpanDecodeError
from trellis.tracing.otlp_common import DecodedSpans
from trellis.tracing.otlp_json import decode_otlp_json
from trellis.tracing.otlp_proto import decode_otlp_protobuf
from trellis.tracing.store import TraceStore
from trellis.tracing.zipkin import decode_zipkin_v2

log = logging.getLogger("trellis.tracing")

# Batches from a busy collector can be large; aiohttp's default body limit is 1 MiB.
MAX_BODY_BYTES = 64 * 1024 * 1024
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.Response]]
# google.rpc.Code.INVALID_ARGUMENT, the code OTLP/HTTP's error body carries for a 400.
_INVALID_ARGUMENT = 3


def otlp_http_app(store: TraceStore) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/v1/traces", _otlp_handler(store))
    return app


def zipkin_app(store: TraceStore) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/api/v2/spans", _zipkin_handler(store))
    return app


def store_decoded(store: TraceStore, decoded: DecodedSpans, source: str) -> tuple[int, str]:
    """Put decoded spans in the store; returns (spans not stored, why) for the sender."""
    result = store.add(decoded.spans)
    rejected = decoded.invalid + result.rejected
    reason = decoded.error
    if result.rejected:
        reason = reason or f"trace exceeds {store.max_spans_per_trace} spans"
    if rejected:
        log.warning(
            "event=spans-rejected source=%s rejected=%d reason=%r", source, rejected, reason
        )
    return rejected, reason


def _otlp_handler(store: TraceStore) -> Handler:
    async def export(request: web.Request) -> web.Response:
        content_type = request.content_type
        if content_type not in (PROTOBUF, JSON):
            return web.Response(status=415, text=f"use {PROTOBUF} or {JSON}")
        body = await request.read()
        as_json = content_type == JSON
        try:
            decoded = decode_otlp_json(body) if as_json else decode_otlp_protobuf(body)
        except SpanDecodeError as e:
            return _otlp_error(str(e), as_json=as_json)
        rejected, reason = store_decoded(store, decoded, "otlp-http")
        return _otlp_success(rejected, reason, as_json=as_json)

    return export


def _otlp_success(rejected: int, reason: str, *, as_json: bool) -> web.Response:
    if as_json:
        payload: dict[str, object] = {}
        if rejected:
            # proto3 JSON writes int64 as a string
            payload["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": reason}
        return web.Response(body=json.dumps(payload).encode(), content_type=JSON)
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = reason
    return web.Response(body=response.SerializeToString(), content_type=PROTOBUF)


def _otlp_error(message: str, *, as_json: bool) -> web.Response:
    """400 with a google.rpc.Status body, in the request's encoding, as OTLP/HTTP asks."""
    if as_json:
        body = json.dumps({"code": _INVALID_ARGUMENT, "message": message}).encode()
        return web.Response(status=400, body=body, content_type=JSON)
    status = Status(code=_INVALID_ARGUMENT, message=message)
    return web.Response(status=400, body=status.SerializeToString(), content_type=PROTOBUF)


def _zipkin_handler(store: TraceStore) -> Handler:
    async def post_spans(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            decoded = decode_zipkin_v2(body)
        except SpanDecodeError as e:
            return web.Response(status=400, text=str(e))
        # Zipkin's API has no partial success: refused spans are logged (store_decoded).
        store_decoded(store, decoded, "zipkin")
        return web.Response(status=202)

    return post_spans
