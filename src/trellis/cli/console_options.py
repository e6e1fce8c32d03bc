"""The console options of `trellis up`, checked before anything starts."""

from __future__ import annotations

from trellis.cli.output import console
from trellis.console.auth import parse_roles
from trellis.errors import TrellisError
from trellis.runtime.layout import MeshInfo


def console_argv(enabled: bool, roles: str) -> list[str]:
    """The supervisor's arguments; an unknown role is one clear line here."""
    if not enabled:
        if roles:
            raise TrellisError("--console-roles has no effect with --no-console")
        return ["--no-console"]
    try:
        granted = parse_roles(roles)
    except ValueError as e:
        raise TrellisError(f"--console-roles: {e}") from e
    return ["--console-roles", ",".join(sorted(r.value for r in granted))]


def print_console(info: MeshInfo) -> None:
    if info.console_port:
        console.print(
            f"Console: http://127.0.0.1:{info.console_port}/ "
            "(log in with a token from `trellis console token`)"
        )
