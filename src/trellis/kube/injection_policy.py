"""Which namespaces and pods get a sidecar: Istio's labels and annotation, as pure checks.

Shared by the mutating webhook (a second look after the API server's namespaceSelector)
and `trellis x check-inject` (which pods would get a sidecar, which need a restart).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trellis.kube.inject import INJECT_KEY
from trellis.kube.proxy_pod import PROXY_CONTAINER

INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
_FALSE = {"false", "n", "no", "off"}


def namespace_enabled(labels: Mapping[str, Any]) -> bool:
    """`istio-injection=enabled`, or a revision label without `istio-injection` (Istio's rule)."""
    if INJECTION_LABEL in labels:
        return labels[INJECTION_LABEL] == "enabled"
    return bool(labels.get(REVISION_LABEL))


def pod_opted_out(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    for source in (meta.get("annotations") or {}, meta.get("labels") or {}):
        if str(source.get(INJECT_KEY, "")).strip().lower() in _FALSE:
            return True
    return False


def has_sidecar(pod: Mapping[str, Any]) -> bool:
    containers = (pod.get("spec") or {}).get("containers") or []
    return any(c.get("name") == PROXY_CONTAINER for c in containers)


class PodInjection(enum.Enum):
    INJECTED = "injected"  # has the sidecar
    NEEDS_RESTART = "needs restart"  # would get one if created now
    OPTED_OUT = "opted out"  # sidecar.istio.io/inject=false
    NOT_ENABLED = "namespace not enabled"


@dataclass(frozen=True, slots=True)
class PodInjectionStatus:
    namespace: str
    name: str
    status: PodInjection


def pod_injection(pod: Mapping[str, Any], namespace_labels: Mapping[str, Any]) -> PodInjection:
    if has_sidecar(pod):
        return PodInjection.INJECTED
    if not namespace_enabled(namespace_labels):
        return PodInjection.NOT_ENABLED
    if pod_opted_out(pod) or (pod.get("spec") or {}).get("hostNetwork"):
        return PodInjection.OPTED_OUT
    return PodInjection.NEEDS_RESTART


def check_pods(
    pods: Sequence[Mapping[str, Any]], namespaces: Mapping[str, Mapping[str, Any]]
) -> list[PodInjectionStatus]:
    """Each pod's injection state; `namespaces` maps a namespace to its labels."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        out.append(
            PodInjectionStatus(
                ns, str(meta.get("name")), pod_injection(pod, namespaces.get(ns, {}))
            )
        )
    return sorted(out, key=lambda s: (s.namespace, s.name))


async def check_cluster(api: Any, namespace: str | None = None) -> list[PodInjectionStatus]:
    """check_pods over the API server's Pods (in `namespace`, or all) and Namespaces.

    `api` is a kubernetes_asyncio ApiClient (typed loosely: this module stays pure to import).
    """
    namespaces = {
        str((n.get("metadata") or {}).get("name")): (n.get("metadata") or {}).get("labels") or {}
        for n in await _list(api, "/api/v1/namespaces")
    }
    path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
    pods = await _list(api, path)
    return check_pods(pods, namespaces)


async def _list(api: Any, path: str) -> list[dict[str, Any]]:
    body = await api.call_api(
        path,
        "GET",
        header_params={"Accept": "application/json"},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    return list(body.get("items") or [])
