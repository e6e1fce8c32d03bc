"""trellisd as a child process, and the light ADS clients that stand in for its proxies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from bench.common import die_with_parent
from bench.cp_fixture import MeshShape
from trellis.runtime.client import LocalApi
from trellis.xds.lightclient import LightAdsClient

MAX_MESSAGE = 256 * 1024 * 1024  # a 5 000-service CDS response is larger than gRPC's 4 MB default


class CountingClient(LightAdsClient):
    """A light client that also counts the bytes of every response it gets."""

    bytes_received = 0

    async def _on_delta(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:
        self.bytes_received += response.ByteSize()
        await super()._on_delta(response)

    async def _on_sotw(self, response: discovery_pb2.DiscoveryResponse) -> None:
        self.bytes_received += response.ByteSize()
        await super()._on_sotw(response)


def proxy_client(target: str, shape: MeshShape, i: int) -> CountingClient:
    """The sidecar of service i's first workload, as its agent would identify it."""
    from bench.cp_fixture import workload_ip

    name, namespace = f"{shape.service(i)}-0", shape.namespace(i)
    node_id = f"sidecar~{workload_ip(i, 0)}~{name}.{namespace}~{namespace}.svc.cluster.local"
    metadata = {
        "NAME": name,
        "NAMESPACE": namespace,
        "LABELS": {"app": shape.service(i), "version": "v1"},
    }
    options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
    # follow=False: wildcard EDS/RDS subscriptions get the same resources as following the
    # clusters' and listeners' names (every outbound cluster is EDS), without unpacking 15 000
    # clusters per proxy in this one Python process, which would make the clients the bottleneck.
    return CountingClient(target, node_id, metadata=metadata, channel_options=options, follow=False)


@dataclass
class Trellisd:
    """One trellisd child process on a state dir, its xDS port and its local API."""

    state_dir: Path
    xds_port: int
    profile: Path | None = None  # run under cProfile, stats written here on exit
    log_level: str = "WARNING"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> LocalApi:
        return LocalApi(self.state_dir / "trellisd.sock", "trellisd")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        # As `trellis up` runs it (the runtime's supervisor): the module, with this interpreter.
        argv = [sys.executable, "-m", "trellis.controlplane.app"]
        if self.profile is not None:
            argv[1:1] = ["-m", "cProfile", "-o", str(self.profile)]
        argv += ["--state-dir", str(self.state_dir), "--no-hosts", "--log-level", self.log_level]
        # Plaintext xDS without join tokens: the light clients speak neither TLS nor tokens.
        argv += ["--xds-address", f"127.0.0.1:{self.xds_port}", "--insecure-xds"]
        log = open(self.state_dir / "trellisd.log", "ab")  # noqa: SIM115 - the child's stderr
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=log, env=dict(os.environ), preexec_fn=die_with_parent
        )
        log.close()

    async def wait_ready(self, timeout: float) -> str:
        """Poll /healthz until trellisd answers; returns its snapshot version."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"trellisd exited; see {self.state_dir / 'trellisd.log'}")
            try:
                return await self.version()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def version(self) -> str:
        body: dict[str, Any] = await self.api.acall("GET", "/healthz", timeout=60)
        return str(body["version"])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: by this process's own PID only."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
