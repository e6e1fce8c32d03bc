"""PushContext: the indexes the compiler reads, built once per MeshSnapshot (DESIGN §3).

Everything here is derived, immutable and pure; generators never scan the raw snapshot.
Istio's scoping rules live here so every generator agrees on them: short host names resolve
against the namespace of the resource that wrote them, `gateways` omitted means `mesh`,
DestinationRules are looked up client namespace -> service namespace -> root namespace.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from trellis.api.base import Resource
from trellis.api.networking import DestinationRule, Gateway, VirtualService
from trellis.api.telemetry import Telemetry
from trellis.model.proxy import Proxy
from trellis.model.registry import Endpoint, Service, ServicePort, Workload
from trellis.model.snapshot import MeshConfig, MeshSnapshot

MESH_GATEWAY = "mesh"
_SECURITY_GROUP = "security.istio.io/"
_R = TypeVar("_R", bound=Resource)
_T = TypeVar("_T")


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """matchLabels semantics for a non-empty selector; an empty selector matches nothing."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: exact, `*`, or a `*.suffix` wildcard covering `host`."""
    if pattern == host or pattern == "*":
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:])


def exported_to(export_to: Iterable[str], owner_namespace: str, namespace: str) -> bool:
    """exportTo: empty or `*` = everywhere, `.` = the owner's namespace, else the names listed."""
    targets = list(export_to)
    if not targets or "*" in targets:
        return True
    return namespace in targets or ("." in targets and owner_namespace == namespace)


def gateway_key(ref: str, namespace: str) -> str:
    """A `gateways` entry as `ns/name` (a bare name is in the referring resource's namespace)."""
    if ref == MESH_GATEWAY or "/" in ref:
        return ref
    if "." in ref:  # Istio also accepts `name.namespace.svc.cluster.local` references
        name, owner = ref.split(".")[:2]
        return f"{owner}/{name}"
    return f"{namespace}/{ref}"


