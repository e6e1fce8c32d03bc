"""The admission webhooks trellisd serves (AdmissionReview v1): `/validate` and `/inject`.

`/validate` runs what `trellis apply` runs (schema, semantics, references to stored
DestinationRules) and denies with every problem named by resource, field and reason.
`/inject` adds the sidecar with the installer's pure `inject_pod_template` and answers with
a JSONPatch (RFC 6902) of the difference; a pod already injected or opted out gets no
patch, so a re-invocation changes nothing. The webhook configurations themselves are
rendered by kube/webhooks.py.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from trellis.api.base import Resource
from trellis.api.kinds import KINDS
from trellis.api.references import check_references
from trellis.api.validation import problems_of
from trellis.errors import ValidationError, ValidationErrors
from trellis.kube.config_sync import resource_from_object
from trellis.kube.inject import InjectSettings, inject_pod_template, needs_injection
from trellis.kube.injection_policy import namespace_enabled

log = logging.getLogger("trellisd.webhook")

StoredRules = Callable[[], Sequence[Resource]]
NamespaceLabels = Callable[[str], Mapping[str, Any] | None]  # None: namespace not known yet


def review_response(
    request: Mapping[str, Any],
    *,
    allowed: bool,
    message: str = "",
    patch: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 answering `request` (same uid)."""
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": allowed}
    if message:
        code = 200 if allowed else 400
        response["status"] = {"code": code, "message": message}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def validate_review(review: Mapping[str, Any], stored_rules: StoredRules = tuple) -> dict[str, Any]:
    """Deny an Istio resource that `trellis apply` would refuse; allow everything else."""
    request = review.get("request") or {}
    obj = request.get("object")
    if request.get("operation") == "DELETE" or not isinstance(obj, dict):
        return review_response(request, allowed=True)
    cls = KINDS.get(str(obj.get("kind")))
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    if cls is None or not cls.GROUP or group != cls.GROUP:  # core Services, Gateway API, ...
        return review_response(request, allowed=True)
    obj = {
        **obj,
        "metadata": {
            "namespace": request.get("namespace") or "default",
            **(obj.get("metadata") or {}),
        },
    }
    try:
        resource = resource_from_object(obj)
        problems = problems_of(resource) + check_references([resource], stored_rules())
        if problems:
            raise ValidationErrors(problems)
    except ValidationError as err:
        return review_response(request, allowed=False, message=err.describe())
    return review_response(request, allowed=True)


@dataclass(frozen=True, slots=True)
class Injector:
    settings: InjectSettings
    namespace_labels: NamespaceLabels = lambda _: None

    def review(self, review: Mapping[str, Any]) -> dict[str, Any]:
        """Allow every Pod; patch in the sidecar where the namespace and pod ask for one."""
        request = review.get("request") or {}
        pod = request.get("object")
        if (request.get("kind") or {}).get("kind") != "Pod" or not isinstance(pod, dict):
            return review_response(request, allowed=True)
        labels = self.namespace_labels(str(request.get("namespace") or ""))
        if labels is not None and not namespace_enabled(labels):
            return review_response(request, allowed=True)
        if not needs_injection(pod):
            return review_response(request, allowed=True)
        meta = pod.get("metadata") or {}
        name = str(meta.get("name") or str(meta.get("generateName") or "").rstrip("-"))
        injected = inject_pod_template(pod, self.settings, default_name=name)
        return review_response(request, allowed=True, patch=json_patch(pod, injected))


def json_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """RFC 6902 ops turning `before` into `after`, per member of metadata and spec (an `add`
    of an existing member replaces it), so the patch stays small and readable."""
    ops: list[dict[str, Any]] = []
    for section in ("metadata", "spec"):
        old, new = before.get(section), after.get(section)
        if not isinstance(old, dict) or not isinstance(new, dict):
            if old != new:
                ops.append({"op": "add", "path": f"/{section}", "value": new})
            continue
        for key in sorted(set(old) | set(new)):
            path = f"/{section}/{_escape(key)}"
            if key not in new:
                ops.append({"op": "remove", "path": path})
            elif old.get(key) != new[key]:
                ops.append({"op": "add", "path": path, "value": new[key]})
    return ops


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def admission_app(injector: Injector, stored_rules: StoredRules = tuple) -> web.Application:
    """POST /validate and /inject; a body that is not an AdmissionReview is a 400."""

    async def handle(request: web.Request, answer: Callable[[Any], dict[str, Any]]) -> web.Response:
        try:
            review = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
            return web.json_response({"error": "expected an AdmissionReview"}, status=400)
        response = answer(review)
        log.info(
            "event=admission path=%s uid=%s allowed=%s",
            request.path,
            response["response"]["uid"],
            response["response"]["allowed"],
        )
        return web.json_response(response)

    async def validate(request: web.Request) -> web.Response:
        return await handle(request, lambda r: validate_review(r, stored_rules))

    async def inject(request: web.Request) -> web.Response:
        return await handle(request, injector.review)

    app = web.Application()
    app.router.add_post("/validate", validate)
    app.router.add_post("/inject", inject)
    return app
