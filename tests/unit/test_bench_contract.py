"""The benchmarks' command lines and their machine-readable output shape (no benchmark runs:
these are fast and assert no timing). The last stdout line of each bench is one JSON object."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bench import controlplane, dataplane
from bench.common import Spread, emit_json, percentile, table
from bench.dp_wrk import LoadSpec, parse_output, wrk_argv

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:9080/
  2 threads and 16 connections
Requests/sec:    998.50

BENCH_JSON {"requests": 2000, "duration_us": 2000000, "bytes": 2400000, "p50_us": 310, \
"p90_us": 510, "p99_us": 3940, "max_us": 9000, "errors": 1, "status_errors": 2}
"""


def test_controlplane_defaults_are_the_issue_sizes() -> None:
    args = controlplane.parse_args([])
    assert args.services == [100, 1000, 5000]
    assert args.proxies == 50
    assert not args.json


def test_controlplane_services_and_proxies_select_one_size() -> None:
    args = controlplane.parse_args(["--services", "1000", "--proxies", "20", "--json"])
    assert (args.services, args.proxies, args.json) == ([1000], 20, True)


def test_controlplane_refuses_more_proxies_than_services() -> None:
    with pytest.raises(SystemExit):
        controlplane.parse_args(["--services", "10", "--proxies", "50"])


def _size(services: int) -> dict[str, Any]:
    change = {"p50_s": 0.2, "p99_s": 0.3, "all_acked_p50_s": 0.3, "all_acked_max_s": 0.3,
              "cpu_s_per_change": 0.1, "bytes_per_proxy": 100.0}  # fmt: skip
    return {
        "services": services,
        "proxies": 50,
        "compile": {"compile_one_proxy_s": 0.1, "compile_all_proxies_cached_s": 0.5},
        "initial": {"all_synced_s": 1.0, "p50_s": 0.5, "cpu_s": 0.9, "bytes_per_proxy": 3e6},
        "route_change": change,
        "endpoint_change": change,
        "convergence_p50_s": 0.2,
        "convergence_p99_s": 0.3,
        "rss_mb": 400.0,
    }


def test_controlplane_json_has_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    result = controlplane.summary([_size(100), _size(5000)])
    print(controlplane.report(result["sizes"]))
    emit_json(result)
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("convergence_p50_s", "convergence_p99_s", "rss_mb", "eds_push_p50_s"):
        assert isinstance(last[key], float), key
    assert last["services"] == 5000
    assert [s["services"] for s in last["sizes"]] == [100, 5000]
    assert last["bytes_per_proxy_scoped"] is None  # no `scoped` figures: measured, not guessed


def test_controlplane_reports_bytes_per_proxy_with_and_without_a_sidecar_scope() -> None:
    assert controlplane.parse_args([]).sidecar_scope
    assert not controlplane.parse_args(["--no-sidecar-scope"]).sidecar_scope
    size = {**_size(100), "scoped": {"bytes_per_proxy": 1e6}}
    result = controlplane.summary([size])
    assert (result["bytes_per_proxy"], result["bytes_per_proxy_scoped"]) == (3e6, 1e6)
    assert "MB/proxy scoped" in controlplane.report(result["sizes"])


def test_dataplane_quick_and_full_defaults() -> None:
    quick, full = dataplane.parse_args(["--quick"]), dataplane.parse_args([])
    assert (quick.repeats, quick.duration) == (2, 2.0)
    assert (full.repeats, full.duration) == (3, 10.0)
    assert full.rates == [100, 1000, 0] and full.connections == 16


def test_wrk_command_paces_fixed_rates_per_thread(tmp_path: Any) -> None:
    paced = wrk_argv(LoadSpec("http://x/", 1000, 2, connections=16, threads=2), tmp_path / "s")
    assert paced[-2:] == ["--", "500"]
    assert paced[3:5] == ["-c", "16"]
    unpaced = wrk_argv(LoadSpec("http://x/", 0, 2), tmp_path / "s")
    assert "--" not in unpaced


def test_wrk_report_line_is_parsed() -> None:
    result = parse_output(WRK_OUTPUT)
    assert result.requests == 2000 and result.errors == 3
    assert (result.rps, result.p50_ms, result.p99_ms) == (1000.0, 0.31, 3.94)


def test_wrk_without_report_is_an_error() -> None:
    with pytest.raises(ValueError, match="no result"):
        parse_output("unable to connect to 127.0.0.1:1 Connection refused")


def _figures(p99: float) -> dict[str, Any]:
    spread = {"median": p99, "min": p99, "max": p99}
    return {"rps": spread, "p50_ms": spread, "p90_ms": spread, "p99_ms": spread,
            "proxy_cpu_pct": spread, "proxy_cpu_us_per_request": spread}  # fmt: skip


def test_dataplane_ratios_and_headline(capsys: pytest.CaptureFixture[str]) -> None:
    loads = ("100 rps", "1000 rps", "max")
    p99s = {dataplane.DIRECT: 1.0, dataplane.TWO_ENVOYS: 4.0, dataplane.TRELLIS: 6.0}
    results = {row: {m: _figures(p99) for m in loads} for row, p99 in p99s.items()}
    dataplane.add_ratios(results)
    assert results[dataplane.TRELLIS]["max"]["vs_direct"]["p99_ms"] == 6.0
    head = dataplane.headline(results)
    assert head["trellis_vs_envoy_p99_ratio"] == 1.5
    assert set(head["trellis_vs_envoy_p99_ratio_by_load"]) == set(loads)
    print(dataplane.report(results))
    emit_json({"rows": results, **head})
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["trellis_vs_envoy_p99_ratio"] == 1.5


def test_statistics_helpers() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([], 99) == 0.0
    assert Spread.of([3.0, 1.0, 2.0]).as_dict() == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert table(["a", "b"], [[1, 2.5]]).splitlines()[2] == "| 1 | 2.5 |"
