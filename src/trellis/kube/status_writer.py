"""Leader-only status writes: an Istio resource trellisd rejected says so in its own status.

`kubectl get vs reviews -o yaml` then shows why this version is not in effect (condition
`Reconciled=False`, reason `Invalid`, the validation message; the last valid version, if
any, stays in effect); once fixed the condition turns `True`. Written through the `/status` subresource with the object's
resourceVersion: a conflict is retried on the next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, ApiException

from trellis.kube.config_sync import ConfigSync
from trellis.kube.reflector import WatchTarget

log = logging.getLogger("trellisd.kube")

Key = tuple[str, str, str]  # (kind, namespace, name)


def reconciled_condition(problem: str | None, now: datetime) -> dict[str, str]:
    return {
        "type": "Reconciled",
        "status": "False" if problem else "True",
        "reason": "Invalid" if problem else "Accepted",
        "message": problem or "in effect",
        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class StatusWriter:
    """Writes conditions for resources whose rejection state changed since the last round."""

    def __init__(
        self,
        api: ApiClient,
        syncs: Mapping[str, ConfigSync],
        targets: Mapping[str, WatchTarget],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._syncs = syncs
        self._targets = targets
        self._clock = clock
        self.written: dict[Key, str | None] = {}  # what each resource's status says now

    def _wanted(self) -> dict[Key, str | None]:
        rejected = {k: v for sync in self._syncs.values() for k, v in sync.rejected.items()}
        wanted: dict[Key, str | None] = dict(rejected)
        for key, said in self.written.items():
            if key not in rejected and said is not None:
                wanted[key] = None  # fixed (or gone): say it is in effect
        return wanted

    async def write_round(self) -> int:
        """One pass; how many statuses were written."""
        count = 0
        for key, problem in self._wanted().items():
            if self.written.get(key, "unset") == problem:
                continue
            if await self._write(key, problem):
                count += 1
        return count

    async def _write(self, key: Key, problem: str | None) -> bool:
        kind, namespace, name = key
        target = self._targets[kind]
        path = (
            f"/apis/{target.group}/{target.version}/namespaces/{namespace}/{target.plural}/{name}"
        )
        try:
            obj = await self._call("GET", path)
            status = dict(obj.get("status") or {})
            others = [c for c in status.get("conditions") or [] if c.get("type") != "Reconciled"]
            status["conditions"] = [*others, reconciled_condition(problem, self._clock())]
            obj["status"] = status
            await self._call("PUT", f"{path}/status", obj)
        except ApiException as err:
            if err.status == 404:
                self.written.pop(key, None)  # deleted: nothing to say
                return False
            if err.status == 409:
                return False  # changed meanwhile: next round
            raise
        self.written[key] = problem
        return True

    async def run(self, every_seconds: float = 1.0) -> None:
        while True:
            try:
                await self.write_round()
            except (ApiException, aiohttp.ClientError, OSError) as err:
                log.warning("event=status-write-failed error=%r", str(err))
            await asyncio.sleep(every_seconds)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        return await self._api.call_api(
            path,
            method,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
