"""What every analyzer reads: the resources analysed, the known hosts, and lookups by name.

Pure data over parsed resources and registry services; nothing here does I/O, so the CLI,
the console and tests build one the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from trellis.analyze.messages import Message, MessageType, Origin
from trellis.api.base import Resource
from trellis.api.core import Service as ServiceResource
from trellis.api.networking import Gateway, ServiceEntry, VirtualService
from trellis.api.policy_scope import oldest_first
from trellis.api.references import host_matches, resolve_host
from trellis.model.registry import DEFAULT_DOMAIN
from trellis.model.registry import Service as RegistryService

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True, slots=True)
class AnalysisContext:
    """Resources (oldest first, as Istio orders them) plus every host the mesh knows."""

    resources: tuple[Resource, ...]
    known_hosts: frozenset[str]
    wildcard_hosts: tuple[str, ...]
    references: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    _by_key: Mapping[tuple[str, str, str], Resource] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        resources: Iterable[Resource],
        services: Sequence[RegistryService] = (),
        *,
        references: Mapping[tuple[str, str, str], str] | None = None,
    ) -> AnalysisContext:
        ordered = tuple(oldest_first(resources))
        hosts = {s.hostname for s in services}
        for r in ordered:
            if isinstance(r, ServiceResource):
                hosts.add(f"{r.name}.{r.namespace}.svc.{DEFAULT_DOMAIN}")
            elif isinstance(r, ServiceEntry):
                hosts.update(resolve_host(h, r.namespace) for h in r.spec.hosts)
        wildcards = tuple(sorted(h for h in hosts if h.startswith("*")))
        exact = frozenset(h for h in hosts if not h.startswith("*"))
        by_key = {r.key: r for r in ordered}
        return cls(ordered, exact, wildcards, dict(references or {}), by_key)

    def of_kind(self, kind: type[R]) -> list[R]:
        return [r for r in self.resources if isinstance(r, kind)]

    def resolve(self, host: str, namespace: str) -> str:
        """Istio's short-name rule, plus `name.ns` completed when that names a known service."""
        full = resolve_host(host, namespace)
        if full == host and "." in host and not host.startswith("*"):
            for candidate in (f"{host}.svc.{DEFAULT_DOMAIN}", f"{host}.{DEFAULT_DOMAIN}"):
                if candidate in self.known_hosts:
                    return candidate
        return full

    def host_known(self, host: str) -> bool:
        """Is a resolved host a Service, a ServiceEntry host, or covered by a wildcard entry?"""
        if host in self.known_hosts:
            return True
        return any(host_matches(pattern, host) for pattern in self.wildcard_hosts)

    def gateway(self, key: str) -> Gateway | None:
        """A Gateway by `ns/name`."""
        namespace, _, name = key.partition("/")
        found = self._by_key.get((Gateway.KIND, namespace, name))
        return found if isinstance(found, Gateway) else None

    def virtual_service(self, namespace: str, name: str) -> VirtualService | None:
        found = self._by_key.get((VirtualService.KIND, namespace, name))
        return found if isinstance(found, VirtualService) else None

    def origin(self, resource: Resource) -> Origin:
        kind, namespace, name = resource.key
        return Origin(kind, namespace, name, self.references.get(resource.key, ""))

    def message(self, kind: MessageType, resource: Resource, text: str, field: str = "") -> Message:
        return Message(kind, self.origin(resource), text, field)
