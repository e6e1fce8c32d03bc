"""Cluster checks before an install, beyond the installer's version/istiod check:
another Istio's webhooks (two injectors would both mutate every pod) and the permissions
the installer needs, asked of the API server with SelfSubjectAccessReviews."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client import ApiClient

_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
# (verb, group, resource, namespaced): what `trellis install` and `uninstall` do.
REQUIRED: tuple[tuple[str, str, str, bool], ...] = (
    ("create", "apiextensions.k8s.io", "customresourcedefinitions", False),
    ("create", "rbac.authorization.k8s.io", "clusterroles", False),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", False),
    ("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", False),
    ("create", "admissionregistration.k8s.io", "validatingwebhookconfigurations", False),
    ("create", "", "namespaces", False),
    ("create", "apps", "deployments", True),
    ("create", "", "services", True),
    ("create", "", "configmaps", True),
    ("delete", "apps", "deployments", True),
)


async def _call(api: ApiClient, method: str, path: str, body: Any = None) -> Any:
    return await api.call_api(
        path,
        method,
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body,
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def is_istio_webhook(config: dict[str, Any]) -> bool:
    """Istio's own configurations (istio-sidecar-injector, istio-validator-*, istiod-*)."""
    name = str((config.get("metadata") or {}).get("name") or "")
    return name.startswith(("istio-", "istiod-"))


async def conflicting_webhooks(api: ApiClient) -> list[str]:
    problems = []
    for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        body = await _call(api, "GET", f"{_ADMISSION}/{plural}")
        for config in body.get("items") or []:
            if is_istio_webhook(config):
                name = config["metadata"]["name"]
                problems.append(
                    f"Istio's webhook configuration {name} ({plural}) exists: Istio is installed "
                    "(uninstall it first: `istioctl uninstall --purge`), or a leftover remains "
                    f"(`kubectl delete {plural} {name}`)"
                )
    return problems


async def missing_permissions(api: ApiClient, namespace: str) -> list[str]:
    problems = []
    for verb, group, resource, namespaced in REQUIRED:
        attributes = {"verb": verb, "group": group, "resource": resource}
        if namespaced:
            attributes["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        answer = await _call(api, "POST", _SSAR, review)
        if not (answer.get("status") or {}).get("allowed"):
            where = f" in namespace {namespace}" if namespaced else ""
            what = f"{resource}.{group}" if group else resource
            problems.append(
                f"you may not {verb} {what}{where}: the installer needs cluster-admin "
                "(or a role granting it)"
            )
    return problems


async def cluster_precheck(api: ApiClient, namespace: str) -> list[str]:
    """Every problem found: conflicting Istio webhooks, then missing permissions."""
    return [*await conflicting_webhooks(api), *await missing_permissions(api, namespace)]
