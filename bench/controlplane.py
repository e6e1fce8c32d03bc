"""Control-plane benchmark: compile + push time for N services and M connected proxies.

    python bench/controlplane.py                      # 100, 1 000 and 5 000 services x 50 proxies
    python bench/controlplane.py --services 1000 --proxies 50 --json

For each size: the mesh (bench/cp_fixture.py) is written into a fresh store, a real trellisd
process serves it, M light ADS clients (trellis.xds.lightclient, ACKing like Envoy) connect, and
optionally real Envoys too. Measured: the in-process compile, the initial full push, the time from
`apply` of one changed VirtualService until each proxy has the new routes (convergence), the same
for an endpoint change (EDS-only push), trellisd's CPU and RSS, and bytes pushed per proxy;
then, with one Sidecar per namespace (`./*` + `istio-system/*`), the full push and bytes per
proxy again for freshly connected proxies (`bytes_per_proxy_scoped`; `--no-sidecar-scope`
skips it).
The last stdout line is one JSON object (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `trellis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    cpu_seconds,
    emit_json,
    exit_on_sigterm,
    free_port,
    log,
    machine,
    memory_mb,
    percentile,
    table,
)
from bench.cp_clients import CountingClient, Trellisd, proxy_client
from bench.cp_fixture import (
    MeshShape,
    populate,
    sidecar_docs,
    virtual_service,
    workload_ip,
    yaml_of,
)
from bench.cp_profile import compile_profile
from trellis.model.xds_types import CLUSTER, ENDPOINT, LISTENER, ROUTE

DEFAULT_SIZES = (100, 1000, 5000)
ALL_TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/controlplane.py", description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, action="append", help="mesh size (repeatable)")
    p.add_argument("--proxies", type=int, default=50, help="connected light ADS clients")
    p.add_argument("--namespaces", type=int, default=5, help="namespaces the services spread over")
    p.add_argument("--repeats", type=int, default=5, help="changes measured per kind")
    p.add_argument("--connect-batch", type=int, default=10, help="clients connecting at once")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for any one step")
    p.add_argument("--profile-trellisd", type=Path, help="write trellisd's cProfile stats here")
    p.add_argument("--trellisd-log-level", default="WARNING")
    p.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    p.add_argument(
        "--no-sidecar-scope",
        dest="sidecar_scope",
        action="store_false",
        help="skip the second full push under a Sidecar per namespace (bytes_per_proxy_scoped)",
    )
    args = p.parse_args(argv)
    args.services = args.services or list(DEFAULT_SIZES)
    if min(args.services) < 1 or args.proxies < 1 or args.repeats < 1:
        p.error("--services, --proxies and --repeats must be positive")
    if args.proxies > min(args.services):
        p.error("--proxies must not exceed --services (each proxy is one service's sidecar)")
    return args


async def _all_types_at(client: CountingClient, version: str, timeout: float) -> float:
    arrivals = [await client.wait_for_version(t, version, timeout) for t in ALL_TYPES]
    return max(arrivals)


async def _wait_synced(trellisd: Trellisd, expected: int, timeout: float) -> None:
    """Until every connected proxy has ACKed all it was sent (trellis proxy-status)."""
    deadline = time.monotonic() + timeout
    while True:
        body = await trellisd.api.acall("GET", "/proxy-status", timeout=timeout)
        proxies = body["proxies"]
        if len(proxies) >= expected and all(p["synced"] for p in proxies):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"proxies not synced after {timeout}s")
        await asyncio.sleep(0.05)


class Recorder:
    """Samples of one kind of change: per-proxy latency, trellisd CPU and bytes per proxy."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.all_acked: list[float] = []
        self.cpu: list[float] = []
        self.bytes: list[float] = []

    def summary(self) -> dict[str, float]:
        return {
            "p50_s": percentile(self.latencies, 50),
            "p99_s": percentile(self.latencies, 99),
            "all_acked_p50_s": percentile(self.all_acked, 50),
            "all_acked_max_s": max(self.all_acked, default=0.0),
            "cpu_s_per_change": sum(self.cpu) / max(1, len(self.cpu)),
            "bytes_per_proxy": sum(self.bytes) / max(1, len(self.bytes)),
        }


