"""Config visibility: which services a proxy gets outbound config for (Sidecar + exportTo).

One pure function decides it, so clusters, endpoints, listeners and routes always agree:

- `exportTo` on a Service (annotation `networking.istio.io/exportTo`) or ServiceEntry: `*` or
  empty = every namespace, `.` = its own namespace, otherwise the namespaces listed (`~` = none).
- A `Sidecar` scopes a sidecar's egress to the hosts of its `egress[].hosts` (`ns/dnsName`;
  ns `*` any, `.` the proxy's namespace, `~` none; dnsName `*`, `*.suffix` or exact), per port
  when the egress listener names one. Which Sidecar applies, as Istio decides it: one in the
  proxy's namespace whose `workloadSelector` matches (the first one), else the namespace's
  Sidecar without selector, else the root namespace's Sidecar without selector (mesh default).
  Gateways ignore Sidecars.
- Services that a mesh VirtualService of a visible host routes to are visible too (as Istio
  adds the destinations of the VirtualServices in scope), so no route names a missing cluster.

See docs/DECISIONS.md "Sidecar scope and exportTo" for what is not modelled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from trellis.api.networking import (
    HTTPRoute,
    IstioIngressListener,
    Sidecar,
    TCPRoute,
    TLSRoute,
    VirtualService,
)
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.registry import Protocol, Service, ServicePort
from trellis.model.snapshot import OutboundPolicy

EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
_ANY = "*"
_SAME = "."
_NONE = "~"


def parse_export_to(annotation: str | None) -> tuple[str, ...]:
    """`networking.istio.io/exportTo: "., istio-system"` -> ('.', 'istio-system')."""
    if not annotation:
        return ()
    return tuple(part.strip() for part in annotation.split(",") if part.strip())


def exported_to(export_to: Iterable[str], owner_namespace: str, namespace: str) -> bool:
    """exportTo: empty or `*` = everywhere, `.` = the owner's namespace, else the names listed
    (`~` names no namespace, so it hides the resource from everyone)."""
    targets = list(export_to)
    if not targets or _ANY in targets:
        return True
    return namespace in targets or (_SAME in targets and owner_namespace == namespace)


def dns_matches(pattern: str, host: str) -> bool:
    """An egress dnsName: `*`, a `*.suffix` wildcard, or the exact host."""
    if pattern in (_ANY, host):
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:])


@dataclass(frozen=True, slots=True)
class EgressHost:
    """One `namespace/dnsName` entry, with `.` already resolved to the proxy's namespace."""

    namespace: str
    dns_name: str

    @classmethod
    def parse(cls, entry: str, proxy_namespace: str) -> EgressHost:
        namespace, _, dns_name = entry.partition("/")
        if not dns_name:  # validation refuses this; treat a bare host as `*/host`
            namespace, dns_name = _ANY, entry
        return cls(proxy_namespace if namespace == _SAME else namespace, dns_name)

    def allows(self, service: Service) -> bool:
        if self.namespace == _NONE:
            return False
        if self.namespace not in (_ANY, service.namespace):
            return False
        return dns_matches(self.dns_name, service.hostname)


