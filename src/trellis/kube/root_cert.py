"""Leader-only: the mesh root in ConfigMap `istio-ca-root-cert` of every namespace.

Injected proxies mount it (kube/proxy_pod.py) to verify trellisd's xDS certificate, as
istiod's namespace controller provides it; a pod in a namespace without it cannot start.
System namespaces are skipped, as Istio does; a changed or deleted copy is restored on the
next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, ApiException

from trellis.kube.proxy_pod import ROOT_CERT_CONFIGMAP

log = logging.getLogger("trellisd.kube")

ROOT_CERT_KEY = "root-cert.pem"
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


def root_cert_config_map(namespace: str, root_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CERT_CONFIGMAP,
            "namespace": namespace,
            "labels": {"istio.io/config": "true", "app.kubernetes.io/managed-by": "trellisd"},
        },
        "data": {ROOT_CERT_KEY: root_pem.decode()},
    }


class RootCertPublisher:
    """Keeps one ConfigMap per namespace equal to the mesh root bundle."""

    def __init__(self, api: ApiClient, root_pem: bytes) -> None:
        self._api = api
        self._root_pem = root_pem

    async def publish(self, namespaces: Iterable[str]) -> int:
        """Create or repair the ConfigMap where needed; how many were written."""
        written = 0
        for namespace in sorted(set(namespaces) - SYSTEM_NAMESPACES):
            try:
                written += await self._publish_one(namespace)
            except ApiException as err:
                # 404/403 on a namespace being deleted: skip it this round
                log.warning(
                    "event=root-cert-publish-failed namespace=%s status=%s", namespace, err.status
                )
        return written

    async def _publish_one(self, namespace: str) -> int:
        wanted = root_cert_config_map(namespace, self._root_pem)
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        try:
            current = await self._call("GET", f"{path}/{ROOT_CERT_CONFIGMAP}")
        except ApiException as err:
            if err.status != 404:
                raise
            await self._call("POST", path, wanted)
            return 1
        if current.get("data") == wanted["data"]:
            return 0
        current["data"] = wanted["data"]
        await self._call("PUT", f"{path}/{ROOT_CERT_CONFIGMAP}", current)
        return 1

    async def run(self, namespaces: Any, every_seconds: float = 5.0) -> None:
        """Leader singleton: `namespaces()` returns the current namespace names."""
        while True:
            try:
                await self.publish(namespaces())
            except (aiohttp.ClientError, OSError) as err:
                log.warning("event=root-cert-publish-failed error=%r", str(err))
            await asyncio.sleep(every_seconds)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        return await self._api.call_api(
            path,
            method,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            response_types_map={200: "object", 201: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
