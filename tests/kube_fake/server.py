"""A fake Kubernetes API server for tests: a test double that follows the real wire format.

Implemented (what Trellis's controller, webhooks and installer use):
- `GET /version`, `/api`, `/apis`; REST paths `/api/v1/...` and `/apis/GROUP/VERSION/...`,
  namespaced (`/namespaces/NS/PLURAL[/NAME]`) and cluster-scoped, lists across namespaces.
- list (`metadata.resourceVersion` on the list; items without kind/apiVersion, as for
  typed lists), get, create (POST; `generateName`; namespace must exist), update (PUT,
  optimistic concurrency: a stale `metadata.resourceVersion` is 409 Conflict; `/status`
  subresource), patch (merge-patch, strategic-merge treated as merge, json-patch, server-side
  apply with `fieldManager`, which creates or replaces), delete (a Namespace takes its objects
  with it). `labelSelector` with `k=v`, `k!=v` and `k`.
- watch: `?watch=1&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=S`, JSON lines
  `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`. No or "0" version: the
  current objects as ADDED, then changes; N: every change after N; N older than the last
  compaction: an ERROR event with a 410 Expired Status, then the stream ends.
- custom resources are served while their CRD exists; Pod and Deployment status is not taken
  from a create (a kubelet/controller writes it: `set_status`, `settle`).

- SelfSubjectAccessReview: allowed unless listed in `denied`.
- TokenReview (authentication.k8s.io/v1): answered, never stored, from `tokens` (token ->
  {"username", "audiences", "uid"?, "groups"?}): unknown token or no audience in common
  with `spec.audiences` is `authenticated: false` with an `error`, as the real
  service-account token authenticator answers; `token_reviews` counts the reviews.
- refused writes, as RBAC or an admission webhook refuses them: `refuse_writes[(group,
  plural)] = (code, reason, message)` answers every POST/PUT/PATCH there with that Status;
  `forbidden_message` and `webhook_denied_message` build the real servers' wording.

Not implemented: authentication and authorization (any token passes), admission (webhooks
are called by tests directly), field ownership of server-side apply, pagination, protobuf,
finalizers and graceful deletion, garbage collection by owner references.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
from typing import Any

import yaml
from aiohttp import web

from tests.kube_fake.patches import apply_json_patch, merge_patch
from tests.kube_fake.resources import ResourceType, builtin, from_crd
from tests.kube_fake.selectors import selected
from tests.kube_fake.store import Conflict, Key, ObjectStore, Watcher

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$"
)
_STATUS_FROM_CONTROLLERS = {"Pod", "Deployment"}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def forbidden_message(
    verb: str, group: str, plural: str, name: str, namespace: str, user: str
) -> str:
    """The API server's RBAC refusal, word for word in its format."""
    resource = f"{plural}.{group}" if group else plural
    scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return (
        f'{resource} "{name}" is forbidden: User "{user}" cannot {verb} resource "{plural}" '
        f'in API group "{group}"{scope}'
    )


def webhook_denied_message(webhook: str, message: str) -> str:
    """What the API server says when a validating admission webhook denies a request."""
    return f'admission webhook "{webhook}" denied the request: {message}'


def _error(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status(code, reason, message), status=code)


