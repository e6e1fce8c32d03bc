"""trellisd's local HTTP API (on a unix socket in the state dir): what the CLI talks to.

JSON in, JSON out; every user mistake comes back as {"error": "..."} with a 4xx status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict

from trellis.api.kinds import parse_documents, resolve_kind
from trellis.controlplane.http_bodies import json_object, openapi_document, workload_from_body
from trellis.controlplane.jwks import fetch_for_apply
from trellis.controlplane.rootrotation import RootRotator, parse_overlap
from trellis.controlplane.state import MeshState
from trellis.errors import Conflict, NotFound, TrellisError, ValidationError
from trellis.model import xds_types
from trellis.model.proxy import Proxy, ProxyType
from trellis.registry.local import workload_to_record
from trellis.xds.contract import ProxyStatus

StatusSource = Callable[[], list[ProxyStatus]]
SecretSource = Callable[[Proxy], dict[str, Any]]  # certificate facts, never private keys
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONFIG_TYPES = {
    "clusters": xds_types.CLUSTER,
    "endpoints": xds_types.ENDPOINT,
    "listeners": xds_types.LISTENER,
    "routes": xds_types.ROUTE,
}


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A TrellisError is the user's to fix: one clear line, the right status, no traceback."""
    try:
        return await handler(request)
    except ValidationError as e:
        problems = [str(p) for p in getattr(e, "errors", [])] or [str(e)]
        return web.json_response({"error": str(e), "errors": problems}, status=422)
    except NotFound as e:
        return web.json_response({"error": str(e)}, status=404)
    except Conflict as e:
        return web.json_response({"error": str(e)}, status=409)
    except TrellisError as e:
        return web.json_response({"error": str(e)}, status=400)


