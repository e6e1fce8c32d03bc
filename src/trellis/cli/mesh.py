"""`trellis up | down | status | demo`: the one-machine mesh's life cycle."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from trellis.ca import store as ca_store
from trellis.cli.common import StateDirOption, layout_for, mesh_info, runtime, trellisd
from trellis.cli.console_options import console_argv, print_console
from trellis.cli.monitoring import (
    PrometheusExtraOption,
    PrometheusNamespacesOption,
    PrometheusOption,
    PrometheusPortOption,
    print_prometheus,
    prometheus_argv,
    prometheus_options,
)
from trellis.cli.output import Format, console, err_console, print_object
from trellis.errors import Conflict, RuntimeProblem, TrellisError
from trellis.runtime.children import log_tail
from trellis.runtime.layout import Layout, MeshInfo
from trellis.runtime.loopback import choose_loopback_subnet, listening_addresses
from trellis.runtime.netns import choose_subnet, host_networks, mesh_prefix, teardown
from trellis.runtime.prometheus import PrometheusOptions

UP_TIMEOUT_S = 90.0
CAPTURE_IPTABLES = "iptables"
CAPTURE_PROXY = "proxy"
CaptureOption = typer.Option(
    None,
    "--capture",
    help="iptables (namespaces + capture, needs root) or proxy (apps use HTTP_PROXY); "
    "default: iptables when root, else proxy",
)
DEFAULT_TRACE_SAMPLING = 1.0  # percent of new requests traced, Istio's default
ALLOW_ANY = "ALLOW_ANY"  # MeshConfig outboundTrafficPolicy.mode, Istio's default
OUTBOUND_TRAFFIC_POLICIES = (ALLOW_ANY, "REGISTRY_ONLY")


def up(
    state_dir: Path | None = StateDirOption,
    ingress_port: int = typer.Option(
        8080, "--ingress-port", help="Host port of the ingress gateway"
    ),
    egress_gateway: bool = typer.Option(
        False, "--egress-gateway", help="Also run the egress gateway"
    ),
    capture: str | None = CaptureOption,
    ca_dir: Path | None = typer.Option(
        None,
        "--ca-dir",
        help="Plug-in CA: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem (Istio's "
        "cacerts layout); default: a self-signed root kept in the state dir",
    ),
    workload_cert_ttl: float | None = typer.Option(
        None, "--workload-cert-ttl", help="Workload certificate lifetime in seconds (24h)"
    ),
    no_tracing: bool = typer.Option(
        False, "--no-tracing", help="Do not run the trace store; proxies trace nothing"
    ),
    trace_sampling: float = typer.Option(
        DEFAULT_TRACE_SAMPLING,
        "--trace-sampling",
        min=0.0,
        max=100.0,
        help="Percent of new requests traced (0-100)",
    ),
    outbound_traffic_policy: str = typer.Option(
        ALLOW_ANY,
        "--outbound-traffic-policy",
        help="ALLOW_ANY (unknown hosts pass through) or REGISTRY_ONLY (they get 502)",
    ),
    prometheus: bool = PrometheusOption,
    prometheus_port: int = PrometheusPortOption,
    prometheus_namespaces: str = PrometheusNamespacesOption,
    prometheus_extra_scrape_config: Path | None = PrometheusExtraOption,
    no_console: bool = typer.Option(False, "--no-console", help="Do not run the web console"),
    console_roles: str = typer.Option(
        "", "--console-roles", help="Console roles granted besides cluster-admin: admin,edit,view"
    ),
) -> None:
    """Start the mesh: trellisd, the ingress gateway and the trace store, in the background;
    return when ready."""
    layout = layout_for(state_dir)
    start_mesh(
        layout,
        ingress_port=ingress_port,
        egress_gateway=egress_gateway,
        capture=capture,
        ca_dir=ca_dir,
        workload_cert_ttl=workload_cert_ttl,
        tracing=not no_tracing,
        trace_sampling=trace_sampling,
        outbound_traffic_policy=outbound_traffic_policy,
        web_console=not no_console,
        console_roles=console_roles,
        prometheus=prometheus_options(
            prometheus, prometheus_port, prometheus_namespaces, prometheus_extra_scrape_config
        ),
    )
    info = mesh_info(layout)
    mode = "; no capture: apps use HTTP_PROXY" if info.proxy_mode else ""
    console.print(f"Mesh is up (state dir {layout.root}, prefix {info.prefix}{mode}).")
    console.print(f"Ingress gateway: http://127.0.0.1:{info.ingress_port}/")
    _print_tracing(info)
    print_prometheus(info)
    print_console(info)


def _print_tracing(info: MeshInfo) -> None:
    if info.tracing_query_port:
        console.print(
            f"Traces (Jaeger API, {info.trace_sampling:g} % sampled): "
            f"http://127.0.0.1:{info.tracing_query_port}/api/traces"
        )


def resolve_capture(capture: str | None) -> str:
    """iptables when root, else proxy (with a note); an explicit choice is checked."""
    root = os.geteuid() == 0
    if capture is None:
        if not root:
            err_console.print(
                "Not root: starting without traffic capture (--capture=proxy); "
                "see docs/capture-proxy.md."
            )
        return CAPTURE_IPTABLES if root else CAPTURE_PROXY
    if capture not in (CAPTURE_IPTABLES, CAPTURE_PROXY):
        raise TrellisError(f"--capture: {capture!r} is not one of iptables, proxy")
    if capture == CAPTURE_IPTABLES and not root:
        raise RuntimeProblem(
            "--capture=iptables needs root for network namespaces and iptables; run it with "
            "sudo, or use --capture=proxy"
        )
    return capture


def start_mesh(
    layout: Layout,
    *,
    ingress_port: int,
    egress_gateway: bool,
    capture: str | None,
    ca_dir: Path | None = None,
    workload_cert_ttl: float | None = None,
    tracing: bool = True,
    trace_sampling: float = DEFAULT_TRACE_SAMPLING,
    outbound_traffic_policy: str = ALLOW_ANY,
    prometheus: PrometheusOptions | None = None,
    web_console: bool = True,
    console_roles: str = "",
) -> None:
    if outbound_traffic_policy not in OUTBOUND_TRAFFIC_POLICIES:
        raise TrellisError(
            f"--outbound-traffic-policy: {outbound_traffic_policy!r} is not one of "
            + ", ".join(OUTBOUND_TRAFFIC_POLICIES)
        )
    capture = resolve_capture(capture)
    if capture == CAPTURE_PROXY and egress_gateway:
        raise RuntimeProblem(
            "--egress-gateway needs --capture=iptables: without capture its listeners would "
            "share the host network with everything else"
        )
    _refuse_running_mesh(layout)
    _clean_stale(layout)
    _check_port_free(ingress_port)
    layout.logs.mkdir(parents=True, exist_ok=True)
    if capture == CAPTURE_PROXY:
        subnet = choose_loopback_subnet(listening_addresses(), mesh_prefix(layout.root))
    else:
        subnet = choose_subnet(host_networks())
    argv = [
        sys.executable,
        "-m",
        "trellis.runtime.supervisor",
        "--state-dir",
        str(layout.root),
        "--ingress-port",
        str(ingress_port),
        "--subnet",
        str(subnet),
        "--capture",
        capture,
        "--trace-sampling",
        str(trace_sampling),
        "--outbound-traffic-policy",
        outbound_traffic_policy,
    ]
    if not tracing:
        argv.append("--no-tracing")
    argv += prometheus_argv(prometheus)
    argv += console_argv(web_console, console_roles)
    if egress_gateway:
        argv.append("--egress-gateway")
    if ca_dir is not None:
        # Fail here, with the file and the problem named, not in trellisd's log.
        ca_store.load_plugin(ca_dir.resolve(), now=datetime.now(UTC))
        argv += ["--ca-dir", str(ca_dir.resolve())]
    if workload_cert_ttl is not None:
        argv += ["--workload-cert-ttl", str(workload_cert_ttl)]
    with open(layout.logs / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_up(layout, proc)


def _refuse_running_mesh(layout: Layout) -> None:
    info = MeshInfo.load(layout.mesh_file)
    if info is not None and _alive(info.supervisor_pid):
        raise Conflict(
            f"a mesh is already running from {layout.root} (pid {info.supervisor_pid}); "
            "use it, stop it with `trellis down`, or start another with --state-dir DIR"
        )


def _clean_stale(layout: Layout) -> None:
    """A mesh whose supervisor died (e.g. a reboot) leaves namespaces behind: remove them."""
    if layout.mesh_file.exists():
        err_console.print("Cleaning up what a previous mesh left behind...")
        _teardown(layout)


def _check_port_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as e:
            raise Conflict(
                f"ingress port {port} is in use ({e.strerror}); free it or pass --ingress-port PORT"
            ) from e


def _wait_up(layout: Layout, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + UP_TIMEOUT_S
    with err_console.status("Starting trellisd and the ingress gateway..."):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeProblem(
                    "the mesh failed to start; supervisor log:\n"
                    + log_tail(layout.logs / "supervisor.log", 25)
                )
            info = MeshInfo.load(layout.mesh_file)
            if info is not None and info.ready:
                return
            time.sleep(0.1)
    raise RuntimeProblem(
        f"the mesh was not ready after {UP_TIMEOUT_S:.0f}s; see {layout.logs}/supervisor.log"
    )


def down(state_dir: Path | None = StateDirOption) -> None:
    """Stop everything the mesh started and remove its namespaces, iptables rules and addresses."""
    layout = layout_for(state_dir)
    info = MeshInfo.load(layout.mesh_file)
    if info is None and not layout.runtime_socket.exists():
        console.print(f"No mesh is running from {layout.root}.")
        return
    with err_console.status("Stopping workloads, gateways and trellisd..."):
        try:
            runtime(layout).call("POST", "/shutdown", timeout=10)
        except TrellisError:
            pass
        if info is not None:
            _wait_exit(info.supervisor_pid, 60.0)
        _teardown(layout, info)
    console.print("Mesh stopped and cleaned up.")


def _teardown(layout: Layout, known: MeshInfo | None = None) -> None:
    """Kill whatever is left by PID and remove every host object carrying the mesh's prefix."""
    info = MeshInfo.load(layout.mesh_file) or known
    for pid in _recorded_pids(layout, info):
        _kill_group(pid)
    # Without capture nothing was created on the host; without root nothing could have been.
    if (info is None or not info.proxy_mode) and os.geteuid() == 0:
        teardown(info.prefix if info else mesh_prefix(layout.root))
    for path in (
        layout.mesh_file,
        layout.runtime_socket,
        layout.trellisd_socket,
        layout.workloads_file,
    ):
        path.unlink(missing_ok=True)