@dataclass(frozen=True, slots=True)
class EgressScope:
    """One egress listener: its hosts, on one port or (port None) on every port."""

    port: int | None
    hosts: tuple[EgressHost, ...]

    def allows(self, service: Service, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        return any(h.allows(service) for h in self.hosts)


@dataclass(frozen=True, slots=True)
class IngressPort:
    """A Sidecar ingress listener: inbound `port` forwarded to `host:app_port` (the app)."""

    port: ServicePort
    host: str
    app_port: int


@dataclass(frozen=True, slots=True)
class SidecarScope:
    """What one Sidecar resource allows a proxy; `key` names the Sidecar (None: none applies)
    and is what the compile cache keys on, so proxies under one Sidecar still share output."""

    key: tuple[str, str] | None = None
    egress: tuple[EgressScope, ...] = ()
    outbound_policy: OutboundPolicy | None = None
    ingress: tuple[IngressPort, ...] = ()

    @property
    def scoped(self) -> bool:
        return bool(self.egress)

    def allows(self, service: Service, port: int) -> bool:
        return not self.egress or any(e.allows(service, port) for e in self.egress)


UNSCOPED = SidecarScope()


def select_sidecar(
    proxy: Proxy, sidecars: Iterable[Sidecar], root_namespace: str
) -> Sidecar | None:
    """Istio's choice: selector match in the proxy's namespace, then that namespace's default,
    then the root namespace's default. Gateways get none."""
    if proxy.type is not ProxyType.SIDECAR:
        return None
    own = [s for s in sidecars if s.namespace == proxy.namespace]
    for sidecar in own:
        selector = sidecar.spec.workload_selector
        if selector and selector.labels and _labels_match(selector.labels, proxy.labels):
            return sidecar
    for candidates in (own, [s for s in sidecars if s.namespace == root_namespace]):
        default = next((s for s in candidates if s.spec.workload_selector is None), None)
        if default is not None:
            return default
    return None


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def sidecar_scope(proxy: Proxy, sidecar: Sidecar | None) -> SidecarScope:
    """The scope one Sidecar gives `proxy` (UNSCOPED when none applies)."""
    if sidecar is None:
        return UNSCOPED
    spec = sidecar.spec
    egress = tuple(
        EgressScope(
            e.port.number if e.port else None,
            tuple(EgressHost.parse(h, proxy.namespace) for h in e.hosts),
        )
        for e in spec.egress
    )
    policy = spec.outbound_traffic_policy
    return SidecarScope(
        key=(sidecar.namespace, sidecar.name),
        egress=egress,
        outbound_policy=OutboundPolicy(policy.mode.value) if policy else None,
        ingress=tuple(p for p in (ingress_port(i, proxy) for i in spec.ingress) if p),
    )


def ingress_port(listener: IstioIngressListener, proxy: Proxy) -> IngressPort | None:
    """`defaultEndpoint` 127.0.0.1:PORT (the app's loopback) or 0.0.0.0:PORT (the pod's
    address); unix sockets and a missing endpoint are not supported (None)."""
    number = listener.port.number
    host, _, app_port = (listener.default_endpoint or "").rpartition(":")
    if number is None or not app_port.isdigit() or host not in ("127.0.0.1", "0.0.0.0"):
        return None
    name = listener.port.name or ""
    protocol = Protocol.from_port(name, listener.port.protocol or "")
    address = proxy.app_host if host == "127.0.0.1" else proxy.ip
    return IngressPort(ServicePort(name, number, number, protocol), address, int(app_port))


def visible_services(
    services: Iterable[Service],
    scope: SidecarScope,
    namespace: str,
    destinations_of: Callable[[Service], Iterable[Service]],
) -> tuple[Service, ...]:
    """The services (ports narrowed to the allowed ones) a proxy in `namespace` under `scope`
    gets outbound config for; `destinations_of(service)` names the services its mesh
    VirtualService routes to. Order follows `services`."""
    exported = [s for s in services if exported_to(s.export_to, s.namespace, namespace)]
    kept: dict[str, Service] = {}
    for service in exported:
        ports = tuple(p for p in service.ports if scope.allows(service, p.port))
        if ports:
            kept[service.hostname] = _with_ports(service, ports)
    if scope.scoped:
        for service in list(kept.values()):
            for target in destinations_of(service):
                if exported_to(target.export_to, target.namespace, namespace):
                    kept[target.hostname] = target  # a route may name any of its ports
    return tuple(kept[s.hostname] for s in exported if s.hostname in kept)


def _with_ports(service: Service, ports: tuple[ServicePort, ...]) -> Service:
    return service if ports == service.ports else dataclasses.replace(service, ports=ports)


def route_destination_hosts(vs: VirtualService) -> list[str]:
    """Every destination host a VirtualService's http, tls and tcp routes (and mirrors) name."""
    rules: list[HTTPRoute | TLSRoute | TCPRoute] = [*vs.spec.http, *vs.spec.tls, *vs.spec.tcp]
    hosts = [d.destination.host for rule in rules for d in rule.route]
    hosts += [m.destination.host for rule in vs.spec.http for m in rule.all_mirrors]
    return hosts
