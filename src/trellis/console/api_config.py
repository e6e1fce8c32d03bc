"""Istio config handlers: list, view, validate, and writes through trellisd (`trellis apply`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from trellis.api.base import Resource
from trellis.api.kinds import parse_resource, resolve_kind
from trellis.console import config_api
from trellis.console.context import context_of
from trellis.console.mesh_client import MeshClient
from trellis.console.openapi import ISTIO_KINDS
from trellis.errors import NotFound, TrellisError, ValidationError

SERVICE_KIND = "Service"  # a Kubernetes core kind: shown under services, not Istio config


async def stored(mesh: MeshClient) -> list[Resource]:
    return [parse_resource(item) for item in await mesh.resources()]


async def config_list(request: web.Request) -> web.Response:
    resources = await stored(context_of(request).mesh)
    wanted = {n for n in request.query.get("namespaces", "").split(",") if n}
    validations = config_api.validations_by_key(resources)
    items = [
        config_api.config_item(r, validations[r.key])
        for r in sorted(resources, key=lambda r: r.key)
        if r.kind != SERVICE_KIND and (not wanted or r.namespace in wanted)
    ]
    return web.json_response({"resources": items})


async def config_view(request: web.Request) -> web.Response:
    resources = await stored(context_of(request).mesh)
    key = _key(request)
    found = next((r for r in resources if r.key == key), None)
    if found is None:
        raise NotFound(f"{key[0]} {key[1]}/{key[2]} not found")
    validation = config_api.validations_by_key(resources)[key]
    return web.json_response(config_api.resource_view(found, validation))


def _key(request: web.Request) -> tuple[str, str, str]:
    """(kind, namespace, name) the path names; a word that is no Istio config kind is a 404."""
    word = request.match_info["kind"]
    try:
        kind = resolve_kind(word).KIND
    except TrellisError:
        kind = SERVICE_KIND  # refused just below, with the same answer
    if kind == SERVICE_KIND:
        raise NotFound(f"no Istio config kind {word!r}; kinds: {', '.join(ISTIO_KINDS)}")
    return kind, request.match_info["ns"], request.match_info["name"]


async def validate(request: web.Request) -> web.Response:
    text = await request.text()
    namespace = request.query.get("namespace", "default")
    resources = await stored(context_of(request).mesh)
    return web.json_response(config_api.validate_text(text, namespace, resources))


async def _write(request: web.Request, text: str, namespace: str) -> web.Response:
    mesh = context_of(request).mesh
    resources = await stored(mesh)
    try:
        result: Any = await mesh.apply(text, namespace)
    except ValidationError as e:
        checks = config_api.validate_text(text, namespace, resources)["checks"]
        return web.json_response({"error": str(e), "checks": checks}, status=400)
    return web.json_response(result)


async def create(request: web.Request) -> web.Response:
    return await _write(request, await request.text(), request.match_info["ns"])


async def replace(request: web.Request) -> web.Response:
    """PUT: the body must be the resource the path names (no renames through a PUT)."""
    text = await request.text()
    kind, ns, name = _key(request)
    parsed, problems = config_api.parse_for_validation(text, ns)
    if problems:
        checks = config_api.validation_json(problems)["checks"]
        return web.json_response({"error": "the config is invalid", "checks": checks}, status=400)
    if [r.key for r in parsed] != [(kind, ns, name)]:
        return web.json_response(
            {"error": f"the body must be exactly {kind} {ns}/{name}", "checks": []}, status=400
        )
    return await _write(request, text, ns)


async def delete(request: web.Request) -> web.Response:
    kind, ns, name = _key(request)
    result: Any = await context_of(request).mesh.delete(kind, ns, name)
    if not result.get("deleted"):
        raise NotFound(f"{kind} {ns}/{name} not found")
    return web.json_response(result)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/istio/config", config_list)
    router.add_post("/api/istio/validate", validate)
    router.add_post("/api/namespaces/{ns}/istio", create)
    router.add_get("/api/namespaces/{ns}/istio/{kind}/{name}", config_view)
    router.add_put("/api/namespaces/{ns}/istio/{kind}/{name}", replace)
    router.add_delete("/api/namespaces/{ns}/istio/{kind}/{name}", delete)
