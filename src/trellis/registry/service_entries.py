"""ServiceEntry -> registry services: each host of an entry is its own Service (pure, no I/O).

Istio keys a ServiceEntry host's clusters by the host as written (`outbound|80||ext.example.test`),
so `Service.host` carries it. Endpoints come from the entry's `endpoints` (kept on the Service as
`static_endpoints`) or, with a `workloadSelector`, from registry workloads the selector matches
(PushContext indexes those like a v1 Service's selector).

Hosts without `addresses` get an auto-allocated VIP from 240.240.0.0/16 (like Istio's DNS proxy
auto-allocation) so apps can resolve them through the runtime's hosts files and the sidecar
captures the connection. Wildcard hosts and resolution NONE get none: a wildcard has no single
name to resolve, and NONE forwards to the original destination, which must be a real address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from trellis.api.networking import Location, ServiceEntry, WorkloadEntrySpec
from trellis.api.networking import Resolution as EntryResolution
from trellis.compiler.locality import locality_labels
from trellis.model.registry import Endpoint, Protocol, Resolution, Service, ServicePort

# Istio marks endpoints that run a sidecar with this label (auto mTLS for MESH_INTERNAL).
TLS_MODE_LABEL = "security.istio.io/tlsMode"
_VIP_KEY_PREFIX = "serviceentry/"

_RESOLUTIONS = {
    EntryResolution.NONE: Resolution.PASSTHROUGH,
    EntryResolution.STATIC: Resolution.CLIENT_SIDE_LB,
    EntryResolution.DNS: Resolution.DNS,
    EntryResolution.DNS_ROUND_ROBIN: Resolution.DNS_ROUND_ROBIN,
    # DYNAMIC_DNS (wildcard hosts resolved per request) is not implemented: passthrough.
    EntryResolution.DYNAMIC_DNS: Resolution.PASSTHROUGH,
}


def vip_key(namespace: str, host: str) -> str:
    """The key an auto-allocated VIP is stored under (never equal to a v1 Service's key)."""
    return f"{_VIP_KEY_PREFIX}{namespace}/{host}"


def needs_vip(entry: ServiceEntry, host: str) -> bool:
    """Auto-allocation applies to concrete hosts of entries without addresses, not to NONE."""
    return (
        not entry.spec.addresses
        and "*" not in host
        and entry.spec.resolution is not EntryResolution.NONE
    )


def vip_requests(entries: Iterable[ServiceEntry]) -> list[str]:
    """Keys (see `vip_key`) of every host that should get an auto-allocated VIP."""
    return [
        vip_key(e.namespace, host) for e in entries for host in e.spec.hosts if needs_vip(e, host)
    ]


def services_from_service_entries(
    entries: Iterable[ServiceEntry], vips: Mapping[str, str]
) -> tuple[Service, ...]:
    """One Service per host of every entry; `vips` holds auto-allocated addresses by key."""
    return tuple(
        service_from_entry_host(e, host, vips.get(vip_key(e.namespace, host), ""))
        for e in entries
        for host in e.spec.hosts
    )


def service_from_entry_host(entry: ServiceEntry, host: str, allocated_vip: str = "") -> Service:
    """The registry Service for one host of a ServiceEntry."""
    spec = entry.spec
    ports = tuple(
        _service_port(p.name or "", p.number or 0, p.protocol, p.target_port)
        for p in spec.ports
        if p.number
    )
    external = spec.location is Location.MESH_EXTERNAL
    selector = dict(spec.workload_selector.labels) if spec.workload_selector else {}
    endpoints = () if selector else _static_endpoints(entry, ports, external)
    return Service(
        name=host,
        namespace=entry.namespace,
        vip=entry_vip(spec.addresses) or allocated_vip,
        ports=ports,
        selector=selector,
        mesh_external=external,
        host=host,
        resolution=_resolution(entry, host, endpoints),
        static_endpoints=endpoints,
        export_to=tuple(spec.export_to),
    )


def entry_vip(addresses: Sequence[str]) -> str:
    """The first address that is one IP (`10.0.0.1` or `10.0.0.1/32`); CIDR ranges give none."""
    for address in addresses:
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            continue
        if network.num_addresses == 1:
            return str(network.network_address)
    return ""


def _service_port(name: str, number: int, protocol: str | None, target: int | None) -> ServicePort:
    return ServicePort(
        name=name,
        port=number,
        target_port=target or number,
        protocol=Protocol.from_port(name, protocol or ""),
    )


def _resolution(
    entry: ServiceEntry, host: str, endpoints: tuple[tuple[int, Endpoint], ...]
) -> Resolution:
    resolution = _RESOLUTIONS[entry.spec.resolution]
    if resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN) and "*" in host and not endpoints:
        return Resolution.PASSTHROUGH  # a wildcard is no DNS name to resolve
    return resolution


def _static_endpoints(
    entry: ServiceEntry, ports: Sequence[ServicePort], external: bool
) -> tuple[tuple[int, Endpoint], ...]:
    """(service port, endpoint) for every listed endpoint on every port of the entry."""
    return tuple(
        (port.port, _endpoint(entry, index, spec, port, external))
        for index, spec in enumerate(entry.spec.endpoints)
        if spec.address and not spec.address.startswith("unix://")
        for port in ports
    )


def _endpoint(
    entry: ServiceEntry, index: int, spec: WorkloadEntrySpec, port: ServicePort, external: bool
) -> Endpoint:
    """An endpoint's `ports` map a port name to its own port; else the target port. Its
    `locality` becomes the topology labels (compiler/locality.py), explicit labels winning."""
    labels = {**locality_labels(spec.locality), **spec.labels}
    return Endpoint(
        address=spec.address or "",
        port=spec.ports.get(port.name, port.target_port),
        labels=labels,
        workload=f"{entry.name}-{index}",
        namespace=entry.namespace,
        # No sidecar is assumed on external endpoints; internal ones say so by label.
        has_sidecar=not external and labels.get(TLS_MODE_LABEL) == "istio",
    )
