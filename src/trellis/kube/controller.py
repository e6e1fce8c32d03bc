"""trellisd's Kubernetes controller: Istio CRs -> config store, core kinds -> registry.

One Reflector per collection (list+watch, resync, backoff, relist on 410), feeding
ConfigSync (Istio kinds, through MeshState and its validation) or the KubeRegistry (a
registry source MeshState reads at each rebuild). Registry changes arrive in bursts (a
rollout touches many Pods), so they are coalesced: one rebuild after `debounce_seconds`
of quiet (or `debounce_max_seconds` at most). A Lease elects the replica that runs the
singletons (status writes for rejected config, and those trellisd passes in).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from kubernetes_asyncio.client import ApiClient

from trellis.api.kinds import KINDS
from trellis.controlplane.state import MeshState
from trellis.kube.config_sync import ConfigSync
from trellis.kube.crds import ISTIO_KINDS
from trellis.kube.kube_registry import KubeRegistry
from trellis.kube.leader import LeaderElector, LeaseSettings, Singleton
from trellis.kube.reflector import Handler, Reflector, ReflectorSettings, WatchTarget
from trellis.kube.status_writer import StatusWriter
from trellis.model.snapshot import Change

log = logging.getLogger("trellisd.kube")

CORE_TARGETS = {
    "namespaces": WatchTarget("", "v1", "namespaces", "Namespace"),
    "services": WatchTarget("", "v1", "services", "Service"),
    "pods": WatchTarget("", "v1", "pods", "Pod"),
    "slices": WatchTarget("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
}


def istio_targets() -> list[WatchTarget]:
    """Every Istio kind Trellis compiles, watched at v1 (served by all Istio CRDs it ships)."""
    return [
        WatchTarget(k.group, "v1" if "v1" in k.versions else k.versions[0], k.plural, k.kind)
        for k in ISTIO_KINDS
        if k.kind in KINDS
    ]


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    namespace: str = "istio-system"  # trellisd's own namespace: its Lease lives there
    identity: str = field(default_factory=socket.gethostname)
    reflector: ReflectorSettings = field(default_factory=ReflectorSettings)
    lease_seconds: int = 15
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0
    debounce_seconds: float = 0.1
    debounce_max_seconds: float = 1.0
    domain: str = "cluster.local"

    def lease(self) -> LeaseSettings:
        return LeaseSettings(
            identity=self.identity,
            namespace=self.namespace,
            lease_seconds=self.lease_seconds,
            renew_deadline_seconds=self.renew_deadline_seconds,
            retry_seconds=self.retry_seconds,
        )


class KubeController:
    """Keeps MeshState in step with one cluster until cancelled."""

    def __init__(
        self, api: ApiClient, state: MeshState, settings: ControllerSettings | None = None
    ) -> None:
        self.settings = settings or ControllerSettings()
        self._state = state
        self._dirty = asyncio.Event()
        self.registry = KubeRegistry(self._dirty.set, domain=self.settings.domain)
        self.config = {t.kind: ConfigSync(state, t.kind) for t in istio_targets()}
        handlers: list[tuple[WatchTarget, Handler]] = [
            (CORE_TARGETS["namespaces"], self.registry.namespaces),
            (CORE_TARGETS["services"], self.registry.services),
            (CORE_TARGETS["slices"], self.registry.slices),
            (CORE_TARGETS["pods"], self.registry.pods),
            *((t, self.config[t.kind]) for t in istio_targets()),
        ]
        self.reflectors = [Reflector(api, t, h, self.settings.reflector) for t, h in handlers]
        self.elector = LeaderElector(api, self.settings.lease())
        self.status = StatusWriter(api, self.config, {t.kind: t for t in istio_targets()})
        state.registry_sources.append(self.registry.snapshot)

    async def run(self, singletons: Sequence[Singleton] = ()) -> None:
        async with asyncio.TaskGroup() as group:
            for reflector in self.reflectors:
                group.create_task(reflector.run(), name=f"watch-{reflector.target.plural}")
            group.create_task(self._rebuild_forever(), name="kube-registry-rebuild")
            leader_only = [*singletons, self.status.run]
            group.create_task(self.elector.run(leader_only), name="leader-election")

    async def wait_synced(self) -> None:
        """Until every collection has been listed once."""
        for reflector in self.reflectors:
            await reflector.synced.wait()

    async def _rebuild_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            deadline = loop.time() + self.settings.debounce_max_seconds
            while True:  # quiet period, bounded
                self._dirty.clear()
                quiet = min(self.settings.debounce_seconds, deadline - loop.time())
                if quiet <= 0:
                    break
                try:
                    await asyncio.wait_for(self._dirty.wait(), quiet)
                except TimeoutError:
                    break
            self._dirty.clear()
            self._state.rebuild(Change.SERVICES | Change.ENDPOINTS)