def _recorded_pids(layout: Layout, info: MeshInfo | None) -> list[int]:
    pids = [info.supervisor_pid] if info else []
    try:
        records: dict[str, Any] = json.loads(layout.workloads_file.read_text())
    except (OSError, ValueError):
        records = {}
    pids += [int(r.get("pid", 0)) for r in records.values()]
    return [p for p in pids if p > 0]


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def status(
    output: Format = typer.Option(Format.table, "-o", "--output"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Show whether the mesh is up, its components and its proxies' sync state."""
    layout = layout_for(state_dir)
    info = mesh_info(layout)
    rt = runtime(layout).call("GET", "/status")
    if output is not Format.table:
        print_object({"mesh": asdict(info), **rt}, output)
        return
    console.print(
        f"Mesh: {'ready' if rt['ready'] else 'starting'} (state dir {layout.root}, "
        f"prefix {info.prefix}, subnet {info.subnet}, capture {info.capture})"
    )
    console.print(f"Ingress gateway: http://127.0.0.1:{info.ingress_port}/")
    _print_tracing(info)
    print_prometheus(info)
    print_console(info)
    for c in rt["components"]:
        state = "running" if c["alive"] else "DOWN"
        console.print(f"  {c['name']:<24} {state:<8} pid {c['pid']:<8} restarts {c['restarts']}")
    try:
        proxies = trellisd(layout).call("GET", "/proxy-status")["proxies"]
        synced = sum(1 for p in proxies if p["synced"])
        console.print(f"Proxies: {len(proxies)} connected, {synced} synced")
    except TrellisError as e:
        err_console.print(f"trellisd: {e}")
    workloads = runtime(layout).call("GET", "/workloads")["items"]
    console.print(f"Workloads: {len(workloads)}")
