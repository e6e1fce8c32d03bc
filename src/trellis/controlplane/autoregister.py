"""Auto-registration: an agent that joins with a WorkloadGroup token becomes a WorkloadEntry.

As istiod does for VMs: when a proxy authenticated by a group join token connects, trellisd
creates (or refreshes) the WorkloadEntry `<group>-<ip>` from the group's template and the
proxy's address; when the proxy has been disconnected for the grace period, it removes the
entry again. The removal is a reconcile over the store, so it also covers entries left behind
by a trellisd that stopped while their proxies were away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import cast

from trellis.api.networking import WorkloadEntry, WorkloadGroup
from trellis.controlplane.state import MeshState
from trellis.errors import TrellisError
from trellis.model.proxy import Proxy
from trellis.registry.workload_entries import (
    auto_registered_entry,
    auto_registration_group,
    same_registration,
)

log = logging.getLogger("trellisd")

DEFAULT_GRACE = timedelta(seconds=10)  # Istio's PILOT_WORKLOAD_ENTRY_GRACE_PERIOD default
RECONCILE_EVERY_S = 1.0


class JoinRefused(TrellisError):
    """A group join that cannot be honoured (no such group, another service account...)."""


class AutoRegistrar:
    """Creates entries for joining proxies and removes those of proxies gone for `grace`."""

    def __init__(
        self,
        state: MeshState,
        clock: Callable[[], datetime],
        grace: timedelta = DEFAULT_GRACE,
    ) -> None:
        self._state = state
        self._clock = clock
        self._grace = grace
        self._gone_since: dict[str, datetime] = {}  # proxy key -> first seen disconnected

    def join(self, proxy: Proxy, group_name: str) -> None:
        """Register `proxy` (already authenticated for `group_name`) as `<group>-<ip>`."""
        group = self._group(group_name, proxy.namespace)
        wanted_sa = group.spec.template.service_account or "default"
        if proxy.service_account != wanted_sa:
            raise JoinRefused(
                f"WorkloadGroup {proxy.namespace}/{group_name} runs as service account "
                f"{wanted_sa!r}, not {proxy.service_account!r}"
            )
        entry = auto_registered_entry(group, proxy.ip, connected_at=self._clock().isoformat())
        self._gone_since.pop(proxy.key, None)
        existing = self._entry(entry.name, entry.namespace)
        if existing is not None and auto_registration_group(existing) is None:
            raise JoinRefused(
                f"WorkloadEntry {entry.namespace}/{entry.name} exists and was not "
                "auto-registered; delete it or join from another address"
            )
        if existing is not None and same_registration(existing, entry):
            return
        self._state.apply([entry])
        log.info("event=workloadentry.registered entry=%s/%s", entry.namespace, entry.name)

    def reconcile(self, connected: Iterable[Proxy]) -> list[str]:
        """Delete auto-registered entries whose proxy has been away for the grace period;
        the `namespace/name` of each one deleted."""
        now = self._clock()
        present = {p.key for p in connected}
        due: list[WorkloadEntry] = []
        for entry in self._auto_entries():
            key = f"{entry.name}.{entry.namespace}"
            if key in present:
                self._gone_since.pop(key, None)
            elif now - self._gone_since.setdefault(key, now) >= self._grace:
                due.append(entry)
        if due:
            self._state.delete([e.key for e in due])
        for entry in due:
            self._gone_since.pop(f"{entry.name}.{entry.namespace}", None)
            log.info("event=workloadentry.unregistered entry=%s/%s", entry.namespace, entry.name)
        return [f"{e.namespace}/{e.name}" for e in due]

    async def reconcile_forever(self, connected: Callable[[], list[Proxy]]) -> None:
        """trellisd's loop: reconcile once a second (store work off the event loop)."""
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            try:
                await asyncio.to_thread(self.reconcile, connected())
            except TrellisError as err:
                log.warning("event=workloadentry.reconcile_failed error=%r", str(err))

    def _group(self, name: str, namespace: str) -> WorkloadGroup:
        for resource in self._state.resources(WorkloadGroup.KIND, namespace):
            if resource.name == name:
                return cast(WorkloadGroup, resource)
        raise JoinRefused(
            f"no WorkloadGroup {name} in namespace {namespace}: apply it before the agent joins"
        )

    def _entry(self, name: str, namespace: str) -> WorkloadEntry | None:
        for resource in self._state.resources(WorkloadEntry.KIND, namespace):
            if resource.name == name:
                return cast(WorkloadEntry, resource)
        return None

    def _auto_entries(self) -> list[WorkloadEntry]:
        return [
            cast(WorkloadEntry, r)
            for r in self._state.resources(WorkloadEntry.KIND)
            if auto_registration_group(r) is not None
        ]
