"""`trellis ca status | rotate-root`: the mesh CA's roots, and root rotation on a running mesh."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from trellis.cli.common import StateDirOption, layout_for, trellisd
from trellis.cli.output import Format, console, print_items
from trellis.errors import ValidationError

app = typer.Typer(help="The mesh certificate authority (docs/ca.md).", no_args_is_help=True)

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
ROTATE_TIMEOUT = 120.0  # trellisd waits for every proxy's ACK, twice, each bounded


def parse_duration(text: str) -> timedelta:
    """`24h`, `20s`, `1h30m`, `90d`: a positive duration, else one clear error line."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ValidationError(f"cannot read duration {text!r}; use e.g. 24h, 30m, 20s, 1h30m, 90d")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValidationError(f"duration {text!r} must be positive")
    return timedelta(seconds=seconds)


_COLUMNS = [
    ("ROOT", "role"),
    ("SUBJECT", "subject"),
    ("SERIAL", "serial"),
    ("NOT AFTER", "notAfter"),
    ("TRUSTED UNTIL", "trustedUntil"),
]


def root_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trusted root: the current one(s) first, then retired ones."""
    rows = [{**r, "role": "current", "trustedUntil": "-"} for r in body.get("current", [])]
    rows += [{**r, "role": "retired"} for r in body.get("retired", [])]
    return rows


def status(
    output: Format = typer.Option(Format.table, "-o", "--output"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """The current root and the retired roots still trusted, and until when."""
    body = trellisd(layout_for(state_dir)).call("GET", "/ca/status")
    print_items(root_rows(body), output, _COLUMNS, raw=[body])


def rotate_root(
    overlap: str = typer.Option(
        "24h", "--overlap", help="How long the old root stays trusted (e.g. 24h, 30m, 20s)"
    ),
    output: Format = typer.Option(Format.table, "-o", "--output"),
    state_dir: Path | None = StateDirOption,
) -> None:
    """Replace the self-signed root: every proxy trusts both roots first, then every workload
    certificate is reissued from the new root; the old root is dropped after the overlap."""
    seconds = parse_duration(overlap).total_seconds()
    body = trellisd(layout_for(state_dir)).call(
        "POST", "/ca/rotate-root", {"overlapSeconds": seconds}, timeout=ROTATE_TIMEOUT
    )
    if output is not Format.table:
        print_items(root_rows(body), output, _COLUMNS, raw=[body])
        return
    print_items(root_rows(body), output, _COLUMNS)
    console.print(f"reissued {body.get('reissued', 0)} workload certificate(s) from the new root")
    if body.get("notAcked"):
        console.print(f"not acknowledged in time: {', '.join(body['notAcked'])}")


app.command()(status)
app.command("rotate-root")(rotate_root)
