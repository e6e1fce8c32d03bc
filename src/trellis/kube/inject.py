"""Sidecar injection as a pure function over pod templates.

`trellis kube-inject` applies it to files; the mutating webhook applies it to a Pod in an
AdmissionReview. Injecting adds the `istio-init` init container (traffic capture with
iptables, the only part that needs NET_ADMIN/NET_RAW), the `istio-proxy` container
(trellis-agent + Envoy) and their volumes. Injecting twice changes nothing; the pod
annotation or label `sidecar.istio.io/inject: "false"` opts a pod out, as in Istio.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from trellis.kube.proxy_pod import (
    INIT_CONTAINER,
    PROXY_CONTAINER,
    PROXY_UID,
    ProxySettings,
    proxy_container,
    proxy_volumes,
)
from trellis.kube.spec import InstallSpec

INJECT_KEY = "sidecar.istio.io/inject"
STATUS_KEY = "sidecar.istio.io/status"
EXCLUDE_INBOUND = "traffic.sidecar.istio.io/excludeInboundPorts"
EXCLUDE_OUTBOUND = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
_FALSE = {"false", "n", "no", "off"}
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True, slots=True)
class InjectSettings:
    """What injection needs from the install: the proxy image and trellisd's address."""

    proxy: ProxySettings

    @classmethod
    def from_spec(cls, spec: InstallSpec) -> InjectSettings:
        return cls(proxy=ProxySettings.from_spec(spec))


def inject_documents(documents: list[Any], settings: InjectSettings) -> list[Any]:
    """Inject every pod-bearing document (and `List` items); others pass through unchanged."""
    return [inject_object(doc, settings) for doc in documents]


def inject_object(obj: Any, settings: InjectSettings) -> Any:
    """A copy of `obj` with its pod template injected, or `obj` itself if nothing applies."""
    if not isinstance(obj, dict):
        return obj
    if obj.get("kind") == "List" and isinstance(obj.get("items"), list):
        return {**obj, "items": inject_documents(obj["items"], settings)}
    path = _TEMPLATE_PATHS.get(str(obj.get("kind")))
    if path is None:
        return obj
    template = _walk(obj, path)
    if template is None or not needs_injection(template):
        return obj
    out = copy.deepcopy(obj)
    target = _walk(out, path)
    assert target is not None
    target.clear()
    target.update(inject_pod_template(template, settings, default_name=_workload_name(obj)))
    return out


def _walk(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _workload_name(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("name") or metadata.get("generateName") or "")


def needs_injection(template: dict[str, Any]) -> bool:
    """False when already injected, opted out, host-networked, or not a pod template."""
    spec = template.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
        return False
    metadata = template.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    pod_labels = metadata.get("labels") or {}
    if STATUS_KEY in annotations:
        return False
    names = {c.get("name") for c in [*spec["containers"], *(spec.get("initContainers") or [])]}
    if PROXY_CONTAINER in names or INIT_CONTAINER in names:
        return False
    for source in (annotations, pod_labels):
        if str(source.get(INJECT_KEY, "")).strip().lower() in _FALSE:
            return False
    return not spec.get("hostNetwork", False)


def inject_pod_template(
    template: dict[str, Any], settings: InjectSettings, *, default_name: str = ""
) -> dict[str, Any]:
    """The injected pod template (or Pod): metadata + spec. Pure: `template` is not changed."""
    out = copy.deepcopy(template)
    metadata = out.setdefault("metadata", {})
    spec = out["spec"]
    annotations = metadata.setdefault("annotations", {})
    pod_labels = metadata.setdefault("labels", {})
    app_containers = list(spec["containers"])
    canonical = _canonical_name(pod_labels, default_name)
    pod_labels.setdefault("security.istio.io/tlsMode", "istio")
    pod_labels.setdefault("service.istio.io/canonical-name", canonical)
    pod_labels.setdefault("service.istio.io/canonical-revision", _canonical_revision(pod_labels))
    extra = ["--labels", ",".join(f"{k}={v}" for k, v in sorted(pod_labels.items()))]
    app_ports = _app_ports(app_containers)
    if app_ports:
        extra += ["--app-ports", ",".join(str(p) for p in app_ports)]
    spec["initContainers"] = [
        *(spec.get("initContainers") or []),
        _init_container(settings, annotations),
    ]
    spec["containers"] = [*app_containers, proxy_container(settings.proxy, "sidecar", extra, [])]
    volumes = proxy_volumes()
    spec["volumes"] = [*(spec.get("volumes") or []), *volumes]
    if app_containers:
        annotations.setdefault("kubectl.kubernetes.io/default-container", app_containers[0]["name"])
    status = {
        "initContainers": [INIT_CONTAINER],
        "containers": [PROXY_CONTAINER],
        "volumes": [v["name"] for v in volumes],
    }
    annotations[STATUS_KEY] = json.dumps(status, sort_keys=True)
    return out


def _canonical_name(pod_labels: dict[str, Any], default: str) -> str:
    for key in ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"):
        if pod_labels.get(key):
            return str(pod_labels[key])
    return default or "unknown"


def _canonical_revision(pod_labels: dict[str, Any]) -> str:
    for key in ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"):
        if pod_labels.get(key):
            return str(pod_labels[key])
    return "latest"


def _app_ports(containers: list[dict[str, Any]]) -> list[int]:
    ports = {
        int(p["containerPort"])
        for c in containers
        for p in (c.get("ports") or [])
        if str(p.get("protocol", "TCP")).upper() == "TCP" and "containerPort" in p
    }
    return sorted(ports)


def _init_container(settings: InjectSettings, annotations: dict[str, Any]) -> dict[str, Any]:
    """Runs the capture set-up once as root with NET_ADMIN/NET_RAW, then exits."""
    args = ["-m", "trellis.kube.capture_init", "--proxy-uid", str(PROXY_UID)]
    if annotations.get(EXCLUDE_INBOUND):
        args += ["--exclude-inbound-ports", str(annotations[EXCLUDE_INBOUND])]
    if annotations.get(EXCLUDE_OUTBOUND):
        args += ["--exclude-outbound-cidrs", str(annotations[EXCLUDE_OUTBOUND])]
    return {
        "name": INIT_CONTAINER,
        "image": settings.proxy.proxy_image,
        "imagePullPolicy": settings.proxy.pull_policy,
        "command": ["python3"],
        "args": args,
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "40Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        },
    }
