"""List+watch of one Kubernetes collection, as client-go's Reflector does it.

List, hand the handler the whole set (`replace`), then watch from the list's
resourceVersion: ADDED/MODIFIED -> `upsert`, DELETED -> `remove`, BOOKMARK advances the
version. A watch that ends (server timeout, dropped connection) resumes from the last
version seen; 410 Gone (the version was compacted away) and the periodic resync relist.
Errors back off exponentially. Built on kubernetes_asyncio's ApiClient at the REST level,
so one loop serves core kinds and custom resources alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio.client import ApiClient, ApiException

log = logging.getLogger("trellisd.kube")

KubeDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WatchTarget:
    """One collection: group ("" for core), version, plural and the kind of its items."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{root}/{self.plural}"


class Handler(Protocol):
    """Where a reflector's objects go (items always carry apiVersion and kind)."""

    def replace(self, objects: list[KubeDict]) -> None: ...

    def upsert(self, obj: KubeDict) -> None: ...

    def remove(self, obj: KubeDict) -> None: ...


@dataclass(frozen=True, slots=True)
class ReflectorSettings:
    resync_seconds: float = 300.0  # relist this often even when watches are healthy
    watch_timeout_seconds: int = 300  # asked of the server; it ends the watch, we resume
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class Backoff:
    """Exponential with jitter: initial, doubled per failure, capped; reset on success."""

    def __init__(self, settings: ReflectorSettings) -> None:
        self._settings = settings
        self._next = settings.backoff_initial

    def reset(self) -> None:
        self._next = self._settings.backoff_initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._settings.backoff_max)
        return delay * random.uniform(0.8, 1.0)


class Expired(Exception):
    """The watch's resourceVersion is gone (410): only a relist can continue."""


class Reflector:
    """Keeps a handler in step with one collection until cancelled."""

    def __init__(
        self,
        api: ApiClient,
        target: WatchTarget,
        handler: Handler,
        settings: ReflectorSettings | None = None,
    ) -> None:
        self._api = api
        self.target = target
        self._handler = handler
        self._settings = settings or ReflectorSettings()
        self._backoff = Backoff(self._settings)
        self.resource_version = ""
        self.lists = 0  # how many times it listed (first sync, 410, resync): for tests and logs
        self.synced = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._list()
                await self._watch_until_relist()
            except (ApiException, aiohttp.ClientError, OSError, ValueError) as err:
                delay = self._backoff.next_delay()
                log.warning(
                    "event=list-failed resource=%s error=%r retry_in=%.1fs",
                    self.target.plural,
                    _describe(err),
                    delay,
                )
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        body = await self._api.call_api(
            self.target.path,
            "GET",
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
        items = [self._typed(item) for item in body.get("items") or []]
        self._handler.replace(items)
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        self.lists += 1
        self._backoff.reset()
        self.synced.set()
        log.info(
            "event=listed resource=%s items=%d version=%s",
            self.target.plural,
            len(items),
            self.resource_version,
        )

    async def _watch_until_relist(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.resync_seconds
        while (remaining := deadline - loop.time()) > 0:
            timeout = max(1, min(self._settings.watch_timeout_seconds, int(remaining)))
            try:
                await self._watch_once(timeout)
                self._backoff.reset()
            except Expired:
                log.info("event=watch-expired resource=%s relist=true", self.target.plural)
                return
            except (ApiException, aiohttp.ClientError, OSError, ValueError) as err:
                delay = self._backoff.next_delay()
                log.warning(
                    "event=watch-failed resource=%s error=%r retry_in=%.1fs",
                    self.target.plural,
                    _describe(err),
                    delay,
                )
                await asyncio.sleep(delay)

    async def _watch_once(self, timeout: int) -> None:
        """One watch request from the last version, until the server ends it."""
        response = await self._api.call_api(
            self.target.path,
            "GET",
            query_params=[
                ("watch", "1"),
                ("resourceVersion", self.resource_version),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", str(timeout)),
            ],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=timeout + 30),
        )
        try:
            if response.status == 410:
                raise Expired()
            if response.status != 200:
                raise ApiException(status=response.status, reason=await response.text())
            async for line in response.content:
                if line.strip():
                    self._on_event(json.loads(line))
        finally:
            response.release()

    def _on_event(self, event: KubeDict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired()
            raise ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self._handler.upsert(self._typed(obj))
        elif kind == "DELETED":
            self._handler.remove(self._typed(obj))
        elif kind != "BOOKMARK":
            raise ValueError(f"unknown watch event type {kind!r}")
        if version:
            self.resource_version = str(version)

    def _typed(self, obj: KubeDict) -> KubeDict:
        """List items of built-in kinds come without apiVersion/kind: put them back."""
        return {**obj, "apiVersion": self.target.api_version, "kind": self.target.kind}


def _describe(err: BaseException) -> str:
    if isinstance(err, ApiException):
        return f"HTTP {err.status} {err.reason}"
    return str(err) or type(err).__name__
