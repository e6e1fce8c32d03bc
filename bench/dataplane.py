"""Data-plane benchmark: what Trellis's two sidecars add to a request, against baselines.

    python bench/dataplane.py            # 3 runs x 10 s per row and load (about 10 minutes)
    python bench/dataplane.py --quick    # 2 runs x 2 s (under 3 minutes)
    python bench/dataplane.py --json     # only the JSON line on stdout

Rows, all with the same upstream (bench/dp_upstream.py, 1 KiB bodies) and the same wrk load
(16 connections; 100 rps, 1000 rps and max rate): client -> server direct on loopback; through
one and two hand-written Envoys on loopback; pod -> pod without sidecars (the mesh's bridge and
namespaces); and Trellis (client sidecar -> server sidecar, plain HTTP, iptables capture).
Runs are interleaved row by row so drift hits every row alike; each figure is the median of
the runs, with min..max, and a ratio against the direct row of the same run. Needs root
(network namespaces) and Debian's wrk. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `trellis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO,
    Spread,
    cpu_seconds,
    emit_json,
    exit_on_sigterm,
    free_port,
    log,
    machine,
    table,
)
from bench.dp_envoy import EnvoyChain
from bench.dp_mesh import CLIENT, PLAIN_CLIENT, SERVER, BenchMesh
from bench.dp_wrk import LoadResult, LoadSpec, parse_output, write_script, wrk_argv, wrk_path

DIRECT, ONE_ENVOY, TWO_ENVOYS, PODS, TRELLIS = (
    "direct",
    "1 Envoy",
    "2 Envoys",
    "pod->pod, no sidecars",
    "Trellis 2 sidecars",
)
HEADLINE_RATE = 1000  # the load trellis_vs_envoy_p99_ratio is taken at


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/dataplane.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 runs x 2 s: done in under 3 minutes")
    p.add_argument("--repeats", type=int, help="runs per row and load (default 3; quick 2)")
    p.add_argument("--duration", type=float, help="seconds per run (default 10; quick 2)")
    p.add_argument("--rates", default="100,1000,0", help="loads in rps, 0 = max rate")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (16 or 64)")
    p.add_argument("--no-mesh", action="store_true", help="skip the Trellis and pod rows")
    p.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.rates = [int(r) for r in str(args.rates).split(",") if r.strip()]
    if args.repeats < 1 or args.duration <= 0 or not args.rates:
        p.error("--repeats and --duration must be positive and --rates non-empty")
    return args


def mode_name(rate: int) -> str:
    return f"{rate} rps" if rate else "max"


@dataclass(frozen=True, slots=True)
class Row:
    """Where one row's load comes from: a URL, an argv wrapper (netns) and its proxies' PIDs."""

    name: str
    url: str
    wrap: Callable[[list[str]], list[str]]
    proxy_pids: Callable[[], list[int]]


@dataclass
class Sample:
    load: LoadResult
    proxy_cpu_s: float
    duration_s: float


def run_load(row: Row, spec: LoadSpec, script: Path) -> Sample:
    pids = row.proxy_pids()
    before = sum(cpu_seconds(p) for p in pids)
    argv = row.wrap(wrk_argv(spec, script))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=spec.duration_s + 60)
    cpu = sum(cpu_seconds(p) for p in pids) - before
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed for {row.name}: {proc.stdout[-1000:]}{proc.stderr[-1000:]}")
    return Sample(parse_output(proc.stdout), cpu, spec.duration_s)


def summarize(samples: list[Sample]) -> dict[str, Any]:
    loads = [s.load for s in samples]
    cpu_pct = Spread.of(100 * s.proxy_cpu_s / s.duration_s for s in samples)
    cpu_us = Spread.of(1e6 * s.proxy_cpu_s / max(1, s.load.requests) for s in samples)
    return {
        "rps": Spread.of(x.rps for x in loads).as_dict(),
        "p50_ms": Spread.of(x.p50_ms for x in loads).as_dict(),
        "p90_ms": Spread.of(x.p90_ms for x in loads).as_dict(),
        "p99_ms": Spread.of(x.p99_ms for x in loads).as_dict(),
        "errors": sum(x.errors for x in loads),
        "requests": sum(x.requests for x in loads),
        "proxy_cpu_pct": cpu_pct.as_dict(),
        "proxy_cpu_us_per_request": cpu_us.as_dict(),
        "runs": [x.as_dict() for x in loads],
    }


def add_ratios(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Every figure as a multiple of the direct row's, same load, same run."""
    for mode, direct in results[DIRECT].items():
        for row in results.values():
            figures = row[mode]
            figures["vs_direct"] = {
                k: _ratio(figures[k]["median"], direct[k]["median"])
                for k in ("rps", "p50_ms", "p90_ms", "p99_ms")
            }


def _ratio(value: float, base: float) -> float:
    return value / base if base else 0.0


def host_rows(upstream_port: int, chains: dict[int, EnvoyChain]) -> list[Row]:
    def same(argv: list[str]) -> list[str]:
        return argv

    rows = [Row(DIRECT, f"http://127.0.0.1:{upstream_port}/", same, list)]
    for hops, name in ((1, ONE_ENVOY), (2, TWO_ENVOYS)):
        chain = chains[hops]
        rows.append(Row(name, f"http://127.0.0.1:{chain.port}/", same, lambda c=chain: c.pids))
    return rows


