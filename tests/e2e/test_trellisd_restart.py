"""The data plane outlives its control plane: proxies keep their last config and reconnect."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.e2e.meshctl import Mesh, eventually

pytestmark = pytest.mark.e2e


def _component(mesh: Mesh, name: str) -> dict[str, object]:
    status = json.loads(mesh.cli("status", "-o", "json").stdout)
    return next(c for c in status["components"] if c["name"] == name)


def _all_synced(mesh: Mesh) -> bool:
    proxies = json.loads(mesh.cli("proxy-status", "-o", "json").stdout)
    return len(proxies) >= 7 and all(p["synced"] for p in proxies)


def test_killing_trellisd_keeps_traffic_flowing_and_proxies_reconnect(bookinfo: Mesh) -> None:
    bookinfo.apply_file("virtual-service-all-v1.yaml")
    try:
        eventually(
            lambda: all(bookinfo.reviews_pod() == "reviews-v1" for _ in range(6)), what="v1 routing"
        )
        eventually(lambda: _all_synced(bookinfo), what="all proxies synced")
        before = _component(bookinfo, "trellisd")
        os.kill(int(before["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        # Envoy keeps serving its last good config while trellisd is gone and coming back.
        assert {bookinfo.reviews_pod() for _ in range(30)} == {"reviews-v1"}
        eventually(
            lambda: _component(bookinfo, "trellisd")["pid"] != before["pid"],
            what="the supervisor to restart trellisd",
        )
        eventually(lambda: _all_synced(bookinfo), timeout=40, what="proxies to reconnect and sync")
        # The restarted trellisd serves the same routing from its store.
        assert {bookinfo.reviews_pod() for _ in range(20)} == {"reviews-v1"}
    finally:
        bookinfo.delete_file("virtual-service-all-v1.yaml")
