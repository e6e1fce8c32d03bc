"""Istio custom resources from the API server into trellisd's config store.

The cluster is the source of truth; the sqlite store is trellisd's working copy, so the
compiler, `trellis get` and history see cluster config exactly as they see applied config.
Each resource passes the same parsing and validation as `trellis apply`; one that fails
(it got past a webhook with failurePolicy Ignore) is logged and left out, as istiod skips
invalid config, and never blocks the others; an update that fails keeps the last valid
version in effect.
"""

from __future__ import annotations

import logging
from typing import Any

from trellis.api.base import Resource
from trellis.api.kinds import parse_resource
from trellis.controlplane.state import MeshState
from trellis.errors import ValidationError
from trellis.kube.reflector import KubeDict
from trellis.registry.workload_entries import auto_registration_group

log = logging.getLogger("trellisd.kube")

_SERVER_FIELDS = ("resourceVersion", "generation", "uid", "managedFields", "selfLink")


def resource_from_object(obj: KubeDict) -> Resource:
    """A typed, validated resource from a custom resource's JSON; raises ValidationError."""
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_FIELDS}
    return parse_resource({**obj, "metadata": metadata})


def _key(obj: KubeDict, kind: str) -> tuple[str, str, str]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return (kind, str(meta.get("namespace") or "default"), str(meta.get("name", "")))


class ConfigSync:
    """A reflector handler for one Istio kind, writing through MeshState (which validates)."""

    def __init__(self, state: MeshState, kind: str) -> None:
        self._state = state
        self.kind = kind
        self.rejected: dict[tuple[str, str, str], str] = {}  # key -> why, for status/tests

    def _parse(self, obj: KubeDict) -> Resource | None:
        key = _key(obj, self.kind)
        try:
            resource = resource_from_object(obj)
        except ValidationError as err:
            self._reject(key, err)
            return None
        self.rejected.pop(key, None)
        return resource

    def _reject(self, key: tuple[str, str, str], err: ValidationError) -> None:
        self.rejected[key] = err.describe()
        log.warning("event=config-rejected resource=%s/%s/%s problem=%r", *key, err.describe())

    def replace(self, objects: list[KubeDict]) -> None:
        resources = [r for r in map(self._parse, objects) if r is not None]
        wanted = {r.key for r in resources}
        stale = [
            r.key
            for r in self._state.resources(self.kind)
            if r.key not in wanted and auto_registration_group(r) is None
        ]
        if stale:
            self._state.delete(stale)
        try:
            if resources:
                self._state.apply(resources)
        except ValidationError:
            for resource in resources:  # find the bad ones; apply the rest
                self._apply_one(resource)

    def upsert(self, obj: KubeDict) -> None:
        resource = self._parse(obj)
        if resource is not None:
            self._apply_one(resource)

    def _apply_one(self, resource: Resource) -> None:
        try:
            self._state.apply([resource])
        except ValidationError as err:
            self._reject(resource.key, err)

    def remove(self, obj: KubeDict) -> None:
        key = _key(obj, self.kind)
        self.rejected.pop(key, None)
        if any(r.key == key for r in self._state.resources(self.kind, key[1])):
            self._state.delete([key])
