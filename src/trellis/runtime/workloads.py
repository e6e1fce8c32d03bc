"""Workloads and gateways of the local runtime: a network namespace ("pod") + agent + app.

Without capture (`--capture=proxy`) a pod is a loopback address instead (runtime/loopback.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trellis.ca import store as ca_store
from trellis.ca.identity import JoinTokenIssuer
from trellis.errors import Conflict, TrellisError
from trellis.model import names
from trellis.runtime import loopback
from trellis.runtime.children import Child, log_tail
from trellis.runtime.client import LocalApi
from trellis.runtime.layout import Layout, MeshInfo
from trellis.runtime.netns import MeshNetwork

log = logging.getLogger("trellis.runtime")

INGRESS_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
EGRESS_LABELS = {"istio": "egressgateway", "app": "istio-egressgateway"}
READY_TIMEOUT_S = 45.0
# A join token lives as long as its workload may: Envoy presents it again on every reconnect
# (trellisd restarts), and a restarted agent reuses it. Stopping the workload removes it.
JOIN_TOKEN_TTL = timedelta(days=365)
JOIN_TOKEN_FILE = "join-token"


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What `trellis run` asks for."""

    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    service_account: str = "default"
    sidecar: bool = True
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    router: bool = False

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WorkloadSpec:
        return cls(
            name=str(body["name"]),
            namespace=str(body.get("namespace") or "default"),
            labels={str(k): str(v) for k, v in dict(body.get("labels") or {}).items()},
            ports=tuple(int(p) for p in body.get("ports") or ()),
            service_account=str(body.get("serviceAccount") or "default"),
            sidecar=bool(body.get("sidecar", True)),
            command=tuple(str(c) for c in body.get("command") or ()),
            env={str(k): str(v) for k, v in dict(body.get("env") or {}).items()},
            cwd=body.get("cwd"),
        )


@dataclass
class RunningWorkload:
    spec: WorkloadSpec
    ip: str
    netns: str
    child: Child
    started_at: float = field(default_factory=time.monotonic)
    # Without capture: where the app listens and what `trellis exec` adds to a command's env.
    app_host: str = ""
    mesh_env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "namespace": self.spec.namespace,
            "ip": self.ip,
            "netns": self.netns,
            "appHost": self.app_host,
            "env": dict(self.mesh_env),
            "labels": dict(self.spec.labels),
            "ports": list(self.spec.ports),
            "serviceAccount": self.spec.service_account,
            "sidecar": self.spec.sidecar,
            "command": list(self.spec.command),
            "pid": self.child.pid,
            "alive": self.child.alive(),
            "restarts": self.child.restarts,
        }


