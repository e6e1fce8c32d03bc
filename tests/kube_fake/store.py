"""The fake API server's storage: objects, one global resourceVersion, an event log.

Like etcd behind a real API server, every write bumps one counter that becomes the object's
`metadata.resourceVersion`; the event log keeps what watches replay from a given version
until `compact()` drops it (a watch from before the compaction then gets 410 Gone).
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str, str, str]
"""(group, plural, namespace, name); namespace "" for cluster-scoped objects."""


@dataclass(frozen=True, slots=True)
class Event:
    resource_version: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    object: dict[str, Any]


Events = list[Event]  # an alias: inside ObjectStore, `list` is its method


@dataclass(slots=True, eq=False)
class Watcher:
    """One open watch: which collection, and a queue of events (None = close the stream)."""

    group: str
    plural: str
    namespace: str
    queue: asyncio.Queue[Event | str | None] = field(default_factory=asyncio.Queue)

    def wants(self, key: Key) -> bool:
        group, plural, namespace, _ = key
        return (group, plural) == (self.group, self.plural) and self.namespace in ("", namespace)


class Conflict(Exception):
    """The write names a resourceVersion that is no longer current (HTTP 409)."""


class ObjectStore:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.revision = 0
        self.compacted = 0
        self.log: list[Event] = []
        self.watchers: set[Watcher] = set()

    def list(self, group: str, plural: str, namespace: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (g, p, ns, _), obj in sorted(self.objects.items())
            if (g, p) == (group, plural) and namespace in ("", ns)
        ]

    def get(self, key: Key) -> dict[str, Any] | None:
        found = self.objects.get(key)
        return copy.deepcopy(found) if found is not None else None

    def create(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        metadata = obj.setdefault("metadata", {})
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        metadata["generation"] = 1
        return self._write(key, obj, "ADDED")

    def update(
        self, key: Key, obj: dict[str, Any], *, check_version: bool = True
    ) -> dict[str, Any]:
        old = self.objects[key]
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if check_version and wanted and wanted != old["metadata"]["resourceVersion"]:
            raise Conflict(
                "the object has been modified; please apply your changes to the latest version"
            )
        metadata = obj.setdefault("metadata", {})
        for kept in ("uid", "creationTimestamp"):
            metadata[kept] = old["metadata"][kept]
        generation = old["metadata"].get("generation", 1)
        changed = {k: v for k, v in obj.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }
        metadata["generation"] = generation + 1 if changed else generation
        return self._write(key, obj, "MODIFIED")

    def delete(self, key: Key) -> dict[str, Any]:
        obj = self.objects.pop(key)
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self._record(Event(self.revision, "DELETED", key, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def _write(self, key: Key, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self.objects[key] = copy.deepcopy(obj)
        self._record(Event(self.revision, kind, key, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def _record(self, event: Event) -> None:
        self.log.append(event)
        for watcher in self.watchers:
            if watcher.wants(event.key):
                watcher.queue.put_nowait(event)

    def events_since(self, version: int, watcher: Watcher) -> Events:
        return [e for e in self.log if e.resource_version > version and watcher.wants(e.key)]

    # -- test hooks ------------------------------------------------------------------------

    def compact(self) -> int:
        """Forget the event log up to now (etcd compaction); returns the compacted revision."""
        self.compacted = self.revision
        self.log.clear()
        return self.compacted

    def drop_watches(self) -> int:
        """End every open watch stream, as an API server restart or timeout would."""
        for watcher in self.watchers:
            watcher.queue.put_nowait(None)
        return len(self.watchers)

    def bookmark(self) -> None:
        """Ask every watch that allows bookmarks to send one with the current revision."""
        for watcher in self.watchers:
            watcher.queue.put_nowait("BOOKMARK")
