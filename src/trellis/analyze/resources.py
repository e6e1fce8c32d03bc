"""Per-resource analyzers: IST0106 (semantic validation), IST0108 (unknown Istio annotations),
IST0118 (Service port names) and IST0128/IST0129 (DestinationRule TLS without a CA).
"""

from __future__ import annotations

from collections.abc import Iterator

from trellis.analyze.context import AnalysisContext
from trellis.analyze.known_annotations import KNOWN_ANNOTATIONS, is_istio_annotation
from trellis.analyze.messages import (
    NO_SERVER_CERT_VERIFICATION_DESTINATION,
    NO_SERVER_CERT_VERIFICATION_PORT,
    PORT_NAME_NOT_UNDER_CONVENTION,
    SCHEMA_VALIDATION_ERROR,
    UNKNOWN_ANNOTATION,
    Message,
)
from trellis.api.core import Service
from trellis.api.destination_rule import ClientTLSMode, ClientTLSSettings
from trellis.api.networking import DestinationRule
from trellis.api.validation import problems_of

# Istio's protocol prefixes (istio-notes §7.9): `<protocol>` or `<protocol>-<suffix>`.
PORT_NAME_PROTOCOLS = frozenset(
    {"http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "redis", "mysql"}
)
_SYSTEM_NAMESPACES = frozenset({"kube-system", "istio-system"})
_VERIFYING_MODES = (ClientTLSMode.SIMPLE, ClientTLSMode.MUTUAL)


def analyze_resources(ctx: AnalysisContext) -> Iterator[Message]:
    for resource in ctx.resources:
        for error in problems_of(resource):
            yield ctx.message(
                SCHEMA_VALIDATION_ERROR,
                resource,
                f"Schema validation error: {error.field}: {error.reason}",
                error.field,
            )
        for key in resource.metadata.annotations:
            if is_istio_annotation(key) and key not in KNOWN_ANNOTATIONS:
                yield ctx.message(
                    UNKNOWN_ANNOTATION,
                    resource,
                    f"Unknown annotation: {key} (no Istio or Trellis feature reads it; check "
                    "its spelling)",
                    f"metadata.annotations.{key}",
                )
        if isinstance(resource, Service):
            yield from _port_names(ctx, resource)
        elif isinstance(resource, DestinationRule):
            yield from _tls_without_ca(ctx, resource)


def port_name_follows_convention(name: str) -> bool:
    """`http`, `http-web`, `grpc-web`, ...: the part before the first '-' (or all) names it."""
    lowered = name.lower()
    return any(lowered == p or lowered.startswith(f"{p}-") for p in PORT_NAME_PROTOCOLS)


def _port_names(ctx: AnalysisContext, service: Service) -> Iterator[Message]:
    if service.namespace in _SYSTEM_NAMESPACES:
        return
    for i, port in enumerate(service.spec.ports):
        if port.app_protocol or port_name_follows_convention(port.name or ""):
            continue
        yield ctx.message(
            PORT_NAME_NOT_UNDER_CONVENTION,
            service,
            f"Port name {port.name or '(none)'} (port {port.port}, targetPort "
            f"{port.target_port}) does not name a protocol, so the mesh treats it as TCP; "
            "name it <protocol>[-suffix] (e.g. http-web) or set appProtocol",
            f"spec.ports[{i}].name",
        )


def _tls_without_ca(ctx: AnalysisContext, dr: DestinationRule) -> Iterator[Message]:
    policy = dr.spec.traffic_policy
    if policy is None:
        return
    if _unverified(policy.tls):
        assert policy.tls is not None
        yield ctx.message(
            NO_SERVER_CERT_VERIFICATION_DESTINATION,
            dr,
            f"DestinationRule {dr.name} in namespace {dr.namespace} sets TLS mode "
            f"{policy.tls.mode.value} but no caCertificates, so the server certificate of "
            f"{dr.spec.host} is not verified",
            "spec.trafficPolicy.tls",
        )
    for i, port_policy in enumerate(policy.port_level_settings):
        if not _unverified(port_policy.tls):
            continue
        assert port_policy.tls is not None
        number = port_policy.port.number if port_policy.port is not None else None
        yield ctx.message(
            NO_SERVER_CERT_VERIFICATION_PORT,
            dr,
            f"DestinationRule {dr.name} in namespace {dr.namespace} sets TLS mode "
            f"{port_policy.tls.mode.value} but no caCertificates for port {number}, so the "
            f"server certificate of {dr.spec.host} is not verified there",
            f"spec.trafficPolicy.portLevelSettings[{i}].tls",
        )


def _unverified(tls: ClientTLSSettings | None) -> bool:
    """SIMPLE/MUTUAL with nothing to verify the server by (and verification not waived)."""
    return (
        tls is not None
        and tls.mode in _VERIFYING_MODES
        and not tls.ca_certificates
        and not tls.credential_name
        and not tls.insecure_skip_verify
    )