class WorkloadManager:
    def __init__(
        self, layout: Layout, info: MeshInfo, network: MeshNetwork | None, trellisd: LocalApi
    ):
        self.layout = layout
        self.info = info
        self.network = network
        self.trellisd = trellisd
        self.running: dict[tuple[str, str], RunningWorkload] = {}
        self.gateways: list[Child] = []
        self.components: list[Child] = []  # trellisd: recorded so `down` can kill it by PID
        self._lock = asyncio.Lock()
        self._tokens: JoinTokenIssuer | None = None

    def _write_join_token(self, spec: WorkloadSpec, wdir: Path) -> Path:
        """Mint the agent's join token into a 0600 file (never on a command line)."""
        if self._tokens is None:
            self._tokens = JoinTokenIssuer(ca_store.load_or_create_token_key(self.layout.root))
        token = self._tokens.mint(
            namespace=spec.namespace,
            service_account=spec.service_account,
            workload=spec.name,
            now=datetime.now(UTC),
            ttl=JOIN_TOKEN_TTL,
        )
        path = wdir / JOIN_TOKEN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return path

    # -- workloads ------------------------------------------------------------------------------

    async def run(self, spec: WorkloadSpec) -> dict[str, Any]:
        async with self._lock:
            key = (spec.namespace, spec.name)
            if key in self.running:
                raise Conflict(
                    f"workload {spec.name} already exists in namespace {spec.namespace}; "
                    f"stop it first with `trellis stop {spec.name} -n {spec.namespace}`"
                )
            ip = self._allocate_ip()
            if self.network is None:
                wl = self._loopback_workload(spec, ip)
            else:
                netns = f"{self.info.prefix}-{spec.namespace}-{spec.name}"
                await asyncio.to_thread(self.network.create_pod, netns, ip)
                wl = RunningWorkload(spec, ip, netns, self._child_for(spec, ip, netns))
            self.running[key] = wl
        try:
            await self._register(wl)
            await wl.child.start()
            await self._wait_ready(wl)
        except BaseException:
            await self._remove(wl)
            raise
        self.save()
        log.info("event=workload-started name=%s namespace=%s ip=%s", spec.name, spec.namespace, ip)
        return wl.describe()

    async def stop(self, namespace: str, name: str) -> bool:
        wl = self.running.get((namespace, name))
        if wl is None:
            return False
        await self._remove(wl)
        self.save()
        return True

    async def stop_all(self) -> None:
        # Everything drains at once: a mesh going down has no traffic to protect between hops.
        await asyncio.gather(
            *(self._remove(wl) for wl in list(self.running.values())),
            *(gw.stop() for gw in self.gateways),
        )
        self.save()

    async def restart_dead(self) -> None:
        for wl in list(self.running.values()):
            if wl.child.proc is not None and not wl.child.alive():
                log.warning("event=restart workload=%s.%s", wl.spec.name, wl.spec.namespace)
                await wl.child.restart()
        for gw in self.gateways:
            if not gw.alive():
                log.warning("event=restart component=%s", gw.name)
                await gw.restart()

    def describe(self) -> list[dict[str, Any]]:
        return [wl.describe() for wl in self.running.values()]

    def describe_gateways(self) -> list[dict[str, Any]]:
        return [gw.describe() for gw in self.gateways]

    async def _remove(self, wl: RunningWorkload) -> None:
        self.running.pop((wl.spec.namespace, wl.spec.name), None)
        await wl.child.stop()
        try:
            await self.trellisd.acall("DELETE", f"/workloads/{wl.spec.namespace}/{wl.spec.name}")
        except TrellisError as e:
            log.info("event=deregister-skipped name=%s reason=%s", wl.spec.name, e)
        if self.network is not None and wl.netns:
            await asyncio.to_thread(self.network.delete_pod, wl.netns)

    async def _register(self, wl: RunningWorkload) -> None:
        body = {
            "ip": wl.ip,
            "labels": dict(wl.spec.labels),
            "serviceAccount": wl.spec.service_account,
            # A gateway's listeners are the plain servers its Gateway resources declare:
            # sidecars must not auto-mTLS to it (docs/DECISIONS.md, ServiceEntry and egress).
            "hasSidecar": wl.spec.sidecar and not wl.spec.router,
            "ports": list(wl.spec.ports),
            "netns": wl.netns,
        }
        await self.trellisd.acall("PUT", f"/workloads/{wl.spec.namespace}/{wl.spec.name}", body)

    def _allocate_ip(self) -> str:
        used = {wl.ip for wl in self.running.values()} | {self.info.bridge_ip}
        net = ipaddress.IPv4Network(self.info.subnet)
        for host in net.hosts():
            if str(host) not in used and int(host) - int(net.network_address) > 1:
                return str(host)
        raise TrellisError(f"no free address left in {self.info.subnet}")

    def _loopback_workload(self, spec: WorkloadSpec, ip: str) -> RunningWorkload:
        """Without capture: the app on its private address (the pod address itself when it
        has no sidecar), after checking that nothing holds the ports it will need."""
        app_host = loopback.app_address(ip) if spec.sidecar else ip
        proxy_port = [names.HTTP_PROXY_PORT] if spec.sidecar else []
        loopback.check_ports_free([ip], [*spec.ports, *proxy_port])
        loopback.check_ports_free([app_host], spec.ports)
        mesh_env = loopback.app_env(ip, app_host, sidecar=spec.sidecar)
        child = self._child_for(spec, ip, "", extra_env=mesh_env, app_host=app_host)
        return RunningWorkload(spec, ip, "", child, app_host=app_host, mesh_env=mesh_env)

    def _child_for(
        self,
        spec: WorkloadSpec,
        ip: str,
        netns: str,
        *,
        extra_env: Mapping[str, str] | None = None,
        app_host: str = "",
    ) -> Child:
        """In the pod's namespace (`ip netns exec`), or without capture in the host network."""
        wdir = self.layout.workload_dir(spec.namespace, spec.name)
        shutil.rmtree(wdir, ignore_errors=True)
        wdir.mkdir(parents=True)
        env = {**_workload_env(spec, ip), **(extra_env or {})}
        in_pod = ["ip", "netns", "exec", netns] if netns else []
        if spec.sidecar:
            argv = self._agent_argv(spec, ip, wdir, capture=not spec.router and bool(netns))
            if not netns:
                argv += _uncaptured_agent_args(app_host)
            argv += ["--", *spec.command] if spec.command else []
            return Child(
                f"{spec.name}.{spec.namespace}",
                [*in_pod, *argv],
                wdir / "agent.log",
                env=env,
                cwd=spec.cwd,
            )
        return Child(
            f"{spec.name}.{spec.namespace}",
            [*in_pod, *spec.command],
            wdir / "app.log",
            env=env,
            cwd=spec.cwd,
        )

    def _agent_argv(self, spec: WorkloadSpec, ip: str, wdir: Any, *, capture: bool) -> list[str]:
        labels = ",".join(f"{k}={v}" for k, v in spec.labels.items())
        argv = [
            sys.executable,
            "-m",
            "trellis.agent.main",
            "--type",
            "router" if spec.router else "sidecar",
            "--name",
            spec.name,
            "--namespace",
            spec.namespace,
            "--ip",
            ip,
            "--service-account",
            spec.service_account,
            "--xds-address",
            f"{self.info.bridge_ip}:{self.info.xds_port}",
            "--state-dir",
            str(wdir),
            "--ready-file",
            str(wdir / "ready"),
            "--capture",
            "iptables" if capture else "none",
            "--restart-app",
            "--token-file",
            str(self._write_join_token(spec, Path(wdir))),
        ]
        if self.layout.xds_root_cert.exists():  # absent: trellisd runs with --insecure-xds
            argv += ["--xds-root-cert", str(self.layout.xds_root_cert)]
        if labels:
            argv += ["--labels", labels]
        if spec.ports and spec.command:
            argv += ["--app-ports", ",".join(str(p) for p in spec.ports)]
        return argv

    async def _wait_ready(self, wl: RunningWorkload) -> None:
        wdir = self.layout.workload_dir(wl.spec.namespace, wl.spec.name)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not wl.child.alive():
                raise TrellisError(
                    f"workload {wl.spec.name} exited during start-up; its log says:\n"
                    + log_tail(wl.child.log_path)
                )
            if await self._is_ready(wl, wdir):
                return
            await asyncio.sleep(0.1)
        raise TrellisError(
            f"workload {wl.spec.name} was not ready after {READY_TIMEOUT_S:.0f}s; its log says:\n"
            + log_tail(wl.child.log_path)
        )

    async def _is_ready(self, wl: RunningWorkload, wdir: Any) -> bool:
        if wl.spec.sidecar:
            return bool((wdir / "ready").exists())
        if not wl.spec.ports:
            # Nothing to probe: alive for a moment counts (a crash at start-up shows first).
            return time.monotonic() - wl.started_at > 0.5
        return all([await _port_open(wl.app_host or wl.ip, p) for p in wl.spec.ports])

    # -- gateways -------------------------------------------------------------------------------

    async def start_gateways(self) -> None:
        await self.trellisd.acall("POST", "/apply", {"yaml": _gateway_services(self.info)})
        await self._start_ingress()
        if self.info.egress_gateway:
            await self.run(
                WorkloadSpec(
                    name="istio-egressgateway",
                    namespace="istio-system",
                    labels=EGRESS_LABELS,
                    service_account="istio-egressgateway-service-account",
                    router=True,
                )
            )

    async def _start_ingress(self) -> None:
        name, ns = "istio-ingressgateway", "istio-system"
        wdir = self.layout.workload_dir(ns, name)
        shutil.rmtree(wdir, ignore_errors=True)
        wdir.mkdir(parents=True)
        admin, stats, ready = (_free_port() for _ in range(3))
        self.info.gateway_ports = {"admin": admin, "stats": stats, "ready": ready}
        spec = WorkloadSpec(
            name=name,
            namespace=ns,
            labels=INGRESS_LABELS,
            router=True,
            service_account="istio-ingressgateway-service-account",
        )
        argv = self._agent_argv(spec, self.info.bridge_ip, wdir, capture=False)
        argv += ["--admin-port", str(admin), "--stats-port", str(stats), "--ready-port", str(ready)]
        await self.trellisd.acall(
            "PUT",
            f"/workloads/{ns}/{name}",
            {
                "ip": self.info.bridge_ip,
                "labels": INGRESS_LABELS,
                "hasSidecar": True,
                "serviceAccount": spec.service_account,
                "ports": [self.info.ingress_port],
            },
        )
        child = Child(name, argv, wdir / "agent.log", env=_workload_env(spec, self.info.bridge_ip))
        await child.start()
        self.gateways.append(child)
        wl = RunningWorkload(spec, self.info.bridge_ip, "", child)
        await self._wait_ready(wl)

    def save(self) -> None:
        records = {f"{ns}/{n}": wl.describe() for (ns, n), wl in self.running.items()}
        records.update({f"gateway/{gw.name}": gw.describe() for gw in self.gateways})
        records.update({f"component/{c.name}": c.describe() for c in self.components})
        tmp = self.layout.workloads_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=2))
        tmp.replace(self.layout.workloads_file)


