"""`trellis-agent`: one per workload, like Istio's pilot-agent plus istio-init (DESIGN.md §1).

Writes Envoy's bootstrap, sets up traffic capture, starts and supervises Envoy, starts the app
once Envoy is ready, and on SIGTERM drains Envoy, stops the app and removes the capture.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trellis.agent import join
from trellis.agent.app import AppProcess
from trellis.agent.bootstrap import BootstrapOptions, build_bootstrap
from trellis.agent.capture import DEFAULT_CHAIN_PREFIX, CaptureOptions, setup_capture
from trellis.agent.capture import teardown_capture as remove_capture
from trellis.agent.envoy import EnvoyProcess, EnvoySettings, drops_privileges, write_bootstrap
from trellis.agent.logfmt import configure_logging, log_event
from trellis.agent.stats import StatsServer
from trellis.errors import RuntimeProblem, TrellisError
from trellis.model.proxy import InterceptionMode, ProxyType
from trellis.telemetry.istio_metrics import Workload
from trellis.telemetry.peer import PEER_ENV


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything the agent was asked to do, parsed once from the command line."""

    bootstrap: BootstrapOptions
    state_dir: Path
    capture: CaptureOptions | None
    ready_file: Path | None
    ready_timeout_s: float
    drain_seconds: float
    restart_app: bool
    app_argv: tuple[str, ...]
    envoy_log_level: str = "warn"
    concurrency: int | None = 2

    @property
    def bootstrap_path(self) -> Path:
        return self.state_dir / "envoy-bootstrap.json"

    @property
    def envoy_log(self) -> Path:
        return self.state_dir / "envoy.log"

    @property
    def app_log(self) -> Path:
        return self.state_dir / "app.log"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trellis-agent",
        description="Run Envoy (and optionally the app after `--`) for one mesh workload.",
    )
    p.add_argument("--type", choices=["sidecar", "router"], default="sidecar")
    p.add_argument("--name", default=None, help="required unless --join")
    p.add_argument("-n", "--namespace", default=None, help="default: default")
    p.add_argument("--ip", default=None, help="the workload's (pod's) IP; required unless --join")
    p.add_argument("--labels", default=None, help="k=v,k2=v2")
    p.add_argument("--service-account", default=None, help="default: default")
    p.add_argument("--xds-address", default=None, help="HOST:PORT of trellisd's xDS server")
    p.add_argument(
        "--join", default=None, help="WorkloadGroup join token (or its file): self-register"
    )
    p.add_argument("--group", default=None, help="the WorkloadGroup to join (with --join)")
    p.add_argument("--cluster-env", type=Path, default=None, help="settings file (with --join)")
    p.add_argument("--sotw", action="store_true", help="State-of-the-World ADS, not delta")
    p.add_argument("--admin-port", type=int, default=15000)
    p.add_argument("--stats-port", type=int, default=15090)
    p.add_argument("--ready-port", type=int, default=15021)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--capture", choices=["iptables", "none"], default="none")
    p.add_argument("--capture-prefix", default=DEFAULT_CHAIN_PREFIX, help="iptables chain prefix")
    p.add_argument("--exclude-inbound-ports", default="", help="ports not captured inbound")
    p.add_argument("--exclude-outbound-cidrs", default="", help="CIDRs not captured outbound")
    p.add_argument("--app-ports", default=None, help="the app's ports (node metadata POD_PORTS)")
    p.add_argument(
        "--interception-mode",
        choices=[m.value for m in InterceptionMode],
        default=InterceptionMode.REDIRECT.value,
        help="NONE: no capture, the sidecar binds --ip and is the app's HTTP proxy",
    )
    p.add_argument("--app-host", default="127.0.0.1", help="where the app listens (mode NONE)")
    p.add_argument("--xds-root-cert", type=Path, default=None, help="PEM roots for TLS to trellisd")
    p.add_argument(
        "--token-file", type=Path, default=None, help="join token for trellisd (a 0600 file)"
    )
    p.add_argument("--ready-file", type=Path, default=None)
    p.add_argument("--ready-timeout", type=float, default=120.0, help="0 waits forever")
    p.add_argument("--initial-fetch-timeout", type=float, default=0.0, help="0 waits forever")
    p.add_argument("--drain-seconds", type=float, default=5.0)
    p.add_argument("--restart-app", action="store_true")
    p.add_argument("--access-log", default="/dev/stdout", help="Envoy access log path")
    p.add_argument("--envoy-log-level", default="warn")
    p.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads")
    p.add_argument("app", nargs=argparse.REMAINDER, help="-- CMD ARGS...: the application")
    return p