def build_app(
    state: MeshState,
    statuses: StatusSource,
    secrets: SecretSource | None = None,
    *,
    ca_admin: RootRotator | None = None,
) -> web.Application:
    routes = web.RouteTableDef()
    if ca_admin is not None:
        add_ca_routes(routes, ca_admin)

    @routes.get("/healthz")
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": state.snapshot.version})

    @routes.get("/openapi.json")
    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    @routes.post("/apply")
    async def apply(request: web.Request) -> web.Response:
        body = await json_object(request)
        # Off the event loop: pathological YAML (thousands of nested brackets) takes PyYAML
        # seconds, and the xDS server shares this loop.
        resources = await asyncio.to_thread(
            parse_documents,
            str(body.get("yaml", "")),
            default_namespace=str(body.get("namespace") or "default"),
        )
        if not resources:
            raise ValidationError("no resources found in the input")
        # Keys first: an unreachable jwksUri rejects the apply before anything is stored.
        jwks = await fetch_for_apply(resources, state.jwks_documents)
        results = await asyncio.to_thread(state.apply, resources, jwks)
        return web.json_response({"results": [_result(r) for r in results]})

    @routes.post("/delete")
    async def delete(request: web.Request) -> web.Response:
        body = await json_object(request)
        keys = _delete_keys(body)
        deleted = await asyncio.to_thread(state.delete, keys)
        return web.json_response({"deleted": [list(k) for k in deleted]})

    @routes.get("/resources")
    async def resources(request: web.Request) -> web.Response:
        q = request.query
        kind = resolve_kind(q["kind"]).KIND if q.get("kind") else None
        items = state.resources(kind, q.get("namespace") or None)
        if q.get("name"):
            items = [r for r in items if r.name == q["name"]]
            if not items:
                ns = q.get("namespace") or "default"
                raise NotFound(f"{kind} {ns}/{q['name']} not found")
        return web.json_response({"items": [r.to_wire() for r in items]})

    @routes.put("/workloads/{namespace}/{name}")
    async def put_workload(request: web.Request) -> web.Response:
        body = await json_object(request)
        workload = workload_from_body(
            body, request.match_info["namespace"], request.match_info["name"]
        )
        await asyncio.to_thread(state.put_workload, workload, str(body.get("netns", "")))
        return web.json_response({"ok": True})

    @routes.delete("/workloads/{namespace}/{name}")
    async def delete_workload(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        if not await asyncio.to_thread(state.delete_workload, ns, name):
            raise NotFound(f"workload {ns}/{name} not found")
        return web.json_response({"ok": True})

    @routes.get("/workloads")
    async def workloads(_: web.Request) -> web.Response:
        return web.json_response(
            {"items": [workload_to_record(r.workload, netns=r.netns) for r in state.workloads()]}
        )

    @routes.get("/proxy-status")
    async def proxy_status(_: web.Request) -> web.Response:
        return web.json_response({"proxies": [_status_json(s) for s in statuses()]})

    @routes.get("/proxy-config/{namespace}/{name}/{kind}")
    async def proxy_config(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "secret" and secrets is not None:
            proxy = _find_proxy(request.match_info["namespace"], request.match_info["name"])
            return web.json_response({"type": kind, **secrets(proxy)})
        if kind not in CONFIG_TYPES:
            raise TrellisError(
                f"unknown config type {kind!r}; use one of {', '.join(CONFIG_TYPES)}"
            )
        proxy = _find_proxy(request.match_info["namespace"], request.match_info["name"])
        resources = state.generate(proxy, CONFIG_TYPES[kind])
        items = [MessageToDict(m) for _, m in sorted(resources.items())]
        return web.json_response({"proxy": proxy.key, "type": kind, "items": items})

    def _find_proxy(namespace: str, name: str) -> Proxy:
        for s in statuses():
            if s.proxy.name == name and s.proxy.namespace == namespace:
                return s.proxy
        for r in state.workloads():
            w = r.workload
            if w.name == name and w.namespace == namespace:
                kind = ProxyType.ROUTER if "istio" in w.labels else ProxyType.SIDECAR
                return Proxy(kind, w.ip, w.name, w.namespace, w.labels, w.service_account)
        raise NotFound(f"no proxy {name}.{namespace}; see `trellis proxy-status`")

    app = web.Application(middlewares=[errors_as_json])
    app.add_routes(routes)
    return app


def add_ca_routes(routes: web.RouteTableDef, ca_admin: RootRotator) -> None:
    """`trellis ca status | rotate-root` (docs/ca.md, "Root rotation")."""

    @routes.get("/ca/status")
    async def ca_status(_: web.Request) -> web.Response:
        return web.json_response(ca_admin.status())

    @routes.post("/ca/rotate-root")
    async def ca_rotate_root(request: web.Request) -> web.Response:
        body = await json_object(request)
        overlap = parse_overlap(body.get("overlapSeconds") if isinstance(body, dict) else None)
        return web.json_response(await ca_admin.rotate_root(overlap))


def _delete_keys(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    if "yaml" in body:
        docs = parse_documents(
            str(body["yaml"]), default_namespace=str(body.get("namespace") or "default")
        )
        return [r.key for r in docs]
    if not isinstance(body.get("kind"), str) or not isinstance(body.get("name"), str):
        raise TrellisError('give "yaml", or "kind" and "name" (strings) of what to delete')
    kind = resolve_kind(body["kind"]).KIND
    return [(kind, str(body.get("namespace") or "default"), body["name"])]


def _result(r: Any) -> dict[str, Any]:
    kind, namespace, name = r.key
    return {
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "action": r.action,
        "resourceVersion": str(r.resource_version),
    }


def _status_json(s: ProxyStatus) -> dict[str, Any]:
    types = {}
    for t in s.types:
        types[xds_types.SHORT_NAMES.get(t.type_url, t.type_url)] = {
            "sent": t.sent_version,
            "acked": t.acked_version,
            "nacked": t.nacked_version,
            "error": t.nack_message,
        }
    return {
        "proxy": s.proxy.key,
        "type": s.proxy.type.value,
        "ip": s.proxy.ip,
        "connectedFor": round(time.time() - s.connected_since, 1),
        "delta": s.delta,
        "synced": s.synced,
        "xds": types,
    }
