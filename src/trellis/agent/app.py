"""The workload's application process, run and (optionally) restarted by the agent.

The app is unchanged: same command, same environment, output to app.log. It runs in its own
session so that stopping it stops everything it started, and it dies with the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from trellis.agent.logfmt import log_event
from trellis.errors import RuntimeProblem

_STABLE_RUN_S = 30.0


class AppProcess:
    """Start the app; restart it with backoff when `restart` is set; report its final exit."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        restart: bool = False,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.restart = restart
        self.restarts = 0
        self._backoff = (backoff_s, backoff_max_s)
        self._stop_grace_s = stop_grace_s
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self._done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def done(self) -> asyncio.Future[int]:
        """Resolves with the exit code once the app exited for good (no restart coming)."""
        return self._done

    async def start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="app-supervisor")

    async def stop(self) -> None:
        """SIGTERM the app's process group, SIGKILL it after the grace period."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self._stop_grace_s)
            except TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
            log_event("app_stopped", pid=proc.pid, rc=proc.returncode)
        if proc is not None:
            _signal_group(proc.pid, signal.SIGKILL)  # leftovers of its group
        if self._supervisor is not None:
            await self._supervisor

    async def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *_with_parent_death_signal(self.argv),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    env=dict(os.environ),
                )
            except OSError as err:
                raise RuntimeProblem(f"cannot start the app {self.argv[0]!r}: {err}") from err
        log_event("app_started", pid=self._proc.pid, restarts=self.restarts)

    async def _supervise(self) -> None:
        backoff_s, backoff_max_s = self._backoff
        backoff = backoff_s
        while self._proc is not None:
            started = time.monotonic()
            rc = await self._proc.wait()
            if self._stopping.is_set() or not self.restart:
                log_event("app_exited", rc=rc, restart=False)
                self._done.set_result(rc)
                return
            if time.monotonic() - started > _STABLE_RUN_S:
                backoff = backoff_s
            log_event("app_exited", rc=rc, restart_in=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
                self._done.set_result(rc)
                return
            backoff = min(backoff * 2, backoff_max_s)
            self.restarts += 1
            try:
                await self._spawn()
            except RuntimeProblem as err:
                log_event("app_restart_failed", error=err)
                self._done.set_result(127)
                return


def _with_parent_death_signal(argv: list[str]) -> list[str]:
    """If the agent is killed outright, its app must not outlive it (setpriv then execs)."""
    if shutil.which("setpriv") is None:
        return argv
    return ["setpriv", "--pdeathsig", "KILL", "--", *argv]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