def parse_config(argv: Sequence[str]) -> AgentConfig:
    args = _complete(build_parser().parse_args(argv))
    host, port = _split_address(args.xds_address)
    proxy_type = ProxyType(args.type)
    bootstrap = BootstrapOptions(
        type=proxy_type,
        ip=args.ip,
        name=args.name,
        namespace=args.namespace,
        labels=_parse_labels(args.labels),
        service_account=args.service_account,
        xds_host=host,
        xds_port=port,
        delta=not args.sotw,
        admin_port=args.admin_port,
        stats_port=args.stats_port,
        envoy_serves_stats=False,  # the agent serves it, Istio's metrics merged in (stats.py)
        ready_port=args.ready_port,
        access_log_path=args.access_log,
        initial_fetch_timeout_s=args.initial_fetch_timeout,
        app_ports=_parse_ports(args.app_ports),
        interception=InterceptionMode(args.interception_mode),
        app_host=args.app_host,
        xds_root_pem=_read_text(args.xds_root_cert),
        xds_token=args.xds_token,
    )
    capture = None
    if args.capture == "iptables":
        capture = CaptureOptions(
            chain_prefix=args.capture_prefix,
            exclude_inbound_ports=(
                *_parse_ports(args.exclude_inbound_ports),
                args.admin_port,
                args.stats_port,
                args.ready_port,
            ),
            exclude_outbound_cidrs=tuple(c for c in args.exclude_outbound_cidrs.split(",") if c),
        )
    app = list(args.app)
    if app[:1] == ["--"]:
        app = app[1:]
    return AgentConfig(
        bootstrap=bootstrap,
        state_dir=args.state_dir,
        capture=capture,
        ready_file=args.ready_file,
        ready_timeout_s=args.ready_timeout,
        drain_seconds=args.drain_seconds,
        restart_app=args.restart_app,
        app_argv=tuple(app),
        envoy_log_level=args.envoy_log_level,
        concurrency=args.concurrency,
    )


class Agent:
    """One run of the agent: start in order, stop in reverse, whatever happened in between."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop_requested = asyncio.Event()
        self.envoy: EnvoyProcess | None = None
        self.app: AppProcess | None = None
        self.stats: StatsServer | None = None
        self.captured = False

    async def run(self) -> int:
        try:
            await self._start()
            return await self._wait_for_end()
        except TrellisError as err:
            log_event("agent_failed", level=logging.ERROR, error=err)
            return 1
        finally:
            await self._shutdown()

    async def _start(self) -> None:
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        settings = self._envoy_settings()
        owner = settings.run_as_uid if drops_privileges(settings) else None
        write_bootstrap(
            cfg.bootstrap_path,
            build_bootstrap(cfg.bootstrap),
            private=bool(cfg.bootstrap.xds_token),
            owner_uid=owner,
        )
        proxy = cfg.bootstrap.proxy
        log_event(
            "agent_starting",
            proxy=proxy.id,
            xds=f"{cfg.bootstrap.xds_host}:{cfg.bootstrap.xds_port}",
            state_dir=cfg.state_dir,
        )
        if cfg.capture is not None:
            setup_capture(cfg.capture)
            self.captured = True
            log_event("capture_installed", chains=cfg.capture.chain_prefix)
        self.envoy = EnvoyProcess(self._envoy_settings())
        await self.envoy.start()
        await self._start_stats()
        if not await self._until_stopped(self._wait_envoy_ready()):
            return
        log_event("envoy_ready", pid=self.envoy.pid)
        if cfg.app_argv:
            self.app = AppProcess(cfg.app_argv, cfg.app_log, restart=cfg.restart_app)
            await self.app.start()
            if not await self._until_stopped(self._wait_app_ports()):
                return
        if cfg.ready_file is not None:
            _write_ready_file(cfg.ready_file, self)
        log_event("agent_ready", proxy=proxy.id)

    async def _start_stats(self) -> None:
        """:STATS_PORT/stats/prometheus, Envoy's stats plus Istio's (DESIGN §6)."""
        opts = self.config.bootstrap
        self.stats = StatsServer(
            workload=self._workload(), admin_port=opts.admin_port, port=opts.stats_port
        )
        try:
            await self.stats.start()
        except OSError as err:
            raise RuntimeProblem(f"cannot serve stats on port {opts.stats_port}: {err}") from err

    async def _wait_envoy_ready(self) -> None:
        assert self.envoy is not None
        timeout = self.config.ready_timeout_s or float("inf")
        try:
            await self.envoy.wait_ready(timeout)
        except RuntimeProblem as err:
            where = f"{self.config.bootstrap.xds_host}:{self.config.bootstrap.xds_port}"
            raise RuntimeProblem(f"{err}; is trellisd reachable at {where}?") from err

    async def _wait_app_ports(self) -> None:
        """Ready means the app accepts connections too, so `trellis run` never returns early."""
        host = self.config.bootstrap.app_host  # 127.0.0.1, or its own address without capture
        timeout = self.config.ready_timeout_s or float("inf")
        deadline = asyncio.get_running_loop().time() + timeout
        for port in self.config.bootstrap.app_ports:
            while not await _accepts(host, port):
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeProblem(
                        f"the app did not listen on {host}:{port} in {timeout:.0f}s"
                    )
                await asyncio.sleep(0.05)
        log_event("app_ready", ports=",".join(map(str, self.config.bootstrap.app_ports)))

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` unless a stop signal comes first; True if the work finished."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        task.result()
        return True

    async def _wait_for_end(self) -> int:
        """Until SIGTERM/SIGINT (exit 0), or the app's final exit (its exit code)."""
        stop = asyncio.ensure_future(self.stop_requested.wait())
        waiting: set[asyncio.Future[Any]] = {stop}
        if self.app is not None:
            waiting.add(self.app.done)
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if self.app is not None and self.app.done.done() and not self.stop_requested.is_set():
            return self.app.done.result()
        return 0

    async def _shutdown(self) -> None:
        cfg = self.config
        if cfg.ready_file is not None:
            cfg.ready_file.unlink(missing_ok=True)
        if self.envoy is not None:
            sidecar = cfg.bootstrap.type is ProxyType.SIDECAR
            await self.envoy.drain(cfg.drain_seconds, inbound_only=sidecar)
        if self.app is not None:
            await self.app.stop()
        if self.envoy is not None:
            await self.envoy.stop()
        if self.stats is not None:
            await self.stats.stop()
        if self.captured and cfg.capture is not None:
            with contextlib.suppress(RuntimeProblem):
                remove_capture(cfg.capture.chain_prefix)
            log_event("capture_removed", chains=cfg.capture.chain_prefix)
        log_event("agent_stopped")

    def _workload(self) -> Workload:
        """This proxy's own workload, as its metrics and its peer header name it."""
        opts = self.config.bootstrap
        return Workload(
            name=opts.name,
            namespace=opts.namespace,
            labels=dict(opts.labels),
            service_account=opts.service_account,
        )

    def _envoy_settings(self) -> EnvoySettings:
        cfg = self.config
        return EnvoySettings(
            bootstrap_path=cfg.bootstrap_path,
            log_path=cfg.envoy_log,
            admin_port=cfg.bootstrap.admin_port,
            drain_time_s=max(1, round(cfg.drain_seconds)),
            concurrency=cfg.concurrency,
            log_level=cfg.envoy_log_level,
            extra_env=((PEER_ENV, self._workload().peer.encode()),),  # the x-trellis-peer value
        )


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _write_ready_file(path: Path, agent: Agent) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    envoy_pid = agent.envoy.pid if agent.envoy else ""
    app_pid = agent.app.pid if agent.app else ""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"envoy_pid={envoy_pid}\napp_pid={app_pid}\n")
    tmp.replace(path)


