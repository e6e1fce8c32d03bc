"""Printing for every command: `-o table|yaml|json`, one clear line for errors."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

# Piped output is for scripts: never truncate a table cell or wrap a line to 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 400)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 400)


class Format(enum.StrEnum):
    table = "table"
    yaml = "yaml"
    json = "json"


def print_items(
    items: Sequence[dict[str, Any]],
    fmt: Format,
    columns: Sequence[tuple[str, str]],
    *,
    raw: Sequence[Any] | None = None,
) -> None:
    """Print `items` as a table of `columns` (header, key), or `raw` (default items) as YAML/JSON."""
    data = list(raw if raw is not None else items)
    if fmt is Format.json:
        print(json.dumps(data, indent=2))
        return
    if fmt is Format.yaml:
        print(yaml.safe_dump_all(data, sort_keys=False) if data else "", end="")
        return
    if not items:
        err_console.print("No resources found.")
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header, _ in columns:
        table.add_column(header)
    for item in items:
        table.add_row(*(_cell(item.get(key)) for _, key in columns))
    console.print(table)


def print_object(obj: dict[str, Any], fmt: Format) -> None:
    """One object (not a list) as JSON or YAML."""
    if fmt is Format.yaml:
        print(yaml.safe_dump(obj, sort_keys=False), end="")
    else:
        print(json.dumps(obj, indent=2))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
