"""Render charts/trellis with Helm's own engine (helm-python-sdk) and parse rendered
`trellis` command lines with the real CLI parser (nothing runs), for the chart tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import typer
import typer.core
import yaml

from trellis.cli.main import app as trellis_app

CHART = Path(__file__).resolve().parents[1] / "charts" / "trellis"


def render_chart(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(
            values or {}, name="trellis", namespace="istio-system", is_install=True
        )
    return [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def job_container(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == "Job" and obj["metadata"]["name"] == name:
            container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
            return container
    raise AssertionError(f"no Job {name}")


def parse_trellis(args: list[str]) -> dict[str, Any]:
    """Parse `trellis ARGS` with the real CLI (nothing runs); the chosen command's params."""
    command = typer.main.get_command(trellis_app)
    rest = list(args)
    while isinstance(command, typer.core.TyperGroup):  # walk `release-mirror build` etc.
        command = command.commands[rest.pop(0)]
    ctx = command.make_context(f"trellis {' '.join(args[: len(args) - len(rest)])}", rest)
    return dict(ctx.params)
