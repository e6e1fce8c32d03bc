"""The console's view of the running mesh: trellisd's and the runtime's local APIs.

The same calls the CLI makes (`trellis apply`, `proxy-status`, `proxy-config`, `ps`), so the
console never learns a second way to read or change the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from trellis.console.metrics_source import ScrapeTarget
from trellis.errors import TrellisError
from trellis.runtime.client import LocalApi
from trellis.runtime.layout import Layout, MeshInfo


@dataclass(frozen=True, slots=True)
class MeshClient:
    layout: Layout

    @property
    def trellisd(self) -> LocalApi:
        return LocalApi(self.layout.trellisd_socket, "trellisd")

    @property
    def runtime(self) -> LocalApi:
        return LocalApi(self.layout.runtime_socket, "the Trellis runtime")

    def info(self) -> MeshInfo | None:
        return MeshInfo.load(self.layout.mesh_file)

    async def workloads(self) -> list[dict[str, Any]]:
        """trellisd's registry records (name, namespace, ip, labels, hasSidecar, ports)."""
        return list((await self.trellisd.acall("GET", "/workloads", timeout=10))["items"])

    async def running(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The runtime's processes by (namespace, name); empty when no local runtime runs."""
        try:
            items = (await self.runtime.acall("GET", "/workloads", timeout=10))["items"]
        except TrellisError:
            return {}
        return {(i["namespace"], i["name"]): i for i in items}

    async def resources(self, kind: str | None = None, namespace: str | None = None) -> list[Any]:
        query = urlencode([(k, v) for k, v in (("kind", kind), ("namespace", namespace)) if v])
        path = "/resources" + (f"?{query}" if query else "")
        return list((await self.trellisd.acall("GET", path, timeout=10))["items"])

    async def proxy_statuses(self) -> list[dict[str, Any]]:
        try:
            return list((await self.trellisd.acall("GET", "/proxy-status", timeout=10))["proxies"])
        except TrellisError:
            return []

    async def proxy_config(self, namespace: str, name: str, kind: str) -> list[Any]:
        path = "/proxy-config/" + "/".join(quote(part, safe="") for part in (namespace, name, kind))
        body = await self.trellisd.acall("GET", path)
        return list(body.get("items", []))

    async def apply(self, text: str, namespace: str) -> Any:
        return await self.trellisd.acall("POST", "/apply", {"yaml": text, "namespace": namespace})

    async def delete(self, kind: str, namespace: str, name: str) -> Any:
        body = {"kind": kind, "namespace": namespace, "name": name}
        return await self.trellisd.acall("POST", "/delete", body)

    async def scrape_targets(self) -> list[dict[str, Any]]:
        """Every proxy's stats address, from the runtime (the list its Prometheus scrapes)."""
        try:
            return list((await self.runtime.acall("GET", "/scrape-targets", timeout=10))["items"])
        except TrellisError:
            return []

    async def trellisd_up(self) -> bool:
        try:
            await self.trellisd.acall("GET", "/healthz", timeout=3)
        except TrellisError:
            return False
        return True


def sync_state(status: dict[str, Any] | None) -> str:
    """Kiali/istioctl words for one proxy's xDS state."""
    if status is None:
        return "NOT CONNECTED"
    if any(t.get("nacked") for t in status.get("xds", {}).values()):
        return "NACK"
    return "SYNCED" if status.get("synced") else "STALE"


def statuses_by_workload(statuses: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(namespace, name) -> sync state, from proxy-status's `NAME.NAMESPACE` keys."""
    out: dict[tuple[str, str], str] = {}
    for s in statuses:
        name, _, namespace = str(s.get("proxy", "")).partition(".")
        out[(namespace, name)] = sync_state(s)
    return out


@dataclass(frozen=True, slots=True)
class ScrapeTargetsFromRuntime:
    """The embedded scraper's target list: asked of the runtime on every cycle."""

    mesh: MeshClient

    async def __call__(self) -> list[ScrapeTarget]:
        return [
            ScrapeTarget(str(i["namespace"]), str(i["name"]), str(i["address"]))
            for i in await self.mesh.scrape_targets()
        ]