async def _measure_change(
    trellisd: Trellisd,
    clients: list[CountingClient],
    recorder: Recorder,
    change: Any,
    type_url: str,
    timeout: float,
) -> None:
    """Make one change, then time until every client holds the new version of `type_url`."""
    sent = [c.bytes_received for c in clients]
    cpu0, t0 = cpu_seconds(trellisd.pid), time.monotonic()
    await change()
    version = await trellisd.version()
    arrivals = await asyncio.gather(
        *(c.wait_for_version(type_url, version, timeout) for c in clients)
    )
    latencies = [a - t0 for a in arrivals]
    await _wait_synced(trellisd, len(clients), timeout)
    recorder.cpu.append(cpu_seconds(trellisd.pid) - cpu0)
    recorder.latencies += latencies
    recorder.all_acked.append(max(latencies))
    recorder.bytes.append(
        sum(c.bytes_received - s for c, s in zip(clients, sent, strict=True)) / len(clients)
    )


async def _changes(
    trellisd: Trellisd, clients: list[CountingClient], shape: MeshShape, args: argparse.Namespace
) -> tuple[Recorder, Recorder]:
    routes, endpoints = Recorder(), Recorder()
    for r in range(args.repeats):
        doc = virtual_service(shape, 0, v1_weight=80 if r % 2 == 0 else 90)

        async def apply_vs(doc: dict[str, Any] = doc) -> None:
            await trellisd.api.acall("POST", "/apply", {"yaml": yaml_of(doc)}, timeout=args.timeout)

        await _measure_change(trellisd, clients, routes, apply_vs, ROUTE, args.timeout)
    for r in range(args.repeats):
        ip = workload_ip(shape.services + r, 0)  # a fresh address beyond every real workload

        async def move_endpoint(ip: str = ip) -> None:
            body = {"ip": ip, "labels": {"app": shape.service(0), "version": "v2"}, "ports": [9080]}
            path = f"/workloads/{shape.namespace(0)}/{shape.service(0)}-2"
            await trellisd.api.acall("PUT", path, body, timeout=args.timeout)

        await _measure_change(trellisd, clients, endpoints, move_endpoint, ENDPOINT, args.timeout)
    return routes, endpoints


async def run_size(services: int, args: argparse.Namespace) -> dict[str, Any]:
    shape = MeshShape(services, namespaces=args.namespaces)
    result: dict[str, Any] = {"services": services, "proxies": args.proxies}
    with tempfile.TemporaryDirectory(prefix="trellis-bench-cp-") as tmp:
        state_dir = Path(tmp)
        started = time.perf_counter()
        populate(state_dir / "config.db", shape)
        result["populate_s"] = time.perf_counter() - started
        log(f"[{services}] store populated in {result['populate_s']:.1f}s; compiling in-process")
        result["compile"] = compile_profile(state_dir / "config.db", shape, args.proxies)
        log(f"[{services}] compiled: {result['compile']}; starting trellisd")
        profile = args.profile_trellisd
        if profile is not None and len(args.services) > 1:
            profile = profile.with_name(f"{profile.stem}-{services}{profile.suffix}")
        trellisd = Trellisd(
            state_dir, free_port(), profile=profile, log_level=args.trellisd_log_level
        )
        clients: list[CountingClient] = []
        try:
            started = time.perf_counter()
            trellisd.start()
            version = await trellisd.wait_ready(args.timeout)
            result["trellisd_start_s"] = time.perf_counter() - started
            clients = [
                proxy_client(f"127.0.0.1:{trellisd.xds_port}", shape, i)
                for i in range(args.proxies)
            ]
            result["initial"] = await _initial_push(trellisd, clients, version, args)
            log(f"[{services}] initial push: {result['initial']['all_synced_s']:.2f}s; changes")
            routes, endpoints = await _changes(trellisd, clients, shape, args)
            result["route_change"], result["endpoint_change"] = (
                routes.summary(),
                endpoints.summary(),
            )
            if args.sidecar_scope:
                clients = await _scoped_push(trellisd, clients, shape, args, result)
            result["convergence_p50_s"] = result["route_change"]["p50_s"]
            result["convergence_p99_s"] = result["route_change"]["p99_s"]
            result.update(memory_mb(trellisd.pid))
            result["trellisd_cpu_s_total"] = cpu_seconds(trellisd.pid)
        except BaseException:
            log_path = state_dir / "trellisd.log"
            if log_path.exists():
                kept = Path(tempfile.gettempdir()) / f"trellis-bench-trellisd-{services}.log"
                kept.write_bytes(log_path.read_bytes())
                log(f"trellisd log kept in {kept}; tail:\n{log_path.read_text()[-3000:]}")
            raise
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
            trellisd.stop()
    return result


