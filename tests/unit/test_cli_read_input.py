"""Every `-f FILE` the CLI reads: a file that is not UTF-8 (or not there) is one error line
naming the file and the problem, exit 1, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TRELLIS = str(Path(sys.executable).parent / "trellis")
LATIN1 = "apiVersion: v1\nkind: Service\nmetadata: {name: caf\u00e9}\n".encode("latin-1")
PROBLEM = f"not UTF-8 text (byte 0xe9 at offset {LATIN1.index(0xE9)}); save it as UTF-8"


def run(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [TRELLIS, *args], input=stdin, capture_output=True, timeout=60, check=False
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.mark.parametrize(
    "command",
    [
        ["apply", "-f"],
        ["delete", "-f"],
        ["analyze", "--offline", "-f"],
        ["kube-inject", "-f"],
        ["manifest", "generate", "-f"],
    ],
)
def test_a_latin1_file_is_one_error_line(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(LATIN1)
    done = run([*command, str(path), "--state-dir", str(tmp_path / "state")])
    if "--state-dir" in done.stderr and "No such option" in done.stderr:
        done = run([*command, str(path)])  # commands without a mesh
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: cannot read {path}: {PROBLEM}"]


def test_latin1_on_stdin_is_one_error_line(tmp_path: Path) -> None:
    done = run(["apply", "-f", "-", "--state-dir", str(tmp_path / "state")], LATIN1)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: cannot read standard input: {PROBLEM}"]


def test_a_missing_file_is_one_error_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done = run(["apply", "-f", str(missing), "--state-dir", str(tmp_path / "state")])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot read {missing}: No such file or directory"
    ]
