"""Supervised child processes of the runtime: started in their own session, logged to a file."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Child:
    """One supervised process (trellisd, a gateway agent, a workload agent or app)."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: str | None = None
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    _log: Any = field(default=None, repr=False)

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is not None:  # a restart: the previous run's handle
            self._log.close()
        self._log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - kept open while it runs
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.started_at = asyncio.get_running_loop().time()

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def restart(self) -> None:
        """Start again after it died, with a short backoff that grows with repeated deaths."""
        self.restarts += 1
        await asyncio.sleep(min(0.2 * self.restarts, 5.0))
        await self.start()

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                _signal_group(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        _signal_group(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "alive": self.alive(),
            "restarts": self.restarts,
            "log": str(self.log_path),
        }


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