async def _initial_push(
    trellisd: Trellisd, clients: list[CountingClient], version: str, args: argparse.Namespace
) -> dict[str, float]:
    """Connect the clients `--connect-batch` at a time (proxies start over time, and 50 fresh
    5 000-service streams at once overrun gRPC's buffers in one client process); time until
    each batch holds all four types: the full push of a batch, and of all of them."""
    cpu0, t0 = cpu_seconds(trellisd.pid), time.monotonic()
    per_proxy: list[float] = []
    for first in range(0, len(clients), args.connect_batch):
        batch = clients[first : first + args.connect_batch]
        started = time.monotonic()
        await asyncio.gather(*(c.start() for c in batch))
        done = await asyncio.gather(*(_all_types_at(c, version, args.timeout) for c in batch))
        per_proxy += [d - started for d in done]
        await _wait_synced(trellisd, first + len(batch), args.timeout)
    return {
        "all_synced_s": time.monotonic() - t0,
        "batch": args.connect_batch,
        "p50_s": percentile(per_proxy, 50),
        "p99_s": percentile(per_proxy, 99),
        "cpu_s": cpu_seconds(trellisd.pid) - cpu0,
        "bytes_per_proxy": sum(c.bytes_received for c in clients) / len(clients),
    }


async def _scoped_push(
    trellisd: Trellisd,
    clients: list[CountingClient],
    shape: MeshShape,
    args: argparse.Namespace,
    result: dict[str, Any],
) -> list[CountingClient]:
    """Disconnect the proxies, apply one Sidecar per namespace, connect the same proxies
    afresh and measure their full push under that scope (`result["scoped"]`). Returns the
    new clients (the caller closes them)."""
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    docs = "\n---\n".join(yaml_of(d) for d in sidecar_docs(shape))
    await trellisd.api.acall("POST", "/apply", {"yaml": docs}, timeout=args.timeout)
    version = await trellisd.version()
    fresh = [proxy_client(f"127.0.0.1:{trellisd.xds_port}", shape, i) for i in range(args.proxies)]
    result["scoped"] = await _initial_push(trellisd, fresh, version, args)
    log(f"[{shape.services}] scoped push: {result['scoped']['bytes_per_proxy'] / 1e6:.3f} MB/proxy")
    return fresh


def report(results: list[dict[str, Any]]) -> str:
    headers = [
        "services", "proxies", "compile 1 proxy s", "compile all proxies s",
        "full push p50 s", "all synced s", "full push CPU s", "MB/proxy", "MB/proxy scoped", "VS change p50 s", "p99 s", "EDS change p50 s", "p99 s",
        "trellisd RSS MB",
    ]  # fmt: skip
    rows = [
        [
            r["services"],
            r["proxies"],
            r["compile"]["compile_one_proxy_s"],
            r["compile"]["compile_all_proxies_cached_s"],
            r["initial"]["p50_s"],
            r["initial"]["all_synced_s"],
            r["initial"]["cpu_s"],
            r["initial"]["bytes_per_proxy"] / 1e6,
            r["scoped"]["bytes_per_proxy"] / 1e6 if "scoped" in r else "-",
            r["route_change"]["p50_s"],
            r["route_change"]["p99_s"],
            r["endpoint_change"]["p50_s"],
            r["endpoint_change"]["p99_s"],
            r["rss_mb"],
        ]
        for r in results
    ]
    return table(headers, rows)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    return summary([await run_size(n, args) for n in args.services])


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON contract: every size in `sizes`, the largest one's headline figures on top."""
    last = results[-1]
    return {
        "bench": "controlplane",
        "machine": machine(),
        "argv": sys.argv[1:],
        "sizes": results,
        "services": last["services"],
        "proxies": last["proxies"],
        "convergence_p50_s": last["convergence_p50_s"],
        "convergence_p99_s": last["convergence_p99_s"],
        "eds_push_p50_s": last["endpoint_change"]["p50_s"],
        "eds_push_p99_s": last["endpoint_change"]["p99_s"],
        "full_push_s": last["initial"]["all_synced_s"],
        "full_push_cpu_s": last["initial"]["cpu_s"],
        "bytes_per_proxy": last["initial"]["bytes_per_proxy"],
        # Full push under one Sidecar per namespace (`./*`, `istio-system/*`); None if skipped.
        "bytes_per_proxy_scoped": last["scoped"]["bytes_per_proxy"] if "scoped" in last else None,
        "rss_mb": last["rss_mb"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    exit_on_sigterm()
    result = asyncio.run(main_async(args))
    if not args.json:
        print(report(result["sizes"]))
    emit_json(result)


if __name__ == "__main__":
    main()
