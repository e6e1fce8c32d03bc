"""Background processes of the local runtime: start detached, check, stop, wait for readiness.

Plain synchronous code: the CLI starts processes that must outlive it (trellisd, agents), and
later commands find them again by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from trellis.errors import RuntimeProblem

_POLL_S = 0.05


def spawn_detached(
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    netns: str | None = None,
    cwd: Path | str | None = None,
) -> int:
    """Start `cmd` in its own session (inside `netns` if given), output appended to `log_path`.

    The process is its session's and process group's leader, so `terminate` can stop it with
    everything it started; stdin is /dev/null so it never waits on a terminal.
    """
    argv = [*(["ip", "netns", "exec", netns] if netns else []), *cmd]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as err:
            raise RuntimeProblem(f"cannot start {argv[0]}: {err}") from err
    return proc.pid


def is_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as dead (and is reaped if it is our child)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in ("Z", "X", None)


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, wait up to `timeout`, then SIGKILL it."""
    _signal_group(pid, signal.SIGTERM)
    if not _wait_dead(pid, timeout):
        _signal_group(pid, signal.SIGKILL)
        _wait_dead(pid, 5.0)
    # Whatever the leader left behind in its group goes too.
    _signal_group(pid, signal.SIGKILL)


def wait_http_ok(url: str, timeout: float) -> None:
    """Poll `url` until it answers 2xx; raise RuntimeProblem after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=min(2.0, timeout)) as response:
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            last = str(getattr(err, "reason", err))
        time.sleep(_POLL_S)
    raise RuntimeProblem(f"{url} not ready after {timeout:g}s ({last})")


def wait_file(path: Path, timeout: float, *, pid: int | None = None) -> None:
    """Poll until `path` exists; fail early if `pid` (the process meant to create it) died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if pid is not None and not is_alive(pid):
            raise RuntimeProblem(f"process {pid} exited before it created {path}")
        time.sleep(_POLL_S)
    raise RuntimeProblem(f"{path} did not appear within {timeout:g}s")


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat (after the parenthesised command name)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]
