"""The compile half of the control-plane bench, in this process: no sockets, no packing.

Rebuilds a MeshState from the populated store, then times one uncached compile of one sidecar
and the shared-cache compile of every type for all M bench proxies (what trellisd does per push).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.cp_fixture import MeshShape, workload_ip
from trellis.compiler import compile_all
from trellis.controlplane.state import MeshState
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.snapshot import MeshConfig
from trellis.model.xds_types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from trellis.store.sqlite import SqliteStore


def bench_proxy(shape: MeshShape, i: int) -> Proxy:
    labels = {"app": shape.service(i), "version": "v1"}
    return Proxy(
        ProxyType.SIDECAR, workload_ip(i, 0), f"{shape.service(i)}-0", shape.namespace(i), labels
    )


def compile_profile(db_path: Path, shape: MeshShape, proxies: int) -> dict[str, Any]:
    store = SqliteStore(db_path)
    try:
        state = MeshState(store=store, mesh=MeshConfig(), notify=lambda *_: None)
        started = time.perf_counter()
        state.rebuild()
        rebuild_s = time.perf_counter() - started
        started = time.perf_counter()
        config = compile_all(bench_proxy(shape, 0), state.push)
        one_s = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(proxies):
            for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
                state.generate(bench_proxy(shape, i), type_url)
        all_s = time.perf_counter() - started
    finally:
        store.close()
    return {
        "snapshot_rebuild_s": rebuild_s,
        "compile_one_proxy_s": one_s,
        "compile_all_proxies_cached_s": all_s,
        "clusters": len(config.clusters),
        "endpoints": len(config.endpoints),
        "listeners": len(config.listeners),
        "routes": len(config.routes),
    }
