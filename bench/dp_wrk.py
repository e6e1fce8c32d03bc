"""The load generator: Debian's `wrk` (LuaJIT) with a script that paces it and reports JSON.

Fixed rate: each wrk thread sends on its own schedule (start + k * interval, read from
CLOCK_MONOTONIC through LuaJIT's ffi); a request whose slot has passed goes at once, so the
average rate holds while the system keeps up. Max rate: no pacing. Either way `done()` prints
one JSON line with wrk's own latency percentiles (microseconds) and counters.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "wrk is missing: install it with `apt-get install -y wrk` (setup.sh does, as root)"

_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d,'
    .. ' "p99_us": %d, "max_us": %d, "errors": %d, "status_errors": %d}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""

_PACE = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval, start, sent = 0, nil, 0
init = function(args) interval = 1000 / tonumber(args[1]) end
delay = function()
  local now = now_ms()
  if start == nil then start = now end
  sent = sent + 1
  local wait = start + sent * interval - now
  if wait < 0 then return 0 end
  return wait
end
"""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One wrk run: rate 0 means as fast as it goes."""

    url: str
    rate: int
    duration_s: float
    connections: int = 16
    threads: int = 2


@dataclass(frozen=True, slots=True)
class LoadResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def write_script(directory: Path, rate: int) -> Path:
    path = directory / ("wrk-paced.lua" if rate else "wrk-max.lua")
    path.write_text((_PACE if rate else "") + _REPORT)
    path.chmod(0o644)
    return path


def wrk_argv(spec: LoadSpec, script: Path) -> list[str]:
    threads = min(spec.threads, spec.connections)
    argv = [shutil.which("wrk") or "wrk", "-t", str(threads), "-c", str(spec.connections)]
    argv += ["-d", f"{spec.duration_s:g}s", "--timeout", "5s", "-s", str(script), spec.url]
    if spec.rate:
        argv += ["--", f"{spec.rate / threads:g}"]
    return argv


def parse_output(text: str) -> LoadResult:
    """The BENCH_JSON line `done()` printed; raises ValueError when wrk printed none."""
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise ValueError(f"wrk printed no result:\n{text[-2000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = max(raw["duration_us"], 1) / 1e6
    return LoadResult(
        rps=raw["requests"] / seconds,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        requests=int(raw["requests"]),
        errors=int(raw["errors"]) + int(raw["status_errors"]),
    )
