"""What both benchmarks share: statistics, process accounting, ports, machine facts, output.

Benchmarks run by hand (see bench/README.md), never in the test suite; nothing here asserts a
timing. Every figure comes from this machine in this run.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import socket
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample; 0.0 for an empty one."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Spread:
    """Median of repeated runs and how far the runs lay apart (min..max)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        sample = list(values)
        if not sample:
            return cls(0.0, 0.0, 0.0)
        return cls(statistics.median(sample), min(sample), max(sample))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (its /proc/PID/stat), 0 if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def memory_mb(pid: int) -> dict[str, float]:
    """Resident set now and its peak (VmRSS, VmHWM) in MiB."""
    out = {"rss_mb": 0.0, "peak_rss_mb": 0.0}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            name = "rss_mb" if key == "VmRSS" else "peak_rss_mb"
            out[name] = int(value.split()[0]) / 1024
    return out


def machine() -> dict[str, Any]:
    """nproc, memory and CPU model, as RESULTS.md reports them."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = []
    return {
        "loadavg_at_start": " ".join(load),  # other work on the machine skews every figure
        "nproc": os.cpu_count() or 0,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def emit_json(result: dict[str, Any]) -> None:
    """The machine-readable contract: one JSON object as the very last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True, default=str), flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain aligned text table (Markdown-compatible) for the human-readable output."""
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays the report (and its last line the JSON)."""
    print(message, file=sys.stderr, flush=True)


def exit_on_sigterm() -> None:
    """SIGTERM becomes SystemExit, so every `finally` (trellis down, killing by PID) runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def die_with_parent() -> None:
    """For a child's preexec_fn: the kernel SIGKILLs it if the bench itself dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
