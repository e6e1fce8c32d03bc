"""The control plane's view of the mesh: store + registry in, versioned PushContext out.

Every write (apply, delete, workload change) produces a new MeshSnapshot and PushContext, then
tells the xDS server which xDS types changed. Compiled output is cached per version and part,
keyed by the proxy facts that part reads (compiler/dependencies.py), so proxies alike share it,
and its pieces are kept across versions while what they read is unchanged
(compiler/incremental.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from trellis.api.base import Resource
from trellis.api.networking import ServiceEntry
from trellis.compiler import compile_all
from trellis.compiler.dependencies import SharedCache, generate_shared
from trellis.compiler.incremental import ReuseCache, share_unchanged
from trellis.model import xds_types
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext
from trellis.model.registry import Service, Workload
from trellis.model.snapshot import Change, MeshConfig, MeshSnapshot
from trellis.registry.local import (
    allocate_vip,
    service_key,
    services_from_resources,
    workload_from_record,
    workload_to_record,
)
from trellis.registry.service_entries import services_from_service_entries, vip_requests
from trellis.registry.workload_entries import workloads_from_resources
from trellis.store.sqlite import SqliteStore

log = logging.getLogger("trellisd")

WORKLOADS = "workloads"
VIPS = "vips"

ALL_TYPES = frozenset(xds_types.PUSH_ORDER)
TYPES_FOR_CHANGE = {
    Change.ENDPOINTS: frozenset({xds_types.ENDPOINT}),
}

Notify = Callable[[str, frozenset[str], Callable[[Proxy], bool] | None], None]
# A registry besides the local runtime's (kube/controller.py): its current services and
# workloads, read at every rebuild.
RegistrySource = Callable[[], tuple[Sequence[Service], Sequence[Workload]]]


@dataclass(frozen=True, slots=True)
class WorkloadRecord:
    workload: Workload
    netns: str


class MeshState:
    """Owns the current snapshot; thread-safe so the HTTP API and xDS server can share it."""

    def __init__(self, *, store: SqliteStore, mesh: MeshConfig, notify: Notify) -> None:
        self._store = store
        self._mesh = mesh
        self._notify = notify
        self._lock = threading.RLock()
        # Versions start from the clock so a restarted trellisd never reuses an old version.
        self._version = int(time.time() * 1000)
        self._cache: SharedCache = {}
        # Pieces of compiled output kept across versions while what they read is unchanged
        # (compiler/incremental.py): a change recompiles only what it touches.
        self.reuse = ReuseCache()
        self.snapshot = MeshSnapshot(version=self._version, mesh=mesh)
        self.push = PushContext.build(self.snapshot)
        self.listeners: list[Callable[[MeshSnapshot, Sequence[WorkloadRecord]], None]] = []
        self._jwks: dict[str, str] = {}  # jwksUri -> JWK Set (controlplane/jwks.py)
        # For trellisd's pilot_* metrics (controlplane/metrics.py): (kind, add|update|delete)
        # per stored change, and the update type (config|eds) per rebuild.
        self.config_events: list[Callable[[str, str], None]] = []
        self.update_events: list[Callable[[str], None]] = []
        self.registry_sources: list[RegistrySource] = []

    # -- inputs ---------------------------------------------------------------------------------

    def apply(
        self, resources: Sequence[Resource], jwks: Mapping[str, str] | None = None
    ) -> list[Any]:
        """Store resources; `jwks` are the documents of their jwksUris, fetched beforehand."""
        results = self._store.apply(resources)
        for r in results:
            if r.action != "unchanged":
                self._config_event(r.key[0], "add" if r.action == "created" else "update")
        with self._lock:
            self._jwks.update(jwks or {})
        self.rebuild(Change.CONFIG | Change.SERVICES)
        return results

    @property
    def jwks_documents(self) -> dict[str, str]:
        with self._lock:
            return dict(self._jwks)

    def update_jwks(self, documents: Mapping[str, str]) -> None:
        """Refreshed JWKS documents; a new snapshot only when one of them changed."""
        with self._lock:
            changed = {u: d for u, d in documents.items() if self._jwks.get(u) != d}
            self._jwks.update(changed)
        if changed:
            self.rebuild(Change.CONFIG)

    def delete(self, keys: Sequence[tuple[str, str, str]]) -> list[Any]:
        deleted = self._store.delete(keys)
        for kind, _, _ in deleted:
            self._config_event(kind, "delete")
        self.rebuild(Change.CONFIG | Change.SERVICES)
        return deleted

    def _config_event(self, kind: str, event: str) -> None:
        for listener in self.config_events:
            listener(kind, event)

    def put_workload(self, workload: Workload, netns: str) -> None:
        self._store.put_record(
            WORKLOADS,
            _wkey(workload.namespace, workload.name),
            workload_to_record(workload, netns=netns),
        )
        self.rebuild(Change.ENDPOINTS, focus=workload)

    def delete_workload(self, namespace: str, name: str) -> bool:
        key = _wkey(namespace, name)
        if key not in self._store.list_records(WORKLOADS):
            return False
        self._store.delete_record(WORKLOADS, key)
        self.rebuild(Change.ENDPOINTS)
        return True

    def resources(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        return self._store.list(kind, namespace)

    def workloads(self) -> list[WorkloadRecord]:
        return [
            WorkloadRecord(workload_from_record(r), str(r.get("netns", "")))
            for r in self._store.list_records(WORKLOADS).values()
        ]

    # -- snapshot -------------------------------------------------------------------------------

    def rebuild(self, change: Change = Change.ALL, *, focus: Workload | None = None) -> None:
        """Make a new snapshot from the store and tell the xDS server what changed."""
        with self._lock:
            resources = tuple(self._store.list())
            records = self.workloads()
            services = self._services(resources)
            external = [source() for source in self.registry_sources]
            services += tuple(s for source_services, _ in external for s in source_services)
            self._version += 1
            self.snapshot = MeshSnapshot(
                version=self._version,
                resources=tuple(r for r in resources if r.kind != "Service"),
                services=services,
                # Runtime pods plus WorkloadEntries (VMs, auto-registered agents).
                workloads=(
                    *(r.workload for r in records),
                    *workloads_from_resources(resources),
                    *(w for _, source_workloads in external for w in source_workloads),
                ),
                mesh=self._mesh,
                jwks=tuple(sorted(self._jwks.items())),
            )
            # Unchanged indexes stay the very objects of the last version (compile cache).
            self.push = share_unchanged(PushContext.build(self.snapshot), self.push)
            self._cache.clear()
            version = str(self._version)
        for listener in self.listeners:
            listener(self.snapshot, records)
        for update_listener in self.update_events:
            update_listener("eds" if change == Change.ENDPOINTS else "config")
        if change == Change.ENDPOINTS:
            self._notify(version, TYPES_FOR_CHANGE[Change.ENDPOINTS], None)
            if focus is not None:
                key = f"{focus.name}.{focus.namespace}"
                self._notify(version, ALL_TYPES, lambda p: p.key == key)
        else:
            self._notify(version, ALL_TYPES, None)
        log.info("event=snapshot version=%s change=%s", version, change)

    def _services(self, resources: Sequence[Resource]) -> tuple[Service, ...]:
        vips = self._store.list_records(VIPS)
        allocated = {k: str(v["vip"]) for k, v in vips.items()}
        entries = [r for r in resources if isinstance(r, ServiceEntry)]
        keys = [service_key(r.namespace, r.name) for r in resources if r.kind == "Service"]
        for key in [*keys, *vip_requests(entries)]:
            if key not in allocated:
                allocated[key] = allocate_vip(key, allocated)
                self._store.put_record(VIPS, key, {"vip": allocated[key]})
        return services_from_resources(resources, allocated) + services_from_service_entries(
            entries, allocated
        )

    def next_version(self) -> str:
        """A fresh xDS version for a push that changes no config (SDS after a root rotation),
        so its ACK can be told apart from earlier ones."""
        with self._lock:
            self._version += 1
            return str(self._version)

    # -- output ---------------------------------------------------------------------------------

    def generate(self, proxy: Proxy, type_url: str) -> Mapping[str, Message]:
        """The ConfigGenerator the xDS server calls: each part compiled once per version and
        per distinct value of what it depends on (the cached protos are shared: read only)."""
        with self._lock:
            return generate_shared(proxy, self.push, type_url, self._cache, self.reuse)

    def compiled(self, proxy: Proxy) -> Any:
        with self._lock:
            return compile_all(proxy, self.push)


def _wkey(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"
