"""`trellis x workload-entry configure`: what a host outside `trellis run` needs to join.

Like `istioctl x workload entry configure`: for a WorkloadGroup it writes a join token, the
mesh's root certificate (to verify trellisd), a `cluster.env` with the group's identity and
trellisd's xDS address, and the exact `trellis-agent --join` command line to run there.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from trellis.agent import join
from trellis.ca import store as ca_store
from trellis.ca.identity import JoinTokenIssuer
from trellis.cli.common import StateDirOption, layout_for, mesh_info, trellisd
from trellis.cli.output import console
from trellis.errors import NotFound
from trellis.registry.workload_entries import group_grant
from trellis.runtime.layout import Layout

app = typer.Typer(help="WorkloadEntries: workloads outside `trellis run`.", no_args_is_help=True)

TOKEN_FILE = "join-token"
ROOT_CERT_FILE = "root-cert.pem"
CLUSTER_ENV_FILE = "cluster.env"
COMMAND_FILE = "agent-command"
TOKEN_TTL = timedelta(days=365)  # as `trellis run`: Envoy presents it on every reconnect


@app.command("configure")
def configure(
    group: str = typer.Option(..., "--group", help="The WorkloadGroup to join"),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    output_dir: Path = typer.Option(..., "-o", "--output", help="Directory to write into"),
    app_command: list[str] = typer.Argument(None, help="-- CMD ARGS: the app the agent starts"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Write the join token, root cert, cluster.env and agent command for one group."""
    layout = layout_for(state_dir)
    spec = _group_spec(layout, group, namespace)
    template: dict[str, Any] = spec.get("template", {})
    output_dir.mkdir(parents=True, exist_ok=True)
    token = _write_token(layout, output_dir, namespace, template, group)
    root = _copy_root_cert(layout, output_dir)
    env = _cluster_env(layout, namespace, group, spec, root)
    (output_dir / CLUSTER_ENV_FILE).write_text(join.render_cluster_env(env))
    command = agent_command(output_dir, token, root, capture=mesh_info(layout).capture)
    command += ["--", *app_command] if app_command else []
    (output_dir / COMMAND_FILE).write_text(shlex.join(command) + "\n")
    written = [TOKEN_FILE, CLUSTER_ENV_FILE, COMMAND_FILE, *([ROOT_CERT_FILE] if root else [])]
    console.print(f"wrote {', '.join(written)} to {output_dir}; run on the host:")
    console.print(shlex.join(command), soft_wrap=True, highlight=False)


def agent_command(out: Path, token: Path, root: Path | None, *, capture: str) -> list[str]:
    """The command line that joins the mesh from the host that holds `out`."""
    agent = Path(sys.executable).parent / "trellis-agent"
    argv = [str(agent) if agent.exists() else "trellis-agent", "--join", str(token)]
    argv += ["--cluster-env", str(out / CLUSTER_ENV_FILE), "--state-dir", str(out / "agent")]
    argv += ["--capture", "iptables" if capture == "iptables" else "none"]
    return argv + (["--xds-root-cert", str(root)] if root else [])


def _group_spec(layout: Layout, group: str, namespace: str) -> dict[str, Any]:
    query = f"/resources?kind=WorkloadGroup&namespace={namespace}&name={group}"
    items = trellisd(layout).call("GET", query)["items"]
    if not items:
        raise NotFound(
            f"no WorkloadGroup {group} in namespace {namespace}; apply one first "
            "(`trellis get workloadgroups -n NS` lists them)"
        )
    return dict(items[0].get("spec", {}))


def _write_token(
    layout: Layout, out: Path, namespace: str, template: dict[str, Any], group: str
) -> Path:
    issuer = JoinTokenIssuer(ca_store.load_or_create_token_key(layout.root))
    token = issuer.mint(
        namespace=namespace,
        service_account=str(template.get("serviceAccount") or "default"),
        workload=group_grant(group),
        now=datetime.now(UTC),
        ttl=TOKEN_TTL,
    )
    path = out / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return path


def _copy_root_cert(layout: Layout, out: Path) -> Path | None:
    """trellisd's trust bundle; absent when trellisd runs with --insecure-xds."""
    if not layout.xds_root_cert.exists():
        return None
    return Path(shutil.copyfile(layout.xds_root_cert, out / ROOT_CERT_FILE))


def _cluster_env(
    layout: Layout, namespace: str, group: str, spec: dict[str, Any], root: Path | None
) -> dict[str, str]:
    template: dict[str, Any] = spec.get("template", {})
    meta: dict[str, Any] = spec.get("metadata") or {}
    labels = {**template.get("labels", {}), **meta.get("labels", {})}
    info = mesh_info(layout)
    env = {
        join.ENV_NAMESPACE: namespace,
        join.ENV_GROUP: group,
        join.ENV_SERVICE_ACCOUNT: str(template.get("serviceAccount") or "default"),
        join.ENV_LABELS: ",".join(f"{k}={v}" for k, v in labels.items()),
        join.ENV_APP_PORTS: ",".join(
            str(p) for p in sorted(set(template.get("ports", {}).values()))
        ),
        join.ENV_XDS_ADDRESS: f"{info.bridge_ip}:{info.xds_port}",
    }
    if root is not None:
        env[join.ENV_XDS_ROOT_CERT] = str(root)
    return env