def mesh_rows(mesh: BenchMesh) -> list[Row]:
    def in_pod(workload: str) -> Callable[[list[str]], list[str]]:
        return lambda argv: mesh.exec_argv(workload, argv)

    sidecars = lambda: mesh.envoy_pids(CLIENT, SERVER)  # noqa: E731 - re-read each run
    return [
        Row(PODS, mesh.plain_url, in_pod(PLAIN_CLIENT), list),
        Row(TRELLIS, mesh.mesh_url, in_pod(CLIENT), sidecars),
    ]


def measure(rows: list[Row], args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    scripts = {rate: write_script(workdir, rate) for rate in args.rates}
    samples: dict[str, dict[str, list[Sample]]] = {r.name: {} for r in rows}
    for row in rows:  # warm-up: connections, first-request paths
        run_load(
            row,
            LoadSpec(row.url, 200, 1.0, args.connections),
            scripts.get(200, write_script(workdir, 200)),
        )
    for repeat in range(args.repeats):
        for rate in args.rates:
            for row in rows:
                spec = LoadSpec(row.url, rate, args.duration, args.connections)
                sample = run_load(row, spec, scripts[rate])
                samples[row.name].setdefault(mode_name(rate), []).append(sample)
                log(f"run {repeat + 1}/{args.repeats} {mode_name(rate):>8} {row.name:<22} "
                    f"{sample.load.rps:8.0f} rps  p50 {sample.load.p50_ms:.2f} ms  "
                    f"p99 {sample.load.p99_ms:.2f} ms")  # fmt: skip
    results = {row: {m: summarize(s) for m, s in modes.items()} for row, modes in samples.items()}
    add_ratios(results)
    return results


def report(results: dict[str, Any]) -> str:
    headers = ["row", "load", "rps", "p50 ms", "p90 ms", "p99 ms", "rps x", "p50 x", "p99 x",
               "proxy CPU %", "proxy CPU us/req"]  # fmt: skip
    rows = []
    for name, modes in results.items():
        for mode, f in modes.items():
            rows.append([
                name, mode, _spread(f["rps"], 0), _spread(f["p50_ms"]), _spread(f["p90_ms"]),
                _spread(f["p99_ms"]), f["vs_direct"]["rps"], f["vs_direct"]["p50_ms"],
                f["vs_direct"]["p99_ms"], f["proxy_cpu_pct"]["median"],
                f["proxy_cpu_us_per_request"]["median"],
            ])  # fmt: skip
    return table(headers, rows)


def _spread(s: dict[str, float], digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk_path()  # fail early with the install hint
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trellis-bench-dp-") as tmp:
        workdir = Path(tmp)
        upstream_port = free_port()
        upstream_argv = [sys.executable, str(REPO / "bench" / "dp_upstream.py")]
        upstream = subprocess.Popen(
            [*upstream_argv, "--host", "127.0.0.1", "--port", str(upstream_port)]
        )
        chains = {hops: EnvoyChain(upstream_port, hops, workdir) for hops in (1, 2)}
        mesh: BenchMesh | None = None
        try:
            for chain in chains.values():
                chain.start()
            rows = host_rows(upstream_port, chains)
            if not args.no_mesh:
                mesh = BenchMesh()
                mesh.__enter__()
                rows += mesh_rows(mesh)
            results = measure(rows, args, workdir)
        finally:
            if mesh is not None:
                mesh.__exit__(None, None, None)
            for chain in chains.values():
                chain.stop()
            upstream.terminate()
            upstream.wait(timeout=10)
    return {"results": results, "elapsed_s": time.monotonic() - started}


def headline(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if TRELLIS not in results:
        return out
    by_mode = {
        mode: _ratio(f["p99_ms"]["median"], results[TWO_ENVOYS][mode]["p99_ms"]["median"])
        for mode, f in results[TRELLIS].items()
    }
    headline_mode = mode_name(HEADLINE_RATE)
    out["trellis_vs_envoy_p99_ratio"] = by_mode.get(headline_mode, next(iter(by_mode.values())))
    out["trellis_vs_envoy_p99_ratio_by_load"] = by_mode
    out["trellis_vs_direct_p99_ratio"] = (
        results[TRELLIS].get(headline_mode, {}).get("vs_direct", {}).get("p99_ms")
    )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    exit_on_sigterm()
    outcome = run(args)
    results = outcome["results"]
    summary = {
        "bench": "dataplane",
        "machine": machine(),
        "argv": sys.argv[1:],
        "settings": {
            "repeats": args.repeats,
            "duration_s": args.duration,
            "rates": args.rates,
            "connections": args.connections,
            "body_bytes": 1024,
            "headline_load": mode_name(HEADLINE_RATE),
        },
        "elapsed_s": outcome["elapsed_s"],
        "rows": results,
        **headline(results),
    }
    if not args.json:
        print(report(results))
        for key in ("trellis_vs_envoy_p99_ratio", "trellis_vs_direct_p99_ratio"):
            if key in summary:
                print(f"{key} ({mode_name(HEADLINE_RATE)}): {summary[key]:.2f}")
    emit_json(summary)


if __name__ == "__main__":
    main()