@dataclass(frozen=True, slots=True, eq=False)
class PushContext:
    """Indexes over one snapshot. Build with `PushContext.build(snapshot)`."""

    version: int
    mesh: MeshConfig
    services: tuple[Service, ...]
    workloads: tuple[Workload, ...]
    virtual_services: tuple[VirtualService, ...]
    destination_rules: tuple[DestinationRule, ...]
    gateways: tuple[Gateway, ...]
    _services_by_host: Mapping[str, Service]
    _endpoints: Mapping[tuple[str, int], tuple[Endpoint, ...]]
    _vs_by_gateway: Mapping[str, tuple[VirtualService, ...]]
    _rules_by_namespace: Mapping[str, tuple[tuple[str, DestinationRule], ...]]
    _mesh_vs_hosts: HostIndex[VirtualService]
    source_label_keys: frozenset[str]  # label keys any VirtualService match selects clients on
    _rules_by_host: Mapping[str, HostIndex[DestinationRule]]
    # security.istio.io resources (PeerAuthentication, AuthorizationPolicy,
    # RequestAuthentication), in snapshot order; api/policy_scope.py picks what applies.
    security_policies: tuple[Resource, ...] = ()
    # (jwksUri, JWKS document) pairs trellisd fetched for RequestAuthentications (compiler/jwt.py).
    fetched_jwks: tuple[tuple[str, str], ...] = ()
    # telemetry.istio.io Telemetry, in snapshot order (tracing sampling, compiler/tracing.py).
    telemetries: tuple[Telemetry, ...] = ()

    @classmethod
    def build(cls, snapshot: MeshSnapshot) -> PushContext:
        services = tuple(sorted(snapshot.services, key=lambda s: (s.hostname, s.vip)))
        by_host = {s.hostname: s for s in services}
        virtual_services = _of_kind(snapshot.resources, VirtualService)
        rules = _of_kind(snapshot.resources, DestinationRule)
        domain = snapshot.mesh.trust_domain
        rules_by_namespace: defaultdict[str, list[tuple[str, DestinationRule]]] = defaultdict(list)
        for rule in rules:
            host = _resolve(rule.spec.host, rule.namespace, domain, by_host)
            rules_by_namespace[rule.namespace].append((host, rule))
        vs_by_gateway = _index_vs_by_gateway(virtual_services)
        mesh_vs_hosts = HostIndex.of(
            (vs, (_resolve(h, vs.namespace, domain, by_host) for h in vs.spec.hosts))
            for vs in vs_by_gateway.get(MESH_GATEWAY, ())
        )
        return cls(
            version=snapshot.version,
            mesh=snapshot.mesh,
            services=services,
            workloads=snapshot.workloads,
            virtual_services=virtual_services,
            destination_rules=rules,
            gateways=_of_kind(snapshot.resources, Gateway),
            _services_by_host=by_host,
            _endpoints=_index_endpoints(services, snapshot.workloads),
            _vs_by_gateway=vs_by_gateway,
            _rules_by_namespace={k: tuple(v) for k, v in rules_by_namespace.items()},
            _mesh_vs_hosts=mesh_vs_hosts,
            source_label_keys=_source_label_keys(virtual_services),
            _rules_by_host={
                ns: HostIndex.of((dr, (host,)) for host, dr in pairs)
                for ns, pairs in rules_by_namespace.items()
            },
            security_policies=tuple(
                r for r in snapshot.resources if r.api_version.startswith(_SECURITY_GROUP)
            ),
            fetched_jwks=snapshot.jwks,
            telemetries=_of_kind(snapshot.resources, Telemetry),
        )

    # --- services and hosts -------------------------------------------------------------

    def service(self, hostname: str) -> Service | None:
        return self._services_by_host.get(hostname)

    def resolve_host(self, host: str, namespace: str) -> str:
        """The FQDN a host written in a resource of `namespace` means.

        `reviews` -> reviews.NS.svc.DOMAIN; `reviews.ns` and `reviews.ns.svc` are completed only
        when that names a known service, so external names like `example.com` stay as written.
        """
        return _resolve(host, namespace, self.mesh.trust_domain, self._services_by_host)

    def resolve_service(self, host: str, namespace: str) -> Service | None:
        return self.service(self.resolve_host(host, namespace))

    def endpoints(self, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        """Workload addresses behind one service port, sorted by address."""
        return self._endpoints.get((service.hostname, port.port), ())

    def services_selecting(self, proxy: Proxy) -> tuple[Service, ...]:
        """Services in the proxy's namespace whose selector matches it: its inbound ports."""
        return tuple(
            s
            for s in self.services
            if s.namespace == proxy.namespace and labels_match(s.selector, proxy.labels)
        )

    # --- VirtualServices --------------------------------------------------------------

    def virtual_services_for(self, gateway: str, namespace: str) -> tuple[VirtualService, ...]:
        """VirtualServices bound to `gateway` (`mesh` or `ns/name`) visible from `namespace`."""
        bound = self._vs_by_gateway.get(gateway, ())
        return tuple(vs for vs in bound if exported_to(vs.spec.export_to, vs.namespace, namespace))

    def mesh_virtual_service(self, hostname: str, namespace: str) -> VirtualService | None:
        """The VirtualService sidecars in `namespace` use for `hostname`; the first one wins."""
        for vs in self._mesh_vs_hosts.in_order(hostname):
            if exported_to(vs.spec.export_to, vs.namespace, namespace):
                return vs
        return None

    # --- DestinationRules -------------------------------------------------------------

    def destination_rule(self, hostname: str, client_namespace: str) -> DestinationRule | None:
        """Istio's lookup order: client namespace, service namespace, root namespace."""
        service = self.service(hostname)
        order = [client_namespace]
        if service is not None:
            order.append(service.namespace)
        order.append(self.mesh.root_namespace)
        for namespace in order:
            rule = self._destination_rule_in(namespace, hostname, client_namespace)
            if rule is not None:
                return rule
        return None

    def _destination_rule_in(
        self, namespace: str, hostname: str, client_namespace: str
    ) -> DestinationRule | None:
        index = self._rules_by_host.get(namespace)
        if index is None:
            return None
        for dr in index.exact_first(hostname):
            if exported_to(dr.spec.export_to, dr.namespace, client_namespace):
                return dr
        return None

    # --- Gateways ---------------------------------------------------------------------

    def gateways_for(self, proxy: Proxy) -> tuple[Gateway, ...]:
        """Gateway resources whose selector matches this (router) proxy, in any namespace."""
        return tuple(g for g in self.gateways if labels_match(g.spec.selector, proxy.labels))

    def gateway_service(self, proxy: Proxy) -> Service | None:
        """The registry Service fronting a gateway proxy (e.g. istio-ingressgateway)."""
        selecting = self.services_selecting(proxy)
        return selecting[0] if selecting else None


@dataclass(frozen=True, slots=True)
class HostIndex(Generic[_T]):
    """Items by the (resolved) hosts they name, so a lookup by host is not a scan of all items.

    Items keep their original position: `in_order` serves "the first one wins" (VirtualService),
    `exact_first` serves "an exact host beats a wildcard, then the first one" (DestinationRule).
    """

    exact: Mapping[str, tuple[tuple[int, _T], ...]]
    wildcards: tuple[tuple[int, str, _T], ...]

    @classmethod
    def of(cls, entries: Iterable[tuple[_T, Iterable[str]]]) -> HostIndex[_T]:
        exact: defaultdict[str, list[tuple[int, _T]]] = defaultdict(list)
        wildcards: list[tuple[int, str, _T]] = []
        for position, (item, hosts) in enumerate(entries):
            for host in dict.fromkeys(hosts):
                if "*" in host:
                    wildcards.append((position, host, item))
                else:
                    exact[host].append((position, item))
        return cls({h: tuple(items) for h, items in exact.items()}, tuple(wildcards))

    def _exact(self, host: str) -> list[tuple[int, _T]]:
        return list(self.exact.get(host, ()))

    def _wildcard(self, host: str) -> list[tuple[int, _T]]:
        return [(pos, item) for pos, pattern, item in self.wildcards if host_matches(pattern, host)]

    def in_order(self, host: str) -> list[_T]:
        return _unique(sorted(self._exact(host) + self._wildcard(host), key=lambda e: e[0]))

    def exact_first(self, host: str) -> list[_T]:
        return _unique(self._exact(host) + self._wildcard(host))


def _unique(entries: Iterable[tuple[int, _T]]) -> list[_T]:
    seen: set[int] = set()
    out: list[_T] = []
    for position, item in entries:
        if position not in seen:
            seen.add(position)
            out.append(item)
    return out


def _resolve(host: str, namespace: str, domain: str, known: Mapping[str, Service]) -> str:
    if "*" in host:
        return host
    if "." not in host:
        return f"{host}.{namespace}.svc.{domain}"
    for candidate in (f"{host}.svc.{domain}", f"{host}.{domain}"):
        if candidate in known:
            return candidate
    return host


def _of_kind(resources: Iterable[Resource], kind: type[_R]) -> tuple[_R, ...]:
    # Snapshot order stands in for Istio's creation-time order ("first one wins").
    return tuple(r for r in resources if isinstance(r, kind))


def _index_endpoints(
    services: Iterable[Service], workloads: Iterable[Workload]
) -> dict[tuple[str, int], tuple[Endpoint, ...]]:
    index: dict[tuple[str, int], tuple[Endpoint, ...]] = {}
    # Candidates share one label pair with the selector: avoids services x workloads scans.
    by_label: defaultdict[tuple[str, str, str], list[Workload]] = defaultdict(list)
    for workload in workloads:
        for key, value in workload.labels.items():
            by_label[(workload.namespace, key, value)].append(workload)
    for service in services:
        first = next(iter(service.selector.items()), None)
        candidates = by_label.get((service.namespace, *first), []) if first else []
        members = [w for w in candidates if w.matches(service.selector)]
        members.sort(key=lambda w: (w.ip, w.name))
        for port in service.ports:
            index[(service.hostname, port.port)] = tuple(
                _endpoint(w, port.target_port) for w in members
            )
    return index


def _endpoint(workload: Workload, port: int) -> Endpoint:
    return Endpoint(
        address=workload.ip,
        port=port,
        labels=workload.labels,
        workload=workload.name,
        namespace=workload.namespace,
        has_sidecar=workload.has_sidecar,
    )


def _source_label_keys(virtual_services: Iterable[VirtualService]) -> frozenset[str]:
    """Every label key a `sourceLabels` selector reads (http, tls and tcp matches)."""
    keys: set[str] = set()
    for vs in virtual_services:
        for http in vs.spec.http:
            keys.update(k for m in http.match for k in m.source_labels)
        for tls in vs.spec.tls:
            keys.update(k for m in tls.match for k in m.source_labels)
        for tcp in vs.spec.tcp:
            keys.update(k for m in tcp.match for k in m.source_labels)
    return frozenset(keys)


def _index_vs_by_gateway(
    virtual_services: Iterable[VirtualService],
) -> dict[str, tuple[VirtualService, ...]]:
    index: defaultdict[str, list[VirtualService]] = defaultdict(list)
    for vs in virtual_services:
        refs = vs.spec.gateways or [MESH_GATEWAY]
        for key in dict.fromkeys(gateway_key(ref, vs.namespace) for ref in refs):
            index[key].append(vs)
    return {key: tuple(value) for key, value in index.items()}
