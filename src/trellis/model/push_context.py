"""PushContext: the indexes the compiler reads, built once per MeshSnapshot (DESIGN §3).

Everything here is derived, immutable and pure; generators never scan the raw snapshot.
Istio's scoping rules live here so every generator agrees on them: short host names resolve
against the namespace of the resource that wrote them, `gateways` omitted means `mesh`,
DestinationRules are looked up client namespace -> service namespace -> root namespace.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from trellis.api.base import Resource
from trellis.api.networking import DestinationRule, Gateway, Sidecar, VirtualService
from trellis.api.policy_scope import oldest_first
from trellis.api.telemetry import Telemetry
from trellis.model.proxy import Proxy
from trellis.model.registry import Endpoint, Service, ServicePort, Workload
from trellis.model.sidecar_scope import (
    SidecarScope,
    route_destination_hosts,
    select_sidecar,
    sidecar_scope,
    visible_services,
)
from trellis.model.snapshot import MeshConfig, MeshSnapshot, OutboundPolicy

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
    # networking.istio.io Sidecar, in snapshot order (model/sidecar_scope.py).
    sidecars: tuple[Sidecar, ...] = ()
    # Memo of outbound_services by (Sidecar key, proxy namespace): derived, never compared.
    _visible: dict[tuple[object, str], tuple[Service, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # Memo of `derived`: values computed from the whole context once, shared by every proxy.
    _derived: dict[Callable[[PushContext], object], object] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def build(cls, snapshot: MeshSnapshot) -> PushContext:
        services = tuple(sorted(snapshot.services, key=lambda s: (s.hostname, s.vip)))
        by_host = {s.hostname: s for s in services}
        # Istio's order for "the first one wins" and gateway merges: oldest first, then
        # namespace/name (docs/DECISIONS.md, "VirtualService conflicts").
        virtual_services = tuple(oldest_first(_of_kind(snapshot.resources, VirtualService)))
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
            sidecars=_of_kind(snapshot.resources, Sidecar),
        )

    def derived(self, compute: Callable[[PushContext], _T]) -> _T:
        """`compute(self)`, once per context: a mesh-wide value every proxy's compile reads
        (e.g. all peer identities). The compile cache compares it as one read
        (compiler/incremental.py), so `compute` must be a pure function of the context."""
        if compute not in self._derived:
            self._derived[compute] = compute(self)
        return cast(_T, self._derived[compute])

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
        in_namespace = self.derived(_services_by_namespace).get(proxy.namespace, ())
        return tuple(s for s in in_namespace if labels_match(s.selector, proxy.labels))

    # --- Sidecar scope and exportTo (model/sidecar_scope.py) ----------------------------

    def sidecar_scope(self, proxy: Proxy) -> SidecarScope:
        """The Sidecar resource that applies to `proxy`, as a scope (UNSCOPED if none)."""
        chosen = select_sidecar(proxy, self.sidecars, self.mesh.root_namespace)
        return sidecar_scope(proxy, chosen)

    def outbound_services(self, proxy: Proxy) -> tuple[Service, ...]:
        """The services (ports narrowed) the proxy gets outbound config for: exportTo and
        its Sidecar's egress hosts. Every outbound generator iterates this, not `services`."""
        scope = self.sidecar_scope(proxy)
        memo_key = (scope.key, proxy.namespace)
        found = self._visible.get(memo_key)
        if found is None:
            found = self._visible[memo_key] = visible_services(
                self.services, scope, proxy.namespace, self._route_targets(proxy.namespace)
            )
        return found

    def outbound_policy(self, proxy: Proxy) -> OutboundPolicy:
        """The Sidecar's outboundTrafficPolicy, else the mesh's (ALLOW_ANY / REGISTRY_ONLY)."""
        return self.sidecar_scope(proxy).outbound_policy or self.mesh.outbound_policy

    def _route_targets(self, namespace: str) -> Callable[[Service], list[Service]]:
        def targets(service: Service) -> list[Service]:
            vs = self.mesh_virtual_service(service.hostname, namespace)
            if vs is None:
                return []
            found = (self.resolve_service(h, vs.namespace) for h in route_destination_hosts(vs))
            return [s for s in found if s is not None]

        return targets

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


def _services_by_namespace(push: PushContext) -> Mapping[str, tuple[Service, ...]]:
    by_namespace: defaultdict[str, list[Service]] = defaultdict(list)
    for service in push.services:
        by_namespace[service.namespace].append(service)
    return {namespace: tuple(found) for namespace, found in by_namespace.items()}


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
                _endpoint(w, w.target_port(port)) for w in members
            ) + tuple(e for number, e in service.static_endpoints if number == port.port)
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
