"""Where a mesh keeps its files: everything lives under one state directory."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

XDS_ROOT_FILE = "xds-root-cert.pem"  # written by trellisd: the roots its xDS cert chains to


def default_state_dir() -> Path:
    """$TRELLIS_STATE_DIR, else /var/lib/trellis for root, else ~/.trellis."""
    env = os.environ.get("TRELLIS_STATE_DIR")
    if env:
        return Path(env).resolve()
    if os.geteuid() == 0:
        return Path("/var/lib/trellis")
    return Path.home() / ".trellis"


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def mesh_file(self) -> Path:
        return self.root / "mesh.json"

    @property
    def runtime_socket(self) -> Path:
        return self.root / "runtime.sock"

    @property
    def trellisd_socket(self) -> Path:
        return self.root / "trellisd.sock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def workload_dir(self, namespace: str, name: str) -> Path:
        return self.root / "workloads" / namespace / name

    @property
    def workloads_file(self) -> Path:
        return self.root / "workloads.json"

    @property
    def xds_root_cert(self) -> Path:
        return self.root / XDS_ROOT_FILE


@dataclass(slots=True)
class MeshInfo:
    """What `trellis up` decided, kept in mesh.json for every later command and for cleanup."""

    prefix: str
    subnet: str
    bridge_ip: str
    ingress_port: int
    xds_port: int = 15010
    egress_gateway: bool = False
    supervisor_pid: int = 0
    started_at: float = 0.0
    ready: bool = False
    gateway_ports: dict[str, int] = field(default_factory=dict)
    # "iptables": pods are network namespaces with capture; "proxy": loopback addresses, apps
    # reach their sidecar through HTTP_PROXY (DESIGN §7). `trellis run` follows it.
    capture: str = "iptables"
    # The trace store (`trellis tracing`): where proxies send spans (HOST:PORT, OTLP/gRPC) and
    # the Jaeger query API's port on 127.0.0.1; "" and 0 when started with --no-tracing.
    tracing_address: str = ""
    tracing_query_port: int = 0
    trace_sampling: float = 1.0
    # trellisd's Prometheus metrics (istiod's http-monitoring 15014) on bridge_ip; Prometheus
    # itself (`trellis up --prometheus`) on 127.0.0.1:prometheus_port, 0 when not running.
    monitoring_port: int = 15014
    prometheus_port: int = 0
    # The console (`trellis console`) on 127.0.0.1:console_port, 0 with --no-console; the roles
    # besides cluster-admin the operator granted (`--console-roles admin,edit,view`).
    console_port: int = 0
    console_roles: str = ""

    @property
    def proxy_mode(self) -> bool:
        return self.capture == "proxy"

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> MeshInfo | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(**data)
