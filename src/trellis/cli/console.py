"""`trellis console` (run the console in the foreground) and `trellis console token`."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import typer

from trellis.cli.common import StateDirOption, layout_for
from trellis.console.auth import (
    DEFAULT_SESSION_TTL_S,
    DEFAULT_TOKEN_TTL_S,
    Role,
    issue_token,
    load_or_create_keys,
)
from trellis.console.context import ConsoleSettings
from trellis.console.metrics_source import DEFAULT_SCRAPE_INTERVAL_S
from trellis.console.run import DEFAULT_PORT, allowed_roles, serve
from trellis.errors import TrellisError
from trellis.runtime.layout import MeshInfo

app = typer.Typer(
    help="The web console (Kiali's role): traffic graph, health, config, traces.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def console(
    ctx: typer.Context,
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to serve on"),
    address: str = typer.Option("127.0.0.1", "--address", help="Address to bind"),
    console_roles: str | None = typer.Option(
        None,
        "--console-roles",
        help="Roles besides cluster-admin allowed in: admin,edit,view "
        "(default: what `trellis up --console-roles` granted)",
    ),
    session_ttl: float = typer.Option(
        DEFAULT_SESSION_TTL_S, "--session-ttl", min=1.0, help="Session lifetime in seconds"
    ),
    prometheus_url: str = typer.Option(
        "", "--prometheus-url", help="Read metrics with PromQL from this Prometheus"
    ),
    scrape_interval: float = typer.Option(
        DEFAULT_SCRAPE_INTERVAL_S,
        "--scrape-interval",
        min=0.2,
        help="Seconds between the embedded scrapes of the proxies",
    ),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Run the console in the foreground against the running mesh (Ctrl-C stops it).

    Log in with a token from `trellis console token`."""
    if ctx.invoked_subcommand is not None:
        return
    layout = layout_for(state_dir)
    info = MeshInfo.load(layout.mesh_file)
    try:
        roles = allowed_roles(console_roles, info.console_roles if info else "")
    except ValueError as e:
        raise TrellisError(f"--console-roles: {e}") from e
    settings = ConsoleSettings(
        state_dir=layout.root,
        allowed_roles=roles,
        session_ttl=session_ttl,
        prometheus_url=prometheus_url,
        scrape_interval=scrape_interval,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(settings, address, port))


@app.command()
def token(
    role: Role = typer.Option(Role.CLUSTER_ADMIN, "--role", help="cluster-admin|admin|edit|view"),
    ttl: float = typer.Option(DEFAULT_TOKEN_TTL_S, "--ttl", min=1.0, help="Lifetime in seconds"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Print a console login token; the last line is the bare token."""
    layout = layout_for(state_dir)
    keys = load_or_create_keys(layout.root)
    value = issue_token(keys, role, now=time.time(), ttl=ttl)
    typer.echo(f"Console token for role {role.value}, valid {ttl / 3600:g} h:")
    typer.echo(value)


if __name__ == "__main__":  # how the runtime's supervisor runs it as a child
    app(prog_name="trellis console")
