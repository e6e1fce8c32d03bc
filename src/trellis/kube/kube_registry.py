"""The registry half of the controller: the cluster's Services, EndpointSlices, Pods and
Namespaces as reflector caches, read by MeshState at every rebuild (a registry source)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trellis.kube.reflector import KubeDict
from trellis.model.registry import Service, Workload
from trellis.registry.kubernetes import (
    object_key,
    service_from_object,
    slices_by_service,
    workload_from_pod,
)


class ObjectCache:
    """One collection's objects by namespace/name; a reflector handler that reports changes."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.objects: dict[str, KubeDict] = {}
        self._on_change = on_change

    def replace(self, objects: list[KubeDict]) -> None:
        fresh = {object_key(o): o for o in objects}
        if fresh != self.objects:
            self.objects = fresh
            self._on_change()

    def upsert(self, obj: KubeDict) -> None:
        self.objects[object_key(obj)] = obj
        self._on_change()

    def remove(self, obj: KubeDict) -> None:
        if self.objects.pop(object_key(obj), None) is not None:
            self._on_change()


class KubeRegistry:
    """Services and workloads of the cluster, recomputed only after a change."""

    def __init__(self, on_change: Callable[[], None], *, domain: str = "cluster.local") -> None:
        self._dirty = True
        self._on_change = on_change
        self._domain = domain
        self.services = ObjectCache(self._changed)
        self.slices = ObjectCache(self._changed)
        self.pods = ObjectCache(self._changed)
        self.namespaces = ObjectCache(lambda: None)  # labels only (injection), no registry change
        self._current: tuple[tuple[Service, ...], tuple[Workload, ...]] = ((), ())

    def _changed(self) -> None:
        self._dirty = True
        self._on_change()

    def snapshot(self) -> tuple[Sequence[Service], Sequence[Workload]]:
        """The registry source MeshState reads: (services, workloads)."""
        if self._dirty:
            self._dirty = False
            grouped = slices_by_service(self.slices.objects.values())
            services = (
                service_from_object(obj, grouped.get(key, ()), domain=self._domain)
                for key, obj in sorted(self.services.objects.items())
            )
            workloads = (workload_from_pod(obj) for _, obj in sorted(self.pods.objects.items()))
            self._current = (
                tuple(s for s in services if s is not None),
                tuple(w for w in workloads if w is not None),
            )
        return self._current

    def namespace_labels(self, namespace: str) -> dict[str, Any]:
        meta = (self.namespaces.objects.get(namespace) or {}).get("metadata") or {}
        return dict(meta.get("labels") or {})
