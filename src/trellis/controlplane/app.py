"""trellisd: wires the store, the mesh state, the xDS server and the local HTTP API together."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from trellis.controlplane.http_api import build_app
from trellis.controlplane.state import MeshState, WorkloadRecord
from trellis.model.snapshot import MeshConfig, MeshSnapshot
from trellis.registry.local import hosts_entries
from trellis.runtime.netns import write_netns_hosts
from trellis.store.sqlite import SqliteStore
from trellis.xds.server import AdsServer

log = logging.getLogger("trellisd")


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    state_dir: Path
    xds_host: str
    xds_port: int
    write_hosts: bool

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "trellisd.sock"


def hosts_writer(snapshot: MeshSnapshot, records: Sequence[WorkloadRecord]) -> None:
    """Keep every workload namespace's /etc/hosts in step with the service registry."""
    for record in records:
        if record.netns:
            try:
                write_netns_hosts(
                    record.netns, hosts_entries(snapshot.services, record.workload.namespace)
                )
            except OSError as e:
                log.warning("event=hosts-write-failed netns=%s error=%s", record.netns, e)


async def serve(settings: DaemonSettings) -> None:
    store = SqliteStore(settings.state_dir / "config.db")
    server: AdsServer | None = None

    def notify(version: str, types: frozenset[str], affected: object) -> None:
        if server is not None:
            server.update(version, types, affected)  # type: ignore[arg-type]

    state = MeshState(store=store, mesh=MeshConfig(), notify=notify)
    if settings.write_hosts:
        state.listeners.append(hosts_writer)
    server = AdsServer(state.generate, clock=time.monotonic)
    state.rebuild()
    port = await server.start(settings.xds_host, settings.xds_port)
    log.info("event=xds-listening address=%s:%d", settings.xds_host, port)

    runner = web.AppRunner(build_app(state, server.statuses), access_log=None)
    await runner.setup()
    settings.socket_path.unlink(missing_ok=True)
    site = web.UnixSite(runner, str(settings.socket_path))
    await site.start()
    log.info("event=api-listening socket=%s", settings.socket_path)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("event=stopping")
    await runner.cleanup()
    await server.stop(1.0)
    store.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trellisd", description="Trellis control plane")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--xds-address", default="127.0.0.1:15010", help="HOST:PORT for xDS")
    parser.add_argument("--no-hosts", action="store_true", help="do not write netns hosts files")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    host, _, port = args.xds_address.rpartition(":")
    settings = DaemonSettings(
        state_dir=args.state_dir, xds_host=host, xds_port=int(port), write_hosts=not args.no_hosts
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