class FakeApiServer:
    """Objects in an ObjectStore; the aiohttp app; hooks tests use to play the cluster."""

    def __init__(self, *, version: tuple[str, str] = ("1", "31")) -> None:
        self.version = version
        self.store = ObjectStore()
        self.requests: list[tuple[str, str]] = []  # (method, path with query) of REST calls
        self.watch_requests: list[dict[str, str]] = []
        # (verb, group, resource) the caller may not do (SelfSubjectAccessReview answers)
        self.denied: set[tuple[str, str, str]] = set()
        # (group, plural) -> (code, reason, message): writes there are refused with that Status
        self.refuse_writes: dict[tuple[str, str], tuple[int, str, str]] = {}
        # token -> {"username", "audiences", ...}: what TokenReview answers for it
        self.tokens: dict[str, dict[str, Any]] = {}
        self.token_reviews = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/apis", self._api_groups)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    # -- hooks for tests ---------------------------------------------------------------------

    def compact(self) -> int:
        return self.store.compact()

    def drop_watches(self) -> int:
        return self.store.drop_watches()

    def bookmark(self) -> None:
        self.store.bookmark()

    def open_watches(self) -> int:
        return len(self.store.watchers)

    def set_status(
        self, group: str, plural: str, namespace: str, name: str, new: dict[str, Any]
    ) -> None:
        """What a kubelet or controller would write (Pod IPs, Deployment readiness)."""
        key = (group, plural, namespace, name)
        obj = self.store.objects[key]
        self.store.update(key, {**copy.deepcopy(obj), "status": new}, check_version=False)

    def settle(self) -> None:
        """Deployments become available and CRDs established, as their controllers would do."""
        for key, obj in list(self.store.objects.items()):
            if obj.get("kind") == "Deployment":
                n = (obj.get("spec") or {}).get("replicas", 1)
                self.set_status(*key, {"replicas": n, "readyReplicas": n, "availableReplicas": n})
            if obj.get("kind") == "CustomResourceDefinition" and not obj.get("status"):
                established = [{"type": "Established", "status": "True"}]
                self.set_status(*key, {"conditions": established})

    def object_set(self) -> set[tuple[str, str, str, str]]:
        """(apiVersion, kind, namespace, name) of every stored object: compare before/after."""
        return {(o["apiVersion"], o["kind"], k[2], k[3]) for k, o in self.store.objects.items()}

    def objects(self) -> list[dict[str, Any]]:
        """A copy of every stored object (with apiVersion and kind), in key order."""
        return [copy.deepcopy(obj) for _, obj in sorted(self.store.objects.items())]

    def names(self, kind: str) -> set[str]:
        """Names of the stored objects of one kind, in every namespace."""
        return {k[3] for k, o in self.store.objects.items() if o.get("kind") == kind}

    # -- discovery ---------------------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        major, minor = self.version
        return web.json_response(
            {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0"}
        )

    async def _api_versions(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"]})

    async def _api_groups(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    # -- REST ------------------------------------------------------------------------------

    def _resource(self, group: str, version: str, plural: str) -> ResourceType | None:
        found = builtin(group, version, plural)
        if found is not None:
            return found
        for (g, p, _, _), crd in self.store.objects.items():
            if (g, p) == ("apiextensions.k8s.io", "customresourcedefinitions"):
                custom = from_crd(crd, version, plural)
                if custom is not None and custom.group == group:
                    return custom
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        match = _PATH.match(request.path)
        if not match:
            return _error(404, "NotFound", "the server could not find the requested resource")
        group, version = ("", "v1") if match["core"] else (match["group"], match["version"])
        rtype = self._resource(group, version, match["plural"])
        namespace, name = match["namespace"] or "", match["name"]
        if rtype is None or (namespace and not rtype.namespaced):
            return _error(404, "NotFound", "the server could not find the requested resource")
        writes = request.method in ("POST", "PUT", "PATCH")
        if writes and namespace and ("", "namespaces", "", namespace) not in self.store.objects:
            return _error(404, "NotFound", f'namespaces "{namespace}" not found')
        call = _Call(rtype, version, namespace, name, match["sub"] or "")
        refused = self.refuse_writes.get((group, rtype.plural))
        if writes and refused is not None:
            return _error(*refused)
        if name is None:
            if request.method == "GET" and _go_bool(request.query.get("watch")):
                return await self._watch(request, call)
            if request.method == "GET":
                return self._list(request, call)
            if request.method == "POST" and call.rtype.kind == "SelfSubjectAccessReview":
                return self._access_review(await _body(request))
            if request.method == "POST" and call.rtype.kind == "TokenReview":
                return self._token_review(await _body(request))
            if request.method == "POST":
                return self._create(call, await _body(request))
            return _error(405, "MethodNotAllowed", f"{request.method} on a collection")
        return await self._object(request, call)

    def _list(self, request: web.Request, call: _Call) -> web.Response:
        selector = request.query.get("labelSelector", "")
        items = [
            _without_type(o)
            for o in self.store.list(call.rtype.group, call.rtype.plural, call.namespace)
            if selected(o, selector)
        ]  # items of a typed list carry no apiVersion/kind
        return web.json_response(
            {
                "kind": f"{call.rtype.kind}List",
                "apiVersion": call.api_version,
                "metadata": {"resourceVersion": str(self.store.revision)},
                "items": items,
            }
        )

    def _access_review(self, review: dict[str, Any]) -> web.Response:
        """Answered, never stored; allowed unless (verb, group, resource) is in `denied`."""
        attrs = (review.get("spec") or {}).get("resourceAttributes") or {}
        wanted = (attrs.get("verb"), attrs.get("group", ""), attrs.get("resource"))
        review["status"] = {"allowed": wanted not in self.denied}
        return web.json_response(review, status=201)

    def _token_review(self, review: dict[str, Any]) -> web.Response:
        """Answered, never stored: the token's user when it is known and valid for one of
        the requested audiences (any, when none are requested)."""
        spec = review.get("spec") or {}
        known = self.tokens.get(str(spec.get("token", "")))
        wanted = list(spec.get("audiences") or [])
        self.token_reviews += 1
        if known is None:
            result: dict[str, Any] = {"authenticated": False, "error": "invalid bearer token"}
        else:
            audiences = list(known.get("audiences") or [])
            common = [a for a in wanted if a in audiences] if wanted else audiences
            if wanted and not common:
                error = (
                    f"[invalid bearer token, token audiences {json.dumps(audiences)} is invalid "
                    f"for the target audiences {json.dumps(wanted)}]"
                )
                result = {"authenticated": False, "error": error}
            else:
                user = {k: v for k, v in known.items() if k != "audiences"}
                result = {"authenticated": True, "user": user, "audiences": common}
        review["status"] = result
        return web.json_response(review, status=201)

    def _create(self, call: _Call, body: dict[str, Any]) -> web.Response:
        metadata = body.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{self.store.revision + 1:05d}"
        if not metadata.get("name"):
            return _error(422, "Invalid", "metadata.name: Required value")
        if call.rtype.namespaced:
            metadata["namespace"] = call.namespace or metadata.get("namespace", "default")
        key = call.key(metadata["name"], metadata.get("namespace", ""))
        if key in self.store.objects:
            message = f'{call.rtype.plural} "{metadata["name"]}" already exists'
            return _error(409, "AlreadyExists", message)
        if call.rtype.kind in _STATUS_FROM_CONTROLLERS:
            body.pop("status", None)
        if call.rtype.kind == "Namespace":
            body["status"] = {"phase": "Active"}
        created = self.store.create(key, call.stored(body))
        return web.json_response(call.present(created), status=201)

    async def _object(self, request: web.Request, call: _Call) -> web.Response:
        assert call.name is not None
        key = call.key(call.name, call.namespace)
        current = self.store.get(key)
        if request.method == "GET":
            return web.json_response(call.present(current)) if current else call.not_found()
        if request.method == "DELETE":
            return self._delete(call, key) if current else call.not_found()
        body = await _body(request)
        if request.method == "PATCH":
            return self._patch(request, call, key, current, body)
        if request.method == "PUT":
            if current is None:
                return call.not_found()
            if call.sub == "status":
                body = {**current, "status": body.get("status")}
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            elif "status" in current:
                body["status"] = current["status"]
            return self._update(call, key, body)
        return _error(405, "MethodNotAllowed", f"{request.method} is not supported")

    def _update(self, call: _Call, key: Key, body: dict[str, Any]) -> web.Response:
        meta = body.get("metadata") or {}
        if meta.get("name", key[3]) != key[3]:
            return _error(400, "BadRequest", "the name in the body does not match the URL")
        try:
            updated = self.store.update(key, call.stored(body))
        except Conflict as err:
            return _error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {call.rtype.plural} "{key[3]}": {err}',
            )
        return web.json_response(call.present(updated))

    def _patch(
        self,
        request: web.Request,
        call: _Call,
        key: Key,
        current: dict[str, Any] | None,
        body: Any,
    ) -> web.Response:
        kind = request.content_type
        if kind == "application/apply-patch+yaml":
            if not request.query.get("fieldManager"):
                return _error(400, "BadRequest", "PATCH with apply requires fieldManager")
            if current is None:
                return self._create(call, body)
            body.setdefault("metadata", {}).pop("resourceVersion", None)
            if "status" in current:
                body["status"] = current["status"]
            return self._update(call, key, body)
        if current is None:
            return call.not_found()
        if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            patched = merge_patch(current, body)
        elif kind == "application/json-patch+json":
            try:
                patched = apply_json_patch(current, body)
            except (KeyError, IndexError, ValueError) as err:
                return _error(422, "Invalid", f"the JSON patch does not apply: {err}")
        else:
            return _error(415, "UnsupportedMediaType", f"unsupported patch type {kind}")
        return self._update(call, key, patched)

    def _delete(self, call: _Call, key: Key) -> web.Response:
        if call.rtype.kind == "Namespace":
            for other in [k for k in self.store.objects if k[2] == key[3]]:
                self.store.delete(other)
        gone = self.store.delete(key)
        return web.json_response(call.present(gone))

    async def _watch(self, request: web.Request, call: _Call) -> web.StreamResponse:
        query = request.query
        self.watch_requests.append(dict(query))
        watcher = Watcher(call.rtype.group, call.rtype.plural, call.namespace)
        since = query.get("resourceVersion", "")
        bookmarks = _go_bool(query.get("allowWatchBookmarks"))
        selector = query.get("labelSelector", "")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if since not in ("", "0") and int(since) < self.store.compacted:
            expired = status(
                410, "Expired", f"too old resource version: {since} ({self.store.compacted})"
            )
            await _send(response, "ERROR", expired)
            return response
        # Replay and registration happen without an await between them: no event is missed.
        if since in ("", "0"):
            backlog = [
                ("ADDED", o)
                for o in self.store.list(watcher.group, watcher.plural, watcher.namespace)
            ]
        else:
            backlog = [(e.type, e.object) for e in self.store.events_since(int(since), watcher)]
        self.store.watchers.add(watcher)
        try:
            for kind, obj in backlog:
                if selected(obj, selector):
                    await _send(response, kind, call.present(obj))
            await self._stream(response, call, watcher, bookmarks, selector, query)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.watchers.discard(watcher)
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        call: _Call,
        watcher: Watcher,
        bookmarks: bool,
        selector: str,
        query: Any,
    ) -> None:
        timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while (item := await watcher.queue.get()) is not None:
                    if item == "BOOKMARK":
                        if bookmarks:
                            mark: dict[str, Any] = {"kind": call.rtype.kind}
                            mark["apiVersion"] = call.api_version
                            mark["metadata"] = {"resourceVersion": str(self.store.revision)}
                            await _send(response, "BOOKMARK", mark)
                    elif not isinstance(item, str) and selected(item.object, selector):
                        await _send(response, item.type, call.present(item.object))


class _Call:
    """One request's resource type, version and place."""

    def __init__(
        self, rtype: ResourceType, version: str, namespace: str, name: str | None, sub: str
    ) -> None:
        self.rtype, self.version, self.namespace, self.name, self.sub = (
            rtype,
            version,
            namespace,
            name,
            sub,
        )
        self.api_version = rtype.api_version(version)

    def key(self, name: str, namespace: str) -> Key:
        return (
            self.rtype.group,
            self.rtype.plural,
            namespace if self.rtype.namespaced else "",
            name,
        )

    def stored(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "apiVersion": self.api_version, "kind": self.rtype.kind}

    def present(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as this request's version shows it (one storage, many served versions)."""
        return {**obj, "apiVersion": self.api_version, "kind": self.rtype.kind}

    def not_found(self) -> web.Response:
        return _error(404, "NotFound", f'{self.rtype.plural} "{self.name}" not found')


def _go_bool(value: str | None) -> bool:
    """Query flags parse as Go's strconv.ParseBool (clients send 1, true or True)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _without_type(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}


async def _body(request: web.Request) -> Any:
    text = await request.text()
    if request.content_type == "application/apply-patch+yaml":
        return yaml.safe_load(text) or {}
    return json.loads(text) if text else {}


async def _send(response: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
    line = json.dumps({"type": kind, "object": obj}) + "\n"
    await response.write(line.encode())