def _gateway_services(info: MeshInfo) -> str:
    """The gateways' own Services, mapping Istio's port 80 (and 8080) to the ingress host port."""
    p = info.ingress_port
    docs = [
        "apiVersion: v1\nkind: Service\nmetadata: {name: istio-ingressgateway, namespace: istio-system}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  ports:\n"
        f"  - {{name: http2, port: 80, targetPort: {p}}}\n"
        f"  - {{name: http-alt, port: 8080, targetPort: {p}}}\n"
    ]
    if info.egress_gateway:
        docs.append(
            "apiVersion: v1\nkind: Service\nmetadata: {name: istio-egressgateway, namespace: istio-system}\n"
            "spec:\n  selector: {istio: egressgateway}\n  ports:\n"
            "  - {name: http2, port: 80, targetPort: 8080}\n  - {name: https, port: 443, targetPort: 8443}\n"
        )
    return "---\n".join(docs)


def _workload_env(spec: WorkloadSpec, ip: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TERM")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(spec.env)
    env.update(
        {
            "TRELLIS_WORKLOAD_NAME": spec.name,
            "POD_NAME": spec.name,
            "POD_NAMESPACE": spec.namespace,
            "INSTANCE_IP": ip,
            "SERVICE_ACCOUNT": spec.service_account,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if "version" in spec.labels:
        env.setdefault("SERVICE_VERSION", spec.labels["version"])
    return env


def _uncaptured_agent_args(app_host: str) -> list[str]:
    """A sidecar in the host network: own admin/stats/ready ports, no capture (DESIGN §7)."""
    admin, stats, ready = (_free_port() for _ in range(3))
    return [
        "--interception-mode",
        "NONE",
        "--app-host",
        app_host,
        "--admin-port",
        str(admin),
        "--stats-port",
        str(stats),
        "--ready-port",
        str(ready),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _port_open(ip: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
