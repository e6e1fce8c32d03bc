"""Small helpers for tests: write to the fake API server through kubernetes_asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio.client import ApiClient


async def call(api: ApiClient, method: str, path: str, body: Any = None) -> Any:
    return await api.call_api(
        path,
        method,
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body,
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


async def create(api: ApiClient, collection: str, obj: dict[str, Any]) -> Any:
    return await call(api, "POST", collection, obj)


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}},
    }


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until `check()` holds (a readiness poll, not a sleep): fail after `timeout`."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
