"""Which REST resources the fake API server serves: group/version -> plural -> kind, scope.

Built-in kinds are fixed; Istio's (and any other) custom resources are served only while a
CustomResourceDefinition for them exists, as on a real API server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    plural: str
    kind: str
    namespaced: bool

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


_BUILTIN: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {
    ("", "v1"): {
        "namespaces": ("Namespace", False),
        "services": ("Service", True),
        "pods": ("Pod", True),
        "serviceaccounts": ("ServiceAccount", True),
        "configmaps": ("ConfigMap", True),
        "secrets": ("Secret", True),
    },
    ("discovery.k8s.io", "v1"): {"endpointslices": ("EndpointSlice", True)},
    ("coordination.k8s.io", "v1"): {"leases": ("Lease", True)},
    ("apps", "v1"): {"deployments": ("Deployment", True)},
    ("apiextensions.k8s.io", "v1"): {
        "customresourcedefinitions": ("CustomResourceDefinition", False)
    },
    ("admissionregistration.k8s.io", "v1"): {
        "mutatingwebhookconfigurations": ("MutatingWebhookConfiguration", False),
        "validatingwebhookconfigurations": ("ValidatingWebhookConfiguration", False),
    },
    ("authorization.k8s.io", "v1"): {
        "selfsubjectaccessreviews": ("SelfSubjectAccessReview", False)
    },
    ("authentication.k8s.io", "v1"): {"tokenreviews": ("TokenReview", False)},
    ("rbac.authorization.k8s.io", "v1"): {
        "clusterroles": ("ClusterRole", False),
        "clusterrolebindings": ("ClusterRoleBinding", False),
        "roles": ("Role", True),
        "rolebindings": ("RoleBinding", True),
    },
}


def builtin(group: str, version: str, plural: str) -> ResourceType | None:
    entry = _BUILTIN.get((group, version), {}).get(plural)
    return ResourceType(group, plural, *entry) if entry else None


def from_crd(crd: dict[str, Any], version: str, plural: str) -> ResourceType | None:
    """The custom resource a CRD defines, if it serves `version` under `plural`."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = {v.get("name") for v in spec.get("versions") or [] if v.get("served", True)}
    if names.get("plural") != plural or version not in served:
        return None
    return ResourceType(
        str(spec.get("group")), plural, str(names.get("kind")), spec.get("scope") == "Namespaced"
    )
