"""The Kubernetes API edge for the installer: server-side apply, get and delete by reference.

Built on the official async client (kubernetes_asyncio, DESIGN §8) at the REST level: the
installer handles a fixed set of kinds, so a table of their paths replaces API discovery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, ApiException, Configuration

from trellis.errors import NotFound, TrellisError

FIELD_MANAGER = "trellis-installer"
# (apiVersion, kind) -> (plural, namespaced) for every kind the installer renders.
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): (
        "mutatingwebhookconfigurations",
        False,
    ),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): (
        "validatingwebhookconfigurations",
        False,
    ),
}


class KubeApiError(TrellisError):
    """The API server refused a request; the message says which object and why.

    `ref` (the object, when there is one), `status` (the HTTP code) and `reason` (the
    server's own message) let a caller such as the chart's install Job say what to do next."""

    def __init__(
        self, message: str, *, ref: ObjectRef | None = None, status: int = 0, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.ref = ref
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Which object: enough to find it again (the install record stores these)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        metadata = obj.get("metadata") or {}
        return cls(obj["apiVersion"], obj["kind"], metadata.get("namespace", ""), metadata["name"])

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ObjectRef:
        return cls(data["apiVersion"], data["kind"], data.get("namespace", ""), data["name"])

    def to_dict(self) -> dict[str, str]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    def path(self) -> str:
        """The object's REST path, e.g. /apis/apps/v1/namespaces/istio-system/deployments/x."""
        try:
            plural, namespaced = RESOURCES[(self.api_version, self.kind)]
        except KeyError:
            raise TrellisError(
                f"the installer does not handle {self.api_version} {self.kind}"
            ) from None
        root = (
            f"/api/{self.api_version}"
            if "/" not in self.api_version
            else f"/apis/{self.api_version}"
        )
        scope = f"/namespaces/{self.namespace}" if namespaced else ""
        return f"{root}{scope}/{plural}/{self.name}"


class Cluster:
    """One API server, reached through a kubernetes_asyncio ApiClient the caller owns."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    @property
    def api(self) -> ApiClient:
        return self._api

    async def _call(self, path: str, method: str, **kwargs: Any) -> Any:
        return await self._api.call_api(
            path,
            method,
            response_types_map={200: "object", 201: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            **kwargs,
        )

    async def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply, taking over fields from other managers (as `kubectl apply
        --server-side --force-conflicts`), so a re-run converges on what was rendered."""
        ref = ObjectRef.of(obj)
        try:
            await self._call(
                ref.path(),
                "PATCH",
                query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                header_params={
                    "Content-Type": "application/apply-patch+yaml",
                    "Accept": "application/json",
                },
                body=obj,
            )
        except ApiException as err:
            raise _api_error(f"applying {ref}", ref, err) from None

    async def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            found = await self._call(
                ref.path(), "GET", header_params={"Accept": "application/json"}
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise _api_error(f"reading {ref}", ref, err) from None
        return dict(found)

    async def delete(self, ref: ObjectRef) -> bool:
        """Delete (foreground for owned objects); False when it was already gone."""
        try:
            await self._call(
                ref.path(),
                "DELETE",
                query_params=[("propagationPolicy", "Foreground")],
                header_params={"Accept": "application/json"},
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise _api_error(f"deleting {ref}", ref, err) from None
        return True

    async def list_all(self, api_version: str, plural: str) -> list[dict[str, Any]] | None:
        """Every object of a collection across namespaces (items get apiVersion and kind back
        from the list's kind); None when the server does not serve it (a CRD not installed)."""
        root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            found = await self._call(
                f"{root}/{plural}", "GET", header_params={"Accept": "application/json"}
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise _api_error(f"listing {plural}", None, err) from None
        kind = str(found.get("kind", "")).removesuffix("List")
        return [
            {"apiVersion": api_version, "kind": kind, **item} for item in found.get("items") or []
        ]

    async def server_version(self) -> tuple[int, int]:
        """(major, minor) of the API server, from /version."""
        try:
            info = await self._call("/version", "GET", header_params={"Accept": "application/json"})
        except ApiException as err:
            raise KubeApiError(f"reading the server version: {_reason(err)}") from None
        minor = "".join(ch for ch in str(info.get("minor", "0")) if ch.isdigit()) or "0"
        return int(str(info.get("major", "0")) or 0), int(minor)


def _api_error(doing: str, ref: ObjectRef | None, err: ApiException) -> KubeApiError:
    reason = _reason(err)
    return KubeApiError(f"{doing}: {reason}", ref=ref, status=int(err.status or 0), reason=reason)


def _reason(err: ApiException) -> str:
    """The API server's own message (a Status object), else the HTTP status."""
    try:
        status = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return f"{message} (HTTP {err.status})" if message else f"HTTP {err.status} {err.reason}"


async def connect(kubeconfig: Path | None = None, context: str | None = None) -> ApiClient:
    """An ApiClient from a kubeconfig (KUBECONFIG, ~/.kube/config) or the in-cluster account."""
    try:
        if kubeconfig is None and context is None and _in_cluster():
            configuration = Configuration()
            kube_config.load_incluster_config(client_configuration=configuration)
            return ApiClient(configuration=configuration)
        return await kube_config.new_client_from_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            context=context,
            persist_config=False,
        )
    except (kube_config.ConfigException, OSError) as err:
        raise NotFound(f"no Kubernetes cluster to talk to: {err}") from None


def _in_cluster() -> bool:
    return Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
