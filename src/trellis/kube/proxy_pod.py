"""The pieces of a pod that runs trellis-agent + Envoy: shared by gateways and injection.

The agent reaches trellisd over xDS/TLS on 15012, trusting the mesh root from the
`istio-ca-root-cert` ConfigMap, and proves its identity with a projected service-account
token (audience `istio-ca`) that trellisd checks by TokenReview (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trellis.kube.objects import env_from_field, resources
from trellis.kube.spec import InstallSpec, ResourceRequirements

PROXY_CONTAINER = "istio-proxy"
INIT_CONTAINER = "istio-init"
PROXY_UID = 1337
STATS_PORT = 15090
READY_PORT = 15021
TOKEN_PATH = "/var/run/secrets/tokens"
ROOT_CERT_PATH = "/var/run/secrets/istio"
ROOT_CERT_CONFIGMAP = "istio-ca-root-cert"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """What a proxy container needs from the install: images, trellisd's address, resources."""

    proxy_image: str
    pull_policy: str
    xds_address: str
    resources: ResourceRequirements

    @classmethod
    def from_spec(cls, spec: InstallSpec) -> ProxySettings:
        return cls(
            proxy_image=spec.image(spec.values.global_.proxy.image),
            pull_policy=spec.values.global_.imagePullPolicy,
            xds_address=f"trellisd.{spec.namespace}.svc:15012",
            resources=spec.values.global_.proxy.resources,
        )


def agent_args(settings: ProxySettings, proxy_type: str, extra: list[str]) -> list[str]:
    """trellis-agent's flags; $(VAR) are expanded by the kubelet from the container's env."""
    return [
        "--type", proxy_type,
        "--name", "$(POD_NAME)",
        "--namespace", "$(POD_NAMESPACE)",
        "--ip", "$(INSTANCE_IP)",
        "--service-account", "$(SERVICE_ACCOUNT)",
        "--xds-address", settings.xds_address,
        "--xds-root-cert", f"{ROOT_CERT_PATH}/root-cert.pem",
        "--token-file", f"{TOKEN_PATH}/istio-token",
        "--state-dir", "/var/lib/istio/data",
        "--capture", "none",
        *extra,
    ]  # fmt: skip


def proxy_container(
    settings: ProxySettings, proxy_type: str, extra_args: list[str], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    """The `istio-proxy` container: agent + Envoy, as uid 1337 (capture skips that uid)."""
    container: dict[str, Any] = {
        "name": PROXY_CONTAINER,
        "image": settings.proxy_image,
        "imagePullPolicy": settings.pull_policy,
        "command": ["trellis-agent"],
        "args": agent_args(settings, proxy_type, extra_args),
        "env": [
            env_from_field("POD_NAME", "metadata.name"),
            env_from_field("POD_NAMESPACE", "metadata.namespace"),
            env_from_field("INSTANCE_IP", "status.podIP"),
            env_from_field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ],
        "ports": [
            *ports,
            {"name": "http-envoy-prom", "containerPort": STATS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": READY_PORT},
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        "securityContext": {
            "runAsUser": PROXY_UID,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-token", "mountPath": TOKEN_PATH, "readOnly": True},
            {"name": "istiod-ca-cert", "mountPath": ROOT_CERT_PATH, "readOnly": True},
        ],
    }
    res = resources(settings.resources)
    if res:
        container["resources"] = res
    return container


def proxy_volumes() -> list[dict[str, Any]]:
    """Scratch space for the agent and Envoy, the identity token and the mesh root cert."""
    token = {
        "serviceAccountToken": {
            "audience": "istio-ca",
            "expirationSeconds": 43200,
            "path": "istio-token",
        }
    }
    return [
        {"name": "istio-data", "emptyDir": {}},
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-token", "projected": {"sources": [token]}},
        {"name": "istiod-ca-cert", "configMap": {"name": ROOT_CERT_CONFIGMAP}},
    ]
