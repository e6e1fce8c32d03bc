"""RBAC the installer renders: what trellisd and the console may read and write, and the
three ClusterRoles aggregated into Kubernetes' admin/edit/view (DESIGN §8)."""

from __future__ import annotations

from typing import Any

from trellis.kube.crds import ISTIO_KINDS
from trellis.kube.objects import meta
from trellis.kube.spec import GrantableRole

_RBAC = "rbac.authorization.k8s.io/v1"
_READ = ["get", "list", "watch"]
_WRITE = ["create", "update", "patch", "delete", "deletecollection"]
MESH_GROUPS = sorted({k.group for k in ISTIO_KINDS})
CONSOLE_SERVICE = "kiali"
CONSOLE_PORT = 20001


def rule(groups: list[str], resources: list[str], verbs: list[str], **extra: Any) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs, **extra}


def cluster_role(
    name: str, object_labels: dict[str, str], rules: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": _RBAC,
        "kind": "ClusterRole",
        "metadata": meta(name, None, object_labels),
        "rules": rules,
    }


def cluster_role_binding(
    name: str, object_labels: dict[str, str], role: str, account: str, ns: str
) -> dict[str, Any]:
    return {
        "apiVersion": _RBAC,
        "kind": "ClusterRoleBinding",
        "metadata": meta(name, None, object_labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
    }


def _mesh_resources() -> list[str]:
    return sorted({k.plural for k in ISTIO_KINDS})


def trellisd_rules() -> list[dict[str, Any]]:
    """What trellisd watches (config, registry), patches (webhook CA bundles, CR status),
    writes (the root cert ConfigMap in every namespace) and asks (TokenReview for SDS)."""
    return [
        rule(MESH_GROUPS, ["*"], _READ),
        rule(MESH_GROUPS, [f"{r}/status" for r in _mesh_resources()], ["get", "update", "patch"]),
        rule([""], ["services", "endpoints", "pods", "namespaces", "nodes"], _READ),
        rule(["discovery.k8s.io"], ["endpointslices"], _READ),
        rule([""], ["configmaps"], [*_READ, "create", "update", "patch"]),
        rule([""], ["secrets"], _READ),
        rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], _READ),
        rule(
            ["admissionregistration.k8s.io"],
            ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
            [*_READ, "update", "patch"],
        ),
        rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
        rule(["coordination.k8s.io"], ["leases"], [*_READ, "create", "update", "patch"]),
        rule([""], ["events"], ["create", "patch"]),
    ]


def aggregated_roles(object_labels: dict[str, str]) -> list[dict[str, Any]]:
    """Mesh config write for admin and edit, read for view, merged into the built-in roles."""
    out = []
    for role in GrantableRole:
        verbs = _READ if role is GrantableRole.view else [*_READ, *_WRITE]
        role_labels = {
            **object_labels,
            f"rbac.authorization.k8s.io/aggregate-to-{role.value}": "true",
        }
        out.append(
            cluster_role(
                f"trellis-mesh-{role.value}", role_labels, [rule(MESH_GROUPS, ["*"], verbs)]
            )
        )
    return out


def console_rules() -> list[dict[str, Any]]:
    """The console reads the mesh and checks each logged-in user's own rights."""
    return [
        rule(MESH_GROUPS, ["*"], _READ),
        rule(
            [""], ["services", "endpoints", "pods", "pods/log", "namespaces", "configmaps"], _READ
        ),
        rule(["apps"], ["deployments", "replicasets", "statefulsets", "daemonsets"], _READ),
        rule(["discovery.k8s.io"], ["endpointslices"], _READ),
        rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
    ]


def console_access_role(
    object_labels: dict[str, str], allowed: list[GrantableRole]
) -> dict[str, Any]:
    """Who may open the console: reaching its Service proxy. cluster-admin always can; each
    allowed built-in role gets it by aggregation (for users holding that role in the mesh's
    namespace, or cluster-wide)."""
    role_labels = dict(object_labels)
    for role in allowed:
        role_labels[f"rbac.authorization.k8s.io/aggregate-to-{role.value}"] = "true"
    names = [
        CONSOLE_SERVICE,
        f"{CONSOLE_SERVICE}:{CONSOLE_PORT}",
        f"http:{CONSOLE_SERVICE}:{CONSOLE_PORT}",
    ]
    return cluster_role(
        "trellis-console-access",
        role_labels,
        [rule([""], ["services/proxy"], ["get", "create"], resourceNames=names)],
    )
