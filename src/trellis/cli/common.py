"""What every command shares: the state directory option and the two local APIs."""

from __future__ import annotations

from pathlib import Path

import typer

from trellis.errors import RuntimeProblem
from trellis.runtime.client import LocalApi
from trellis.runtime.layout import Layout, MeshInfo, default_state_dir

StateDirOption = typer.Option(
    None,
    "--state-dir",
    help="Mesh state directory [default: $TRELLIS_STATE_DIR or /var/lib/trellis]",
)


def layout_for(state_dir: Path | None) -> Layout:
    return Layout((state_dir or default_state_dir()).resolve())


def trellisd(layout: Layout) -> LocalApi:
    return LocalApi(layout.trellisd_socket, "trellisd")


def runtime(layout: Layout) -> LocalApi:
    return LocalApi(layout.runtime_socket, "the Trellis runtime")


def mesh_info(layout: Layout) -> MeshInfo:
    info = MeshInfo.load(layout.mesh_file)
    if info is None:
        raise RuntimeProblem(f"no mesh is running from {layout.root}; start one with `trellis up`")
    return info


def split_name(name: str, namespace: str | None) -> tuple[str, str]:
    """`NAME` + -n NS, or `NAME.NS` (how proxy-status prints proxies)."""
    if namespace:
        return name, namespace
    if "." in name:
        base, _, ns = name.partition(".")
        return base, ns
    return name, "default"
