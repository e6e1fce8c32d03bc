"""Gateway analyzers: IST0145 ConflictingGateways and IST0162 GatewayPortNotDefinedOnService.

(Istio retired IST0104 GatewayPortNotOnWorkload; IST0162 is its successor and is what this
reports when a server's port is neither a port nor a targetPort of the gateway's Service.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from trellis.analyze.context import AnalysisContext
from trellis.analyze.messages import CONFLICTING_GATEWAYS, GATEWAY_PORT_NOT_ON_SERVICE, Message
from trellis.api.core import Service
from trellis.api.networking import Gateway


def analyze_gateways(ctx: AnalysisContext) -> Iterator[Message]:
    gateways = ctx.of_kind(Gateway)
    services = ctx.of_kind(Service)
    for gateway in gateways:
        yield from _conflicts(ctx, gateway, gateways)
        yield from _ports_not_on_service(ctx, gateway, services)


def _server_keys(gateway: Gateway) -> set[tuple[int, str]]:
    """(port, host) pairs a gateway's servers claim; a `ns/` prefix does not change the host."""
    keys = set()
    for server in gateway.spec.servers:
        if server.port is None or server.port.number is None:
            continue
        for item in server.hosts:
            keys.add((server.port.number, item.rpartition("/")[2]))
    return keys


def _conflicts(
    ctx: AnalysisContext, gateway: Gateway, gateways: list[Gateway]
) -> Iterator[Message]:
    """Same selector, same port, a host in common: which one serves it is undefined."""
    mine = _server_keys(gateway)
    for other in gateways:
        if other.key == gateway.key or other.spec.selector != gateway.spec.selector:
            continue
        shared = sorted(mine & _server_keys(other))
        if not shared:
            continue
        port = shared[0][0]
        hosts = ", ".join(host for p, host in shared if p == port)
        selector = _selector_text(gateway.spec.selector)
        yield ctx.message(
            CONFLICTING_GATEWAYS,
            gateway,
            f"Conflicts with Gateway {other.namespace}/{other.name}: same workload selector "
            f"({selector}), same port {port} and host(s) {hosts}; keep one server for them",
            "spec.servers",
        )


def _ports_not_on_service(
    ctx: AnalysisContext, gateway: Gateway, services: list[Service]
) -> Iterator[Message]:
    fronting = [s for s in services if _selects_same_pods(s.spec.selector, gateway.spec.selector)]
    if not fronting:
        return  # no Service known for these workloads: nothing to compare against
    ports = {p.port for s in fronting for p in s.spec.ports}
    ports |= {p.target_port for s in fronting for p in s.spec.ports}
    for i, server in enumerate(gateway.spec.servers):
        number = server.port.number if server.port is not None else None
        if number is None or number in ports:
            continue
        yield ctx.message(
            GATEWAY_PORT_NOT_ON_SERVICE,
            gateway,
            f"The gateway listens on port {number}, which is neither a port nor a targetPort of "
            f"the Service in front of its workloads ({_selector_text(gateway.spec.selector)}); "
            "clients going through that Service cannot reach it",
            f"spec.servers[{i}].port.number",
        )


def _selects_same_pods(service: Mapping[str, str], gateway: Mapping[str, str]) -> bool:
    """Without pods to look at: the selectors share a label and disagree on none."""
    shared = set(service) & set(gateway)
    return bool(shared) and all(service[k] == gateway[k] for k in shared)


def _selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "no selector"
