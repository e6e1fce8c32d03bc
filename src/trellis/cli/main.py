"""The `trellis` command: one typer app; each command group lives in its own module."""

from __future__ import annotations

import sys

import typer

from trellis.cli import analyze, ca, config, demo, kube, mesh, proxy, tracing, workloads, x
from trellis.cli import console as console_cli
from trellis.cli import kube_cluster as cluster_cli
from trellis.cli import release_mirror as mirror_cli
from trellis.cli.output import err_console
from trellis.errors import TrellisError

app = typer.Typer(
    name="trellis",
    help="Trellis: an Istio-compatible service mesh. Start with `trellis demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(mesh.up)
app.command()(mesh.down)
app.command()(mesh.status)
app.command()(demo.demo)
app.command()(workloads.run)
app.command("exec")(workloads.exec_)
app.command()(workloads.ps)
app.command()(workloads.logs)
app.command()(workloads.stop)
app.command()(config.apply)
app.command()(config.delete)
app.command()(config.get)
app.command()(analyze.analyze)
app.command("proxy-status")(proxy.proxy_status)
app.command("proxy-config")(proxy.proxy_config)
app.command()(tracing.tracing)
app.add_typer(x.app, name="x")
app.add_typer(console_cli.app, name="console")
app.add_typer(ca.app, name="ca")
app.add_typer(kube.manifest_app, name="manifest")
app.add_typer(mirror_cli.app, name="release-mirror")
app.command("kube-inject")(kube.kube_inject)
app.command()(kube.install)
app.command()(kube.upgrade)
app.command()(kube.uninstall)
app.command("verify-install")(kube.verify_install)
x.app.command("precheck")(kube.x_precheck)
x.app.command("check-inject")(cluster_cli.check_inject)


def main() -> None:
    try:
        app()
    except TrellisError as e:
        err_console.print(f"error: {e}", markup=False)
        sys.exit(1)
