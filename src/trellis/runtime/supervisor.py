"""The local runtime's supervisor: the process `trellis up` leaves running.

It owns the mesh's host networking, runs trellisd and the gateways (restarting them if they
die), and starts/stops workloads for `trellis run`/`stop` through a JSON API on a unix socket.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from trellis.errors import TrellisError
from trellis.runtime.children import Child
from trellis.runtime.client import LocalApi
from trellis.runtime.console import console_child, plan_console_port, wait_console
from trellis.runtime.layout import Layout, MeshInfo
from trellis.runtime.loopback import HOST_ADDRESS, free_port
from trellis.runtime.netns import MeshNetwork, mesh_prefix
from trellis.runtime.prometheus import PrometheusOptions, PrometheusRunner, scraped_proxies
from trellis.runtime.trace_store import plan_trace_store, trace_store_child, wait_trace_store
from trellis.runtime.workloads import WorkloadManager, WorkloadSpec

log = logging.getLogger("trellis.runtime")


class Supervisor:
    """`network` is None without capture (`--capture=proxy`): nothing on the host to set up."""

    def __init__(
        self,
        layout: Layout,
        info: MeshInfo,
        network: MeshNetwork | None,
        trellisd_args: Sequence[str] = (),
        tracing: bool = False,
        prometheus: PrometheusOptions | None = None,
        console: bool = False,
    ) -> None:
        self.layout = layout
        self.info = info
        self.network = network
        self.trellisd_api = LocalApi(layout.trellisd_socket, "trellisd")
        argv = [
            sys.executable,
            "-m",
            "trellis.controlplane.app",
            "--state-dir",
            str(layout.root),
            "--xds-address",
            f"{info.bridge_ip}:{info.xds_port}",
            "--monitoring-address",
            f"{info.bridge_ip}:{info.monitoring_port}",
        ]
        if network is None:
            argv.append("--no-hosts")  # names resolve through the sidecar, not /etc/hosts
        argv += trellisd_args
        self.trellisd = Child(name="trellisd", argv=argv, log_path=layout.logs / "trellisd.log")
        self.workloads = WorkloadManager(layout, info, network, self.trellisd_api)
        self.workloads.components.append(self.trellisd)
        self.tracing = tracing
        self.trace_store: Child | None = None
        self.prometheus: PrometheusRunner | None = None
        if prometheus is not None:
            control_plane = f"{info.bridge_ip}:{info.monitoring_port}"
            self.prometheus = PrometheusRunner(layout, prometheus, control_plane)
            self.workloads.components.append(self.prometheus.child)
        self.console_enabled = console
        self.console: Child | None = None
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        if self.network is not None:
            await asyncio.to_thread(self.network.create)
        if self.tracing:
            await self._start_trace_store()
        await self.trellisd.start()
        await self._wait_trellisd(30.0)
        await self.workloads.start_gateways()
        if self.prometheus is not None:
            await self.prometheus.start(self.workloads)
            self.info.prometheus_port = self.prometheus.options.port
        if self.console_enabled:
            await self._start_console()
        self.workloads.save()
        self.info.ready = True
        self.info.save(self.layout.mesh_file)
        log.info("event=mesh-ready prefix=%s", self.info.prefix)

    async def _start_trace_store(self) -> None:
        """Before trellisd, which tells every proxy where to send spans."""
        plan = plan_trace_store(self.info.bridge_ip, self.info.proxy_mode)
        self.trace_store = trace_store_child(self.layout, plan)
        self.workloads.components.append(self.trace_store)
        await self.trace_store.start()
        await wait_trace_store(self.trace_store, plan, 30.0)
        self.info.tracing_address = plan.otlp_address
        self.info.tracing_query_port = plan.query_port
        self.trellisd.argv += ["--tracing-address", plan.otlp_address]
        self.info.save(self.layout.mesh_file)
        log.info(
            "event=trace-store-ready otlp=%s query_port=%d", plan.otlp_address, plan.query_port
        )

    async def _start_console(self) -> None:
        """After trellisd and Prometheus: the console reads both."""
        port = plan_console_port()
        self.console = console_child(
            self.layout, port, self.info.console_roles, self.info.prometheus_port
        )
        self.workloads.components.append(self.console)
        await self.console.start()
        await wait_console(self.console, port, 30.0)
        self.info.console_port = port
        log.info("event=console-ready port=%d", port)

    async def _wait_trellisd(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.trellisd.alive():
                raise TrellisError(f"trellisd exited; see {self.trellisd.log_path}")
            try:
                await self.trellisd_api.acall("GET", "/healthz", timeout=2.0)
                return
            except TrellisError:
                await asyncio.sleep(0.1)
        raise TrellisError(
            f"trellisd did not become ready in {timeout:.0f}s; see {self.trellisd.log_path}"
        )

    async def watch(self) -> None:
        """Restart whatever died: trellisd, gateways, workload agents."""
        while not self.stopping.is_set():
            if not self.trellisd.alive():
                log.warning("event=restart component=trellisd")
                await self.trellisd.restart()
                self.workloads.save()
            if self.trace_store is not None and not self.trace_store.alive():
                log.warning("event=restart component=trace-store")
                await self.trace_store.restart()
                self.workloads.save()
            if self.console is not None and not self.console.alive():
                log.warning("event=restart component=console")
                await self.console.restart()
                self.workloads.save()
            await self.workloads.restart_dead()
            await self._watch_prometheus()
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=0.5)
            except TimeoutError:
                pass

    async def _watch_prometheus(self) -> None:
        """Keep its targets current (it re-reads the file itself); restart it if it died."""
        if self.prometheus is None:
            return
        self.prometheus.refresh(self.workloads)
        if not self.prometheus.child.alive():
            log.warning("event=restart component=prometheus")
            await self.prometheus.child.restart()
            self.workloads.save()

    async def shutdown(self) -> None:
        log.info("event=shutdown")
        await self.workloads.stop_all()
        await self.trellisd.stop()
        if self.trace_store is not None:
            await self.trace_store.stop()
        if self.prometheus is not None:
            await self.prometheus.child.stop()
        if self.console is not None:
            await self.console.stop()
        if self.network is not None:
            await asyncio.to_thread(self.network.teardown)
        self.layout.mesh_file.unlink(missing_ok=True)


def build_api(sup: Supervisor) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/status")
    async def status(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "ready": sup.info.ready,
                "prefix": sup.info.prefix,
                "components": [
                    sup.trellisd.describe(),
                    *([sup.trace_store.describe()] if sup.trace_store else []),
                    *([sup.prometheus.child.describe()] if sup.prometheus else []),
                    *([sup.console.describe()] if sup.console else []),
                    *sup.workloads.describe_gateways(),
                ],
            }
        )

    @routes.post("/workloads")
    async def run(request: web.Request) -> web.Response:
        spec = WorkloadSpec.from_json(await request.json())
        try:
            result = await sup.workloads.run(spec)
        except TrellisError as e:
            return web.json_response({"error": str(e)}, status=409 if "exists" in str(e) else 400)
        return web.json_response(result)

    @routes.get("/workloads")
    async def ps(_: web.Request) -> web.Response:
        return web.json_response({"items": sup.workloads.describe()})

    @routes.delete("/workloads/{namespace}/{name}")
    async def stop(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        if not await sup.workloads.stop(ns, name):
            return web.json_response({"error": f"no workload {name} in namespace {ns}"}, status=404)
        return web.json_response({"ok": True})

    @routes.get("/scrape-targets")
    async def scrape_targets(_: web.Request) -> web.Response:
        """Every proxy's stats address: what Prometheus and the console's own scrape read."""
        items = [
            {
                "namespace": p.namespace,
                "name": p.name,
                "address": p.address,
                "labels": dict(p.labels),
            }
            for p in scraped_proxies(sup.workloads)
        ]
        return web.json_response({"items": items})

    @routes.post("/shutdown")
    async def shutdown(_: web.Request) -> web.Response:
        sup.stopping.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.add_routes(routes)
    return app


async def amain(
    layout: Layout,
    info: MeshInfo,
    trellisd_args: Sequence[str] = (),
    tracing: bool = False,
    prometheus: PrometheusOptions | None = None,
    console: bool = False,
) -> int:
    network = None if info.proxy_mode else MeshNetwork(prefix=info.prefix, subnet=info.subnet)
    sup = Supervisor(layout, info, network, trellisd_args, tracing, prometheus, console)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sup.stopping.set)
    runner = web.AppRunner(build_api(sup), access_log=None)
    await runner.setup()
    layout.runtime_socket.unlink(missing_ok=True)
    await web.UnixSite(runner, str(layout.runtime_socket)).start()
    code = 0
    try:
        await sup.start()
        await sup.watch()
    except TrellisError as e:
        log.error("event=start-failed error=%s", e)
        code = 1
    finally:
        await sup.shutdown()
        await runner.cleanup()
        layout.runtime_socket.unlink(missing_ok=True)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trellis-runtime")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--ingress-port", type=int, default=8080)
    parser.add_argument("--egress-gateway", action="store_true")
    parser.add_argument("--subnet", required=True)
    parser.add_argument("--capture", choices=["iptables", "proxy"], default="iptables")
    parser.add_argument("--ca-dir", default=None, help="plug-in CA directory, for trellisd")
    parser.add_argument("--workload-cert-ttl", default=None, help="seconds, for trellisd")
    parser.add_argument("--no-tracing", action="store_true", help="do not run the trace store")
    parser.add_argument("--trace-sampling", type=float, default=1.0, help="percent, for trellisd")
    parser.add_argument("--outbound-traffic-policy", default="ALLOW_ANY", help="for trellisd")
    parser.add_argument("--prometheus-port", type=int, default=0, help="run Prometheus (0: no)")
    parser.add_argument("--prometheus-namespaces", default="", help="a,b: scrape only these")
    parser.add_argument("--prometheus-extra-scrape-config", type=Path, default=None)
    parser.add_argument("--no-console", action="store_true", help="do not run the console")
    parser.add_argument("--console-roles", default="", help="admin,edit,view: granted roles")
    args = parser.parse_args(argv)
    trellisd_args: list[str] = ["--trace-sampling", str(args.trace_sampling)]
    trellisd_args += ["--outbound-traffic-policy", args.outbound_traffic_policy]
    if args.ca_dir:
        trellisd_args += ["--ca-dir", args.ca_dir]
    if args.workload_cert_ttl:
        trellisd_args += ["--workload-cert-ttl", args.workload_cert_ttl]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    layout = Layout(args.state_dir.resolve())
    subnet = args.subnet
    proxy_mode = args.capture == "proxy"
    # Pods reach trellisd on the bridge; without capture on the host's loopback, any free port.
    bridge_ip = HOST_ADDRESS if proxy_mode else subnet.split("/")[0].rsplit(".", 1)[0] + ".1"
    info = MeshInfo(
        prefix=mesh_prefix(layout.root),
        subnet=subnet,
        bridge_ip=bridge_ip,
        ingress_port=args.ingress_port,
        egress_gateway=args.egress_gateway,
        supervisor_pid=os.getpid(),
        started_at=time.time(),
        capture=args.capture,
        trace_sampling=args.trace_sampling,
        console_roles=args.console_roles,
    )
    if proxy_mode:
        info.xds_port = free_port(HOST_ADDRESS)
        info.monitoring_port = free_port(HOST_ADDRESS)
    info.save(layout.mesh_file)
    sys.exit(
        asyncio.run(
            amain(
                layout,
                info,
                trellisd_args,
                not args.no_tracing,
                _prometheus(args),
                console=not args.no_console,
            )
        )
    )


def _prometheus(args: argparse.Namespace) -> PrometheusOptions | None:
    if not args.prometheus_port:
        return None
    return PrometheusOptions(
        port=args.prometheus_port,
        namespaces=tuple(n for n in args.prometheus_namespaces.split(",") if n),
        extra_scrape_config=args.prometheus_extra_scrape_config,
    )


if __name__ == "__main__":
    main()
