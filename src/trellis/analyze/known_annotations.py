"""Annotations in Istio's domains that Istio (or Trellis) reads; anything else there is a typo.

A curated list of the annotations Istio documents (istio.io "Resource Annotations") that users
put on resources; IST0108 flags other keys in an `*istio.io/` domain.
"""

from __future__ import annotations

_SIDECAR = (
    "inject",
    "status",
    "proxyImage",
    "proxyImageType",
    "proxyCPU",
    "proxyCPULimit",
    "proxyMemory",
    "proxyMemoryLimit",
    "logLevel",
    "componentLogLevel",
    "agentLogLevel",
    "bootstrapOverride",
    "statsInclusionPrefixes",
    "statsInclusionRegexps",
    "statsInclusionSuffixes",
    "statsHistogramBuckets",
    "extraStatTags",
    "userVolume",
    "userVolumeMount",
    "rewriteAppHTTPProbers",
    "interceptionMode",
    "discoveryAddress",
    "enableCoreDump",
    "nativeSidecar",
    "statsCompression",
)
_TRAFFIC = (
    "includeOutboundIPRanges",
    "excludeOutboundIPRanges",
    "includeInboundPorts",
    "excludeInboundPorts",
    "includeOutboundPorts",
    "excludeOutboundPorts",
    "excludeInterfaces",
    "kubevirtInterfaces",
)
_READINESS = ("applicationPorts", "initialDelaySeconds", "periodSeconds", "failureThreshold")

KNOWN_ANNOTATIONS: frozenset[str] = frozenset(
    [f"sidecar.istio.io/{n}" for n in _SIDECAR]
    + [f"traffic.sidecar.istio.io/{n}" for n in _TRAFFIC]
    + [f"readiness.status.sidecar.istio.io/{n}" for n in _READINESS]
    + [
        "status.sidecar.istio.io/port",
        "proxy.istio.io/config",
        "proxy.istio.io/overrides",
        "istio.io/dry-run",
        "istio.io/rev",
        "istio.io/autoRegistrationGroup",
        "istio.io/workloadController",
        "istio.io/connectedAt",
        "istio.io/disconnectedAt",
        "networking.istio.io/exportTo",
        "networking.istio.io/service-type",
        "prometheus.istio.io/merge-metrics",
        "inject.istio.io/templates",
        "ambient.istio.io/redirection",
        "topology.istio.io/controlPlaneClusters",
        "gateway.istio.io/controller-version",
        "gateway.istio.io/service-account",
        "security.istio.io/tlsMode",
    ]
)


def is_istio_annotation(key: str) -> bool:
    """`sidecar.istio.io/inject`, `istio.io/rev`: the key's domain is istio.io or under it."""
    domain, slash, _ = key.partition("/")
    return bool(slash) and (domain == "istio.io" or domain.endswith(".istio.io"))
