"""Leader election over a coordination.k8s.io/v1 Lease, for trellisd's singletons.

Several trellisd replicas watch and serve xDS alike; only the leader does what must happen
once (status writes, removing auto-registered WorkloadEntries). Same rules as client-go's
leaderelection: take a Lease that is free, expired or ours; renew it every retry period;
a write with a stale resourceVersion loses the race (409) and changes nothing; a leader that
cannot renew within the renew deadline stops its singletons; a clean stop releases the Lease
so a successor need not wait for it to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, ApiException

log = logging.getLogger("trellisd.kube")

Singleton = Callable[[], Awaitable[None]]
_MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    identity: str
    namespace: str = "istio-system"
    name: str = "trellisd-leader"
    lease_seconds: int = 15
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"


def _format(t: datetime) -> str:
    return t.astimezone(UTC).strftime(_MICROTIME)


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in (_MICROTIME, "%Y-%m-%dT%H:%M:%SZ"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    return None


def lease_is_free(spec: dict[str, Any], me: str, now: datetime) -> bool:
    """Ours, unheld, or not renewed within its duration (as read by our clock)."""
    holder = spec.get("holderIdentity") or ""
    if holder in ("", me):
        return True
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    duration = timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
    return renewed is None or renewed + duration <= now


class LeaderElector:
    """Holds (or waits for) one Lease; runs the singletons only while it is the leader."""

    def __init__(
        self,
        api: ApiClient,
        settings: LeaseSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self.settings = settings
        self._clock = clock
        self.is_leader = False
        self.leading = asyncio.Event()

    async def _call(self, method: str, body: Any = None, path: str | None = None) -> Any:
        return await self._api.call_api(
            path or self.settings.path,
            method,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            response_types_map={200: "object", 201: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        now = self._clock()
        try:
            lease = await self._call("GET")
        except ApiException as err:
            if err.status != 404:
                raise
            return await self._create(now)
        spec = dict(lease.get("spec") or {})
        me = self.settings.identity
        if not lease_is_free(spec, me, now):
            return False
        taking_over = spec.get("holderIdentity") != me
        spec.update(
            holderIdentity=me,
            leaseDurationSeconds=self.settings.lease_seconds,
            renewTime=_format(now),
        )
        if taking_over:
            spec["acquireTime"] = _format(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = spec
        try:
            await self._call("PUT", lease)
        except ApiException as err:
            if err.status == 409:
                return False  # someone else wrote it first
            raise
        return True

    async def _create(self, now: datetime) -> bool:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": {
                "holderIdentity": self.settings.identity,
                "leaseDurationSeconds": self.settings.lease_seconds,
                "acquireTime": _format(now),
                "renewTime": _format(now),
                "leaseTransitions": 0,
            },
        }
        collection = self.settings.path.rsplit("/", 1)[0]
        try:
            await self._call("POST", lease, path=collection)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    async def release(self) -> None:
        """Give the Lease up (holder cleared), so the next replica need not wait for expiry."""
        if not self.is_leader:
            return
        self._set_leader(False)
        try:
            lease = await self._call("GET")
            if (lease.get("spec") or {}).get("holderIdentity") == self.settings.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                await self._call("PUT", lease)
        except (ApiException, aiohttp.ClientError, OSError) as err:
            log.warning("event=lease-release-failed error=%r", str(err))

    def _set_leader(self, leader: bool) -> None:
        if leader != self.is_leader:
            log.info(
                "event=%s lease=%s/%s identity=%s",
                "leader-elected" if leader else "leader-lost",
                self.settings.namespace,
                self.settings.name,
                self.settings.identity,
            )
        self.is_leader = leader
        if leader:
            self.leading.set()
        else:
            self.leading.clear()

    async def run(self, singletons: Sequence[Singleton] = ()) -> None:
        """Elect and renew until cancelled; singletons run while leading; release on exit."""
        loop = asyncio.get_running_loop()
        last_renewed = float("-inf")
        tasks: list[asyncio.Task[None]] = []
        try:
            while True:
                try:
                    held = await self.try_acquire_or_renew()
                except (ApiException, aiohttp.ClientError, OSError) as err:
                    log.warning("event=lease-renew-failed error=%r", str(err))
                    held = self.is_leader and (
                        loop.time() - last_renewed < self.settings.renew_deadline_seconds
                    )
                else:
                    if held:
                        last_renewed = loop.time()
                self._set_leader(held)
                if held and not tasks:
                    tasks = [asyncio.create_task(_guarded(s)) for s in singletons]
                elif not held and tasks:
                    await _cancel(tasks)
                    tasks = []
                await asyncio.sleep(self.settings.retry_seconds)
        finally:
            await _cancel(tasks)
            await asyncio.shield(self.release())


async def _guarded(singleton: Singleton) -> None:
    try:
        await singleton()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("event=singleton-failed")


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
