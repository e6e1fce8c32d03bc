"""Jaeger's query HTTP API on 16686, the part Jaeger's UI and Grafana's Jaeger datasource use.

Routes as Jaeger registers them: `/api/services`, `/api/services/{service}/operations`,
`/api/operations?service=&spanKind=`, `/api/traces` (search, or `?traceID=` lookups),
`/api/traces/{traceID}` and `/api/dependencies`. Trellis adds `/healthz` with the store's
counters (readiness for `trellis up`, and the numbers an operator wants when traces vanish),
and `/api/openapi.json`, the OpenAPI document of every trace-store route (openapi.yaml).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from trellis.tracing.jaeger_json import (
    encode_dependencies,
    encode_operations,
    encode_trace,
    envelope,
    error_envelope,
    trace_not_found,
)
from trellis.tracing.query import (
    QueryError,
    parse_dependencies,
    parse_search,
    parse_trace_id_param,
)
from trellis.tracing.store import TraceStore

Clock = Callable[[], float]
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")


def query_app(store: TraceStore, *, clock: Clock = time.time) -> web.Application:
    api = _QueryApi(store, clock)
    app = web.Application(middlewares=[_bad_query_is_400])
    app.router.add_get("/api/services", api.services)
    app.router.add_get("/api/services/{service}/operations", api.service_operations)
    app.router.add_get("/api/operations", api.operations)
    app.router.add_get("/api/traces", api.search)
    app.router.add_get("/api/traces/{trace_id}", api.trace)
    app.router.add_get("/api/dependencies", api.dependencies)
    app.router.add_get("/healthz", api.health)
    app.router.add_get("/api/openapi.json", _openapi)
    return app


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The trace store's OpenAPI document (openapi.yaml beside this module)."""
    document: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text())
    return document


async def _openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def json_response(document: Any, *, status: int = 200) -> web.Response:
    body = json.dumps(document, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type="application/json")


@web.middleware
async def _bad_query_is_400(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except QueryError as e:
        return json_response(error_envelope(400, str(e)), status=400)


class _QueryApi:
    """Handlers over one store; `clock` (seconds) decides what "now" means for lookbacks."""

    def __init__(self, store: TraceStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    async def services(self, request: web.Request) -> web.Response:
        services = self.store.services()
        return json_response(envelope(services, total=len(services)))

    async def service_operations(self, request: web.Request) -> web.Response:
        # The legacy route the UI and Grafana use: names only, every span kind.
        operations = self.store.operations(request.match_info["service"])
        names = sorted({op.name for op in operations})
        return json_response(envelope(names, total=len(names)))

    async def operations(self, request: web.Request) -> web.Response:
        service = request.query.get("service", "")
        if not service:
            raise QueryError("parameter 'service' is required")
        operations = self.store.operations(service, request.query.get("spanKind", ""))
        return json_response(envelope(encode_operations(operations), total=len(operations)))

    async def search(self, request: web.Request) -> web.Response:
        search = parse_search(request.query.items(), now_us=self._now_us())
        if search.query is not None:
            traces = self.store.find(search.query)
            return json_response(envelope([encode_trace(t) for t in traces]))
        found, errors = [], []
        for trace_id in search.trace_ids:
            trace = self.store.get(trace_id)
            if trace is None:
                errors.append(trace_not_found(trace_id))
            else:
                found.append(encode_trace(trace))
        return json_response(envelope(found, errors=errors or None))

    async def trace(self, request: web.Request) -> web.Response:
        trace_id = parse_trace_id_param(request.match_info["trace_id"])
        trace = self.store.get(trace_id)
        if trace is None:
            return json_response(error_envelope(404, "trace not found"), status=404)
        return json_response(envelope([encode_trace(trace)]))

    async def dependencies(self, request: web.Request) -> web.Response:
        end_us, lookback_us = parse_dependencies(request.query.items(), now_us=self._now_us())
        links = self.store.dependencies(end_us=end_us, lookback_us=lookback_us)
        service = request.query.get("service", "")
        if service:
            links = [link for link in links if service in (link.parent, link.child)]
        return json_response(envelope(encode_dependencies(links)))

    async def health(self, request: web.Request) -> web.Response:
        stats = self.store.stats()
        return json_response(
            {
                "status": "ok",
                "traces": stats.traces,
                "spans": stats.spans,
                "maxTraces": self.store.max_traces,
                "evictedTraces": stats.evicted_traces,
                "rejectedSpans": stats.rejected_spans,
            }
        )
