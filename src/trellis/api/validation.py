"""Semantic validation: the rules Istio enforces beyond the schema (DESIGN §2).

`validate_resource` checks one resource on its own; `check_references` checks what one
resource needs from others (a routed-to subset must be defined by a DestinationRule).
`trellis apply` calls parse_documents, then these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trellis.api.authz_validation import check_authorization_policy
from trellis.api.base import Resource
from trellis.api.core import Service, ServiceSpec
from trellis.api.destination_rule import ClientTLSMode, ClientTLSSettings, DestinationRuleSpec
from trellis.api.networking import (
    DestinationRule,
    Gateway,
    GatewaySpec,
    Resolution,
    ServiceEntry,
    ServiceEntrySpec,
    Sidecar,
    SidecarSpec,
    VirtualService,
    WorkloadEntry,
    WorkloadEntrySpec,
    WorkloadGroup,
    WorkloadGroupSpec,
)
from trellis.api.references import check_references
from trellis.api.security import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
from trellis.api.security_validation import (
    check_peer_authentication,
    check_request_authentication,
)
from trellis.api.semantic_checks import (
    Problems,
    check_host,
    check_int_range,
    check_port,
    check_unique,
    is_ip,
)
from trellis.api.telemetry import Telemetry
from trellis.api.telemetry_validation import check_telemetry
from trellis.api.vs_validation import check_virtual_service
from trellis.errors import ValidationError, ValidationErrors

__all__ = ["check_references", "problems_of", "validate_all", "validate_resource"]


def validate_resource(resource: Resource) -> None:
    """Raise ValidationErrors listing every semantic problem of `resource`."""
    errors = problems_of(resource)
    if errors:
        raise ValidationErrors(errors)


def validate_all(resources: Sequence[Resource]) -> None:
    """validate_resource over many, raising once with every problem of every resource."""
    errors = [error for resource in resources for error in problems_of(resource)]
    if errors:
        raise ValidationErrors(errors)


def problems_of(resource: Resource) -> list[ValidationError]:
    """Every semantic problem of one resource, as errors naming it and the field."""
    checker = _CHECKERS.get(type(resource))
    found = checker(getattr(resource, "spec", None)) if checker is not None else []
    return [
        ValidationError(
            reason,
            kind=resource.kind,
            namespace=resource.namespace,
            name=resource.name,
            field=field,
        )
        for field, reason in found
    ]


def _check_destination_rule(spec: DestinationRuleSpec) -> Problems:
    problems: Problems = []
    if not spec.host:
        problems.append(("spec.host", "host is required; name the service, e.g. reviews"))
    else:
        check_host(spec.host, "spec.host", problems)
    check_unique((s.name for s in spec.subsets), "spec.subsets", "subset name", problems)
    for i, subset in enumerate(spec.subsets):
        path = f"spec.subsets[{i}]"
        if not subset.name:
            problems.append((f"{path}.name", "subset name is required; e.g. v1"))
        # No labels is valid, as in Istio: the subset is every endpoint (egress-gateway task).
    policies = [("spec.trafficPolicy", spec.traffic_policy)] + [
        (f"spec.subsets[{i}].trafficPolicy", s.traffic_policy) for i, s in enumerate(spec.subsets)
    ]
    for path, policy in policies:
        if policy is None:
            continue
        if policy.tls is not None:
            _check_client_tls(policy.tls, f"{path}.tls", problems)
        ports = [p.port.number for p in policy.port_level_settings if p.port is not None]
        check_unique(ports, f"{path}.portLevelSettings", "port", problems)
        for i, port_policy in enumerate(policy.port_level_settings):
            number = port_policy.port.number if port_policy.port is not None else None
            check_port(number, f"{path}.portLevelSettings[{i}].port.number", problems)
            if port_policy.tls is not None:
                _check_client_tls(port_policy.tls, f"{path}.portLevelSettings[{i}].tls", problems)
    return problems


def _check_client_tls(tls: ClientTLSSettings, path: str, problems: Problems) -> None:
    has_files = tls.client_certificate is not None or tls.private_key is not None
    if tls.mode is ClientTLSMode.MUTUAL and not (has_files or tls.credential_name):
        problems.append((path, "MUTUAL needs clientCertificate and privateKey, or credentialName"))
    if tls.mode is ClientTLSMode.ISTIO_MUTUAL and (has_files or tls.credential_name):
        problems.append(
            (path, "ISTIO_MUTUAL uses mesh certificates; remove the certificate fields")
        )


def _check_gateway(spec: GatewaySpec) -> Problems:
    problems: Problems = []
    if not spec.servers:
        problems.append(("spec.servers", "a Gateway needs at least one server; add one"))
    for i, server in enumerate(spec.servers):
        path = f"spec.servers[{i}]"
        if server.port is None:
            problems.append((f"{path}.port", "port is required, e.g. {number: 8080, ...}"))
        else:
            check_port(server.port.number, f"{path}.port.number", problems)
            if not server.port.protocol:
                problems.append((f"{path}.port.protocol", "protocol is required, e.g. HTTP"))
        if not server.hosts:
            problems.append((f"{path}.hosts", "at least one host is required, e.g. '*'"))
        for j, host in enumerate(server.hosts):
            _, _, dns_name = host.rpartition("/")
            check_host(dns_name, f"{path}.hosts[{j}]", problems)
    return problems


def _check_service_entry(spec: ServiceEntrySpec) -> Problems:
    problems: Problems = []
    if not spec.hosts:
        problems.append(("spec.hosts", "at least one host is required, e.g. api.example.com"))
    for i, host in enumerate(spec.hosts):
        check_host(host, f"spec.hosts[{i}]", problems)
    if spec.resolution is Resolution.STATIC and not (spec.endpoints or spec.workload_selector):
        problems.append(
            ("spec.resolution", "STATIC resolution needs endpoints or a workloadSelector")
        )
    if spec.endpoints and spec.workload_selector is not None:
        problems.append(("spec.workloadSelector", "use endpoints or workloadSelector, not both"))
    check_unique((p.number for p in spec.ports), "spec.ports", "port", problems)
    check_unique((p.name for p in spec.ports if p.name), "spec.ports", "port name", problems)
    for i, port in enumerate(spec.ports):
        check_port(port.number, f"spec.ports[{i}].number", problems)
        check_port(port.target_port, f"spec.ports[{i}].targetPort", problems, required=False)
    for i, endpoint in enumerate(spec.endpoints):
        path = f"spec.endpoints[{i}]"
        problems.extend(_workload_entry_problems(endpoint, path))
        address = endpoint.address or ""
        if spec.resolution is Resolution.STATIC and not (
            is_ip(address) or address.startswith("unix://")
        ):
            problems.append((f"{path}.address", "STATIC endpoints need an IP address"))
    return problems


def _check_workload_entry(spec: WorkloadEntrySpec) -> Problems:
    return _workload_entry_problems(spec, "spec")


def _workload_entry_problems(spec: WorkloadEntrySpec, path: str) -> Problems:
    problems: Problems = []
    if not spec.address and not spec.network:
        problems.append((f"{path}.address", "address is required (an IP or a DNS name)"))
    for name, number in spec.ports.items():
        check_port(number, f"{path}.ports.{name}", problems)
    check_int_range(spec.weight, 0, 2**32 - 1, f"{path}.weight", problems)
    return problems


def _check_workload_group(spec: WorkloadGroupSpec) -> Problems:
    return _workload_entry_problems(spec.template, "spec.template") if spec.template.address else []


def _check_sidecar(spec: SidecarSpec) -> Problems:
    problems: Problems = []
    for i, ingress in enumerate(spec.ingress):
        check_port(ingress.port.number, f"spec.ingress[{i}].port.number", problems)
    catch_all = [e for e in spec.egress if e.port is None]
    if len(catch_all) > 1:
        problems.append(("spec.egress", "only one egress listener may omit its port"))
    for i, egress in enumerate(spec.egress):
        path = f"spec.egress[{i}]"
        if egress.port is not None:
            check_port(egress.port.number, f"{path}.port.number", problems)
        if not egress.hosts:
            problems.append((f"{path}.hosts", "hosts is required, e.g. ['./*', 'istio-system/*']"))
        for j, host in enumerate(egress.hosts):
            if "/" not in host:
                problems.append(
                    (f"{path}.hosts[{j}]", f"{host!r} must be namespace/dnsName, e.g. ./{host}")
                )
    return problems


def _check_service(spec: ServiceSpec) -> Problems:
    problems: Problems = []
    if not spec.ports:
        problems.append(("spec.ports", "a Service needs at least one port; add one"))
    check_unique(
        (f"{p.port}/{p.protocol.value}" for p in spec.ports), "spec.ports", "port", problems
    )
    check_unique((p.name for p in spec.ports if p.name), "spec.ports", "port name", problems)
    if len(spec.ports) > 1 and any(not p.name for p in spec.ports):
        problems.append(("spec.ports", "with several ports every port needs a name, e.g. http"))
    for i, port in enumerate(spec.ports):
        check_port(port.port, f"spec.ports[{i}].port", problems)
        check_port(port.target_port, f"spec.ports[{i}].targetPort", problems)
    return problems


_CHECKERS: dict[type[Resource], Callable[[Any], Problems]] = {
    VirtualService: check_virtual_service,
    DestinationRule: _check_destination_rule,
    Gateway: _check_gateway,
    ServiceEntry: _check_service_entry,
    WorkloadEntry: _check_workload_entry,
    WorkloadGroup: _check_workload_group,
    Sidecar: _check_sidecar,
    Service: _check_service,
    PeerAuthentication: check_peer_authentication,
    AuthorizationPolicy: check_authorization_policy,
    RequestAuthentication: check_request_authentication,
    Telemetry: check_telemetry,
}
