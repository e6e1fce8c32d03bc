"""CustomResourceDefinitions for the Istio API Trellis serves (DESIGN §2), written here.

Each CRD serves the versions Istio serves for that kind, stores one, and has a structural
schema whose `spec` and `status` preserve unknown fields: trellisd's own validation (the
validating webhook, the same code as `trellis apply`) is where fields are checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CrdKind:
    """One Istio kind: group, kind, plural, short names, served versions."""

    group: str
    kind: str
    plural: str
    short_names: tuple[str, ...]
    versions: tuple[str, ...]
    columns: tuple[tuple[str, str, str], ...] = ()  # (name, type, jsonPath)


_NET = "networking.istio.io"
_SEC = "security.istio.io"
_TEL = "telemetry.istio.io"
_NET_VERSIONS = ("v1", "v1alpha3", "v1beta1")
_SEC_VERSIONS = ("v1", "v1beta1")
_AGE = ("Age", "date", ".metadata.creationTimestamp")
# The version each group stores, as Istio's CRDs do, so a cluster moving from Istio keeps its
# stored objects readable without a storage migration.
_STORED = {_NET: "v1alpha3", _SEC: "v1beta1", _TEL: "v1alpha1"}

ISTIO_KINDS: tuple[CrdKind, ...] = (
    CrdKind(
        _NET,
        "VirtualService",
        "virtualservices",
        ("vs",),
        _NET_VERSIONS,
        (("Gateways", "string", ".spec.gateways"), ("Hosts", "string", ".spec.hosts"), _AGE),
    ),
    CrdKind(
        _NET,
        "DestinationRule",
        "destinationrules",
        ("dr",),
        _NET_VERSIONS,
        (("Host", "string", ".spec.host"), _AGE),
    ),
    CrdKind(_NET, "Gateway", "gateways", ("gw",), _NET_VERSIONS, (_AGE,)),
    CrdKind(
        _NET,
        "ServiceEntry",
        "serviceentries",
        ("se",),
        _NET_VERSIONS,
        (
            ("Hosts", "string", ".spec.hosts"),
            ("Location", "string", ".spec.location"),
            ("Resolution", "string", ".spec.resolution"),
            _AGE,
        ),
    ),
    CrdKind(_NET, "Sidecar", "sidecars", (), _NET_VERSIONS, (_AGE,)),
    CrdKind(
        _NET,
        "WorkloadEntry",
        "workloadentries",
        ("we",),
        _NET_VERSIONS,
        (("Address", "string", ".spec.address"), _AGE),
    ),
    CrdKind(_NET, "WorkloadGroup", "workloadgroups", ("wg",), ("v1", "v1alpha3", "v1beta1")),
    CrdKind(
        _SEC,
        "PeerAuthentication",
        "peerauthentications",
        ("pa",),
        _SEC_VERSIONS,
        (("Mode", "string", ".spec.mtls.mode"), _AGE),
    ),
    CrdKind(
        _SEC,
        "AuthorizationPolicy",
        "authorizationpolicies",
        ("ap",),
        _SEC_VERSIONS,
        (("Action", "string", ".spec.action"), _AGE),
    ),
    CrdKind(_SEC, "RequestAuthentication", "requestauthentications", ("ra",), _SEC_VERSIONS),
    CrdKind(_TEL, "Telemetry", "telemetries", ("telemetry",), ("v1", "v1alpha1")),
)

_OPEN_OBJECT: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _version(name: str, stored: bool, kind: CrdKind) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"spec": dict(_OPEN_OBJECT), "status": dict(_OPEN_OBJECT)},
    }
    version: dict[str, Any] = {
        "name": name,
        "served": True,
        "storage": stored,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}},
    }
    if kind.columns:
        version["additionalPrinterColumns"] = [
            {"name": col, "type": typ, "jsonPath": path} for col, typ, path in kind.columns
        ]
    return version


def crd(kind: CrdKind, labels: dict[str, str]) -> dict[str, Any]:
    """The CustomResourceDefinition object for one kind."""
    names: dict[str, Any] = {
        "kind": kind.kind,
        "listKind": f"{kind.kind}List",
        "plural": kind.plural,
        "singular": kind.kind.lower(),
        "categories": ["istio-io", kind.group.split(".")[0] + "-istio-io"],
    }
    if kind.short_names:
        names["shortNames"] = list(kind.short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{kind.group}", "labels": dict(labels)},
        "spec": {
            "group": kind.group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                _version(v, stored=(v == _STORED[kind.group]), kind=kind) for v in kind.versions
            ],
        },
    }


def all_crds(labels: dict[str, str]) -> list[dict[str, Any]]:
    return [crd(kind, labels) for kind in ISTIO_KINDS]
