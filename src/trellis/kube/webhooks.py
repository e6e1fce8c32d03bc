"""The admission webhooks trellisd serves: sidecar injection and config validation."""

from __future__ import annotations

from typing import Any

from trellis.kube.components import TRELLISD
from trellis.kube.crds import ISTIO_KINDS
from trellis.kube.objects import labels, meta
from trellis.kube.spec import InstallSpec


def webhook_objects(spec: InstallSpec) -> list[dict[str, Any]]:
    """Injection (namespace label or revision label) and validation, both served by trellisd.

    failurePolicy starts as Ignore for validation, as Istio's does, so CRs can be applied
    before trellisd is ready; trellisd fills in `caBundle` when it starts.
    """
    ns = spec.namespace
    lab = labels(TRELLISD)

    def client(path: str) -> dict[str, Any]:
        return {"service": {"name": TRELLISD, "namespace": ns, "path": path, "port": 443}}

    opt_out = {
        "matchExpressions": [
            {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}
        ]
    }
    pods = [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    ]

    def injector(name: str, selector: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": client("/inject"),
            "rules": pods,
            "namespaceSelector": selector,
            "objectSelector": opt_out,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
        }

    by_label = {"matchLabels": {"istio-injection": "enabled"}}
    by_revision = {
        "matchExpressions": [
            {"key": "istio.io/rev", "operator": "Exists"},
            {"key": "istio-injection", "operator": "DoesNotExist"},
        ]
    }
    groups = sorted({k.group for k in ISTIO_KINDS})
    versions = sorted({v for k in ISTIO_KINDS for v in k.versions})
    validation = {
        "name": "validation.trellis.istio.io",
        "clientConfig": client("/validate"),
        "rules": [
            {
                "apiGroups": groups,
                "apiVersions": versions,
                "operations": ["CREATE", "UPDATE"],
                "resources": ["*"],
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": "Ignore",
    }
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": meta(f"trellis-sidecar-injector-{ns}", None, lab),
            "webhooks": [
                injector("namespace.sidecar-injector.trellis.io", by_label),
                injector("rev.namespace.sidecar-injector.trellis.io", by_revision),
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": meta(f"trellis-validator-{ns}", None, lab),
            "webhooks": [validation],
        },
    ]
