"""`trellis analyze --offline -f FILE`: istioctl's exit codes and output shapes, no mesh needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TRELLIS = str(Path(sys.executable).parent / "trellis")

GOOD = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
"""


def analyze(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return subprocess.run(
        [TRELLIS, "analyze", "--offline", "-f", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_clean_files_exit_0_and_say_so(tmp_path: Path) -> None:
    proc = analyze(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "No validation issues found" in proc.stderr


def test_an_error_exits_79_in_the_log_format_and_0_in_json(tmp_path: Path) -> None:
    bad = GOOD.replace("{host: reviews}}]", "{host: reviews, subset: v9}}]")
    proc = analyze(tmp_path, bad)
    assert proc.returncode == 79
    assert proc.stdout.startswith("Error [IST0101] (VirtualService reviews.default ")
    as_json = analyze(tmp_path, bad, "-o", "json")
    assert as_json.returncode == 0
    [msg] = json.loads(as_json.stdout)
    assert set(msg) == {"code", "level", "origin", "reference", "message", "documentationUrl"}
    assert msg["reference"].endswith("config.yaml")


@pytest.mark.parametrize(("threshold", "code"), [("Error", 0), ("Info", 79)])
def test_failure_threshold_decides_what_fails(tmp_path: Path, threshold: str, code: int) -> None:
    web = GOOD.replace("name: http, port", "name: web, port")  # IST0118 is Info
    proc = analyze(tmp_path, web, "--failure-threshold", threshold)
    assert proc.returncode == code
    assert "[IST0118]" in proc.stdout


def test_a_document_that_does_not_parse_is_ist0106_and_exits_65(tmp_path: Path) -> None:
    proc = analyze(tmp_path, GOOD + "---\napiVersion: v1\nkind: Bogus\nmetadata: {name: x}\n")
    assert proc.returncode == 65
    assert "[IST0106]" in proc.stdout and "Bogus" in proc.stdout