def _complete(args: argparse.Namespace) -> argparse.Namespace:
    """Fill what `--join` leaves to cluster.env and detection; else apply the old defaults."""
    if args.join:
        joined = join.resolve(
            join.JoinRequest(
                token=join.read_token(args.join),
                group=args.group,
                namespace=args.namespace,
                service_account=args.service_account,
                labels=args.labels,
                app_ports=args.app_ports,
                xds_address=args.xds_address,
                xds_root_cert=args.xds_root_cert,
                ip=args.ip,
                cluster_env=join.parse_cluster_env(_read_text(args.cluster_env)),
            )
        )
        args.name, args.namespace, args.ip = joined.name, joined.namespace, joined.ip
        args.service_account, args.labels = joined.service_account, joined.labels
        args.app_ports, args.xds_address = joined.app_ports, joined.xds_address
        args.xds_root_cert = joined.xds_root_cert
        args.xds_token = joined.token
        return args
    for flag in ("name", "ip", "xds_address"):
        if getattr(args, flag) is None:
            raise SystemExit(f"trellis-agent: --{flag.replace('_', '-')} is required")
    args.namespace = args.namespace or "default"
    args.service_account = args.service_account or "default"
    args.labels, args.app_ports = args.labels or "", args.app_ports or ""
    args.xds_token = _read_text(args.token_file).strip()
    return args


def _read_text(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text()
    except OSError as err:
        raise SystemExit(f"trellis-agent: cannot read {path}: {err.strerror}") from None


def _split_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SystemExit(f"trellis-agent: --xds-address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"trellis-agent: --labels wants k=v,k2=v2, got {item!r}")
        labels[key] = value
    return labels


def _parse_ports(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"trellis-agent: ports must be N,N,..., got {text!r}") from None


async def _amain(config: AgentConfig) -> int:
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, agent, sig)
    return await agent.run()


def _on_signal(agent: Agent, sig: signal.Signals) -> None:
    log_event("signal", name=sig.name)
    agent.stop_requested.set()


def main(argv: Sequence[str] | None = None) -> None:
    configure_logging()
    config = parse_config(sys.argv[1:] if argv is None else argv)
    sys.exit(asyncio.run(_amain(config)))


if __name__ == "__main__":
    main()
