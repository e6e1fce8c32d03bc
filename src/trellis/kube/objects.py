"""Builders for the plain Kubernetes objects the installer renders (dicts, later YAML)."""

from __future__ import annotations

from typing import Any

from trellis.kube.spec import K8sSettings, ResourceRequirements, ServicePort, ServiceType

MANAGED_BY = {"app.kubernetes.io/managed-by": "trellis", "app.kubernetes.io/part-of": "trellis"}


def labels(app: str, **extra: str) -> dict[str, str]:
    """The labels every installed object carries: `app`, plus who manages it (for uninstall)."""
    return {"app": app, **extra, **MANAGED_BY}


def meta(name: str, namespace: str | None, object_labels: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": dict(object_labels)}
    if namespace:
        out["namespace"] = namespace
    return out


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, None, MANAGED_BY)}


def service_account(name: str, ns: str, object_labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, ns, object_labels)}


def resources(req: ResourceRequirements | None) -> dict[str, Any]:
    if req is None:
        return {}
    out: dict[str, Any] = {}
    if req.requests:
        out["requests"] = dict(req.requests)
    if req.limits:
        out["limits"] = dict(req.limits)
    return out


def env_from_field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def deployment(
    *,
    name: str,
    ns: str,
    pod_labels: dict[str, str],
    account: str,
    containers: list[dict[str, Any]],
    k8s: K8sSettings,
    volumes: list[dict[str, Any]] | None = None,
    default_replicas: int = 1,
) -> dict[str, Any]:
    """A Deployment selecting on `app` (and `istio` for gateways), with the component's k8s."""
    selector = {k: v for k, v in pod_labels.items() if k in ("app", "istio")}
    pod_spec: dict[str, Any] = {"serviceAccountName": account, "containers": containers}
    if volumes:
        pod_spec["volumes"] = volumes
    if k8s.nodeSelector:
        pod_spec["nodeSelector"] = dict(k8s.nodeSelector)
    template_meta: dict[str, Any] = {"labels": dict(pod_labels)}
    if k8s.podAnnotations:
        template_meta["annotations"] = dict(k8s.podAnnotations)
    replicas = default_replicas if k8s.replicaCount is None else k8s.replicaCount
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, ns, pod_labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def service(
    *,
    name: str,
    ns: str,
    object_labels: dict[str, str],
    ports: list[ServicePort],
    kind: ServiceType = ServiceType.ClusterIP,
) -> dict[str, Any]:
    selector = {k: v for k, v in object_labels.items() if k in ("app", "istio")}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, ns, object_labels),
        "spec": {
            "type": kind.value,
            "selector": selector,
            "ports": [
                {"name": p.name, "port": p.port, "targetPort": p.targetPort, "protocol": p.protocol}
                for p in ports
            ],
        },
    }


def config_map(
    name: str, ns: str, object_labels: dict[str, str], data: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(name, ns, object_labels),
        "data": dict(data),
    }
