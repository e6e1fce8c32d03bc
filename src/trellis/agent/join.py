"""`trellis-agent --join`: a workload outside `trellis run` that registers itself (a "VM").

`trellis x workload-entry configure` writes a join token for a WorkloadGroup and a
`cluster.env` (Istio's name for the VM's settings file). With them the agent fills in what
`trellis run` would otherwise pass: namespace, service account, labels, app ports, trellisd's
xDS address, and the proxy name trellisd expects, `<group>-<ip>`. The address is the one the
host reaches trellisd from, unless `--ip` says otherwise.
"""

from __future__ import annotations

import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

from trellis.registry.workload_entries import auto_entry_name

# cluster.env keys (written by `trellis x workload-entry configure`).
ENV_NAMESPACE = "TRELLIS_NAMESPACE"
ENV_GROUP = "TRELLIS_WORKLOAD_GROUP"
ENV_SERVICE_ACCOUNT = "TRELLIS_SERVICE_ACCOUNT"
ENV_LABELS = "TRELLIS_LABELS"
ENV_APP_PORTS = "TRELLIS_APP_PORTS"
ENV_XDS_ADDRESS = "TRELLIS_XDS_ADDRESS"
ENV_XDS_ROOT_CERT = "TRELLIS_XDS_ROOT_CERT"


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """What the command line said; None where it left a value to cluster.env or detection."""

    token: str
    group: str | None
    namespace: str | None
    service_account: str | None
    labels: str | None
    app_ports: str | None
    xds_address: str | None
    xds_root_cert: Path | None
    ip: str | None
    cluster_env: dict[str, str]


@dataclass(frozen=True, slots=True)
class JoinSettings:
    """The resolved identity and addresses of a joining workload."""

    token: str
    group: str
    name: str
    namespace: str
    service_account: str
    labels: str
    app_ports: str
    xds_address: str
    xds_root_cert: Path | None
    ip: str


def read_token(value: str) -> str:
    """`--join` takes the token itself or a file holding it (keeps it out of `ps`)."""
    path = Path(value)
    if not value.startswith("tj1.") and path.exists():
        return path.read_text().strip()
    return value.strip()


def parse_cluster_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines with shell quoting; blank lines and comments are skipped."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        for word in words:
            key, sep, value = word.partition("=")
            if sep and key:
                values[key] = value
    return values


def resolve(request: JoinRequest, detect_ip: bool = True) -> JoinSettings:
    """Fill the gaps from cluster.env, then detect the address trellisd will see."""
    env = request.cluster_env
    group = request.group or env.get(ENV_GROUP, "")
    if not group:
        raise SystemExit("trellis-agent: --join needs --group NAME (or cluster.env)")
    xds = request.xds_address or env.get(ENV_XDS_ADDRESS, "")
    if not xds:
        raise SystemExit("trellis-agent: --join needs --xds-address (or cluster.env)")
    ip = request.ip or (local_address_towards(xds) if detect_ip else "")
    root = request.xds_root_cert or _optional_path(env.get(ENV_XDS_ROOT_CERT, ""))
    return JoinSettings(
        token=request.token,
        group=group,
        name=auto_entry_name(group, ip),
        namespace=request.namespace or env.get(ENV_NAMESPACE, "default"),
        service_account=request.service_account or env.get(ENV_SERVICE_ACCOUNT, "default"),
        labels=request.labels if request.labels is not None else env.get(ENV_LABELS, ""),
        app_ports=request.app_ports
        if request.app_ports is not None
        else env.get(ENV_APP_PORTS, ""),
        xds_address=xds,
        xds_root_cert=root,
        ip=ip,
    )


def local_address_towards(address: str) -> str:
    """The source address this host uses to reach HOST:PORT (a UDP connect sends nothing)."""
    host, _, port = address.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host.strip("[]"), int(port or 15010)))
        except OSError as err:
            raise SystemExit(f"trellis-agent: no route to trellisd at {address}: {err}") from None
        return str(probe.getsockname()[0])


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def render_cluster_env(values: dict[str, str]) -> str:
    """The file `parse_cluster_env` reads back: one shell-quoted KEY=VALUE a line."""
    lines = ["# trellis-agent --join settings (trellis x workload-entry configure)"]
    lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"
