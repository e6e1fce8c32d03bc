"""A fake Kubernetes API server for tests: a test double, not a Kubernetes.

It speaks the real wire protocol for what the installer uses: `GET /version`, and for any
`/api/v1/...` or `/apis/GROUP/VERSION/...` object path: server-side apply (`PATCH` with
`application/apply-patch+yaml`, `fieldManager` required), `GET`, `DELETE`, and `GET` of a
collection. Errors are `Status` objects with Kubernetes' reasons and codes. A namespaced
object needs its namespace to exist, as on a real server. What it does not do: field
ownership and merging (an apply replaces the object), admission, garbage collection,
watch. Controllers are simulated by `settle()`: Deployments become ready, CRDs established.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


@dataclass
class FakeKubeApi:
    """Objects by (apiVersion, plural, namespace, name); every request is logged."""

    version: tuple[str, str] = ("1", "30")
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _resource_version: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_route("*", "/{tail:.*}", self._object)
        return app

    def names(self, kind: str) -> set[str]:
        return {obj["metadata"]["name"] for obj in self.objects.values() if obj["kind"] == kind}

    def settle(self) -> None:
        """What controllers would do: Deployments ready, CRDs established."""
        for obj in self.objects.values():
            if obj["kind"] == "Deployment":
                obj["status"] = {"readyReplicas": obj["spec"].get("replicas", 1)}
            if obj["kind"] == "CustomResourceDefinition":
                obj["status"] = {"conditions": [{"type": "Established", "status": "True"}]}

    async def _version(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        major, minor = self.version
        return web.json_response(
            {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0"}
        )

    async def _object(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        match = _PATH.match(request.path)
        if not match:
            return _status(
                404, "NotFound", f"the server could not find the requested resource {request.path}"
            )
        api_version = match["core"] or f"{match['group']}/{match['version']}"
        namespace, plural, name = match["namespace"] or "", match["plural"], match["name"]
        if namespace and not self._get("v1", "namespaces", "", namespace):
            return _status(404, "NotFound", f'namespaces "{namespace}" not found')
        if name is None:
            return self._list(request, api_version, plural, namespace)
        key = (api_version, plural, namespace, name)
        if request.method == "GET":
            found = self.objects.get(key)
            return web.json_response(found) if found else self._not_found(plural, name)
        if request.method == "DELETE":
            gone = self.objects.pop(key, None)
            return web.json_response(gone) if gone else self._not_found(plural, name)
        if request.method == "PATCH":
            return await self._apply(request, key)
        return _status(405, "MethodNotAllowed", f"{request.method} is not supported by the fake")

    def _get(
        self, api_version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        return self.objects.get((api_version, plural, namespace, name))

    @staticmethod
    def _not_found(plural: str, name: str) -> web.Response:
        return _status(404, "NotFound", f'{plural} "{name}" not found')

    def _list(
        self, request: web.Request, api_version: str, plural: str, namespace: str
    ) -> web.Response:
        if request.method != "GET":
            return _status(405, "MethodNotAllowed", "only GET on collections")
        items = [
            obj
            for (v, p, ns, _), obj in self.objects.items()
            if v == api_version and p == plural and (not namespace or ns == namespace)
        ]
        return web.json_response(
            {"kind": "List", "apiVersion": "v1", "items": items, "metadata": {}}
        )

    async def _apply(self, request: web.Request, key: tuple[str, str, str, str]) -> web.Response:
        if request.content_type != "application/apply-patch+yaml":
            return _status(
                415,
                "UnsupportedMediaType",
                f"the fake only does server-side apply, got {request.content_type}",
            )
        if not request.query.get("fieldManager"):
            return _status(422, "Invalid", "PATCH with apply requires fieldManager")
        body = json.loads(await request.text())
        metadata = body.get("metadata") or {}
        if metadata.get("name") != key[3] or (metadata.get("namespace") or "") != key[2]:
            return _status(
                400, "BadRequest", "the name or namespace in the body does not match the URL"
            )
        if body.get("apiVersion") != key[0]:
            return _status(400, "BadRequest", "apiVersion in the body does not match the URL")
        created = key not in self.objects
        self._resource_version += 1
        metadata["resourceVersion"] = str(self._resource_version)
        metadata.setdefault("uid", f"uid-{self._resource_version}")
        self.objects[key] = body
        return web.json_response(body, status=201 if created else 200)
