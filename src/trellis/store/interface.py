"""What every config store offers (sqlite for one machine; Kubernetes later).

Writes are all-or-nothing batches, every written object gets the store's next global revision
as its resourceVersion (as in Kubernetes), and generation counts spec changes only.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from trellis.api.base import Resource

ResourceKey = tuple[str, str, str]
"""(kind, namespace, name)."""

ApplyAction = Literal["created", "configured", "unchanged"]
HistoryAction = Literal["created", "configured", "deleted"]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What apply did to one resource, as `kubectl apply` reports it."""

    key: ResourceKey
    action: ApplyAction
    resource_version: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One stored version of a resource (deletions included, with the last body)."""

    resource_version: str
    generation: int
    action: HistoryAction
    resource: Resource
    recorded_at: float


class ConfigStore(Protocol):
    """The store trellisd and the CLI talk to."""

    def apply(self, resources: Sequence[Resource]) -> builtins.list[ApplyResult]: ...

    def delete(self, keys: Sequence[ResourceKey]) -> builtins.list[ResourceKey]: ...

    def get(self, kind: str, namespace: str, name: str) -> Resource | None: ...

    def list(
        self, kind: str | None = None, namespace: str | None = None
    ) -> builtins.list[Resource]: ...

    def revision(self) -> int: ...

    def history(self, kind: str, namespace: str, name: str) -> builtins.list[HistoryEntry]: ...

    def close(self) -> None: ...
