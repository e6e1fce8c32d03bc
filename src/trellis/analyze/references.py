"""IST0101 ReferencedResourceNotFound and IST0174 UnknownDestinationRuleHost.

What a VirtualService names must exist: destination hosts, subsets (a DestinationRule must
define them), gateways, delegates. A DestinationRule's host should be a known service.
Istio accepts all of these at apply time (the other resource may come later); analysis says so.
"""

from __future__ import annotations

from collections.abc import Iterator

from trellis.analyze.context import AnalysisContext
from trellis.analyze.messages import (
    REFERENCED_RESOURCE_NOT_FOUND,
    UNKNOWN_DESTINATION_RULE_HOST,
    Message,
)
from trellis.api.common import Destination
from trellis.api.networking import DestinationRule, VirtualService
from trellis.api.references import check_references
from trellis.model.push_context import MESH_GATEWAY, gateway_key


def analyze_references(ctx: AnalysisContext) -> Iterator[Message]:
    virtual_services = ctx.of_kind(VirtualService)
    for vs in virtual_services:
        yield from _destination_hosts(ctx, vs)
        yield from _gateways(ctx, vs)
        yield from _delegates(ctx, vs)
    yield from _subsets(ctx, virtual_services)
    for dr in ctx.of_kind(DestinationRule):
        yield from _destination_rule_host(ctx, dr)


def destinations(vs: VirtualService) -> Iterator[tuple[str, Destination]]:
    """Every destination a VirtualService routes or mirrors to, with its field path."""
    for i, http in enumerate(vs.spec.http):
        for j, route in enumerate(http.route):
            yield f"spec.http[{i}].route[{j}].destination", route.destination
        if http.mirror is not None:
            yield f"spec.http[{i}].mirror", http.mirror
        for j, mirror in enumerate(http.mirrors):
            yield f"spec.http[{i}].mirrors[{j}].destination", mirror.destination
    for i, tls in enumerate(vs.spec.tls):
        for j, dest in enumerate(tls.route):
            yield f"spec.tls[{i}].route[{j}].destination", dest.destination
    for i, tcp in enumerate(vs.spec.tcp):
        for j, dest in enumerate(tcp.route):
            yield f"spec.tcp[{i}].route[{j}].destination", dest.destination


def _destination_hosts(ctx: AnalysisContext, vs: VirtualService) -> Iterator[Message]:
    for path, destination in destinations(vs):
        host = ctx.resolve(destination.host, vs.namespace)
        if "*" in host or ctx.host_known(host):
            continue
        yield ctx.message(
            REFERENCED_RESOURCE_NOT_FOUND,
            vs,
            f'Referenced host not found: "{host}" ({path}.host); no Service or ServiceEntry '
            "defines it",
            f"{path}.host",
        )


def _gateways(ctx: AnalysisContext, vs: VirtualService) -> Iterator[Message]:
    refs = [("spec.gateways", g) for g in vs.spec.gateways]
    for i, http in enumerate(vs.spec.http):
        for j, match in enumerate(http.match):
            refs += [(f"spec.http[{i}].match[{j}].gateways", g) for g in match.gateways]
    seen: set[str] = set()
    for path, ref in refs:
        key = gateway_key(ref, vs.namespace)
        if key == MESH_GATEWAY or key in seen or ctx.gateway(key) is not None:
            continue
        seen.add(key)
        yield ctx.message(
            REFERENCED_RESOURCE_NOT_FOUND,
            vs,
            f'Referenced gateway not found: "{key}" ({path}); apply that Gateway or fix the name',
            path,
        )


def _delegates(ctx: AnalysisContext, vs: VirtualService) -> Iterator[Message]:
    for i, http in enumerate(vs.spec.http):
        if http.delegate is None:
            continue
        namespace = http.delegate.namespace or vs.namespace
        target = ctx.virtual_service(namespace, http.delegate.name)
        if target is None:
            yield ctx.message(
                REFERENCED_RESOURCE_NOT_FOUND,
                vs,
                f'Referenced delegate VirtualService not found: "{namespace}/'
                f'{http.delegate.name}" (spec.http[{i}].delegate)',
                f"spec.http[{i}].delegate",
            )


def _subsets(ctx: AnalysisContext, virtual_services: list[VirtualService]) -> Iterator[Message]:
    """Reuses apply-time reference checking, with every DestinationRule the mesh has."""
    rules = ctx.of_kind(DestinationRule)
    by_key = {vs.key: vs for vs in virtual_services}
    for error in check_references(list(virtual_services), rules):
        vs = by_key[(error.kind, error.namespace, error.name)]
        yield ctx.message(
            REFERENCED_RESOURCE_NOT_FOUND,
            vs,
            f"Referenced subset not found ({error.field}): {error.reason}",
            error.field,
        )


def _destination_rule_host(ctx: AnalysisContext, dr: DestinationRule) -> Iterator[Message]:
    host = ctx.resolve(dr.spec.host, dr.namespace)
    if not host or "*" in host or ctx.host_known(host):
        return
    yield ctx.message(
        UNKNOWN_DESTINATION_RULE_HOST,
        dr,
        f'DestinationRule host "{host}" is not a known Service or ServiceEntry host; its '
        "policies apply to nothing",
        "spec.host",
    )
