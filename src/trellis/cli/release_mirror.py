"""`trellis release-mirror build|serve`: this release's manifests, specs, values schema and
images list, served from inside the cluster for air-gapped upgrades (`trellis upgrade
--mirror URL`). See src/trellis/kube/release_mirror.py for the layout."""

from __future__ import annotations

from pathlib import Path

import typer

from trellis.cli.output import console

app = typer.Typer(
    help="Serve this release's manifests and images list (air-gapped upgrades).",
    no_args_is_help=True,
)

_REPO_SCHEMA = Path(__file__).resolve().parents[3] / "charts" / "trellis" / "values.schema.json"


@app.command("build")
def build(
    out: Path = typer.Option(..., "--out", help="directory to write the mirror's files into"),
    overlay: list[str] = typer.Option(
        [], "-f", "--filename", help="overlay applied to every profile (e.g. hub and tag)"
    ),
    sets: list[str] = typer.Option([], "--set", help="PATH=VALUE applied to every profile"),
    chart_schema: Path | None = typer.Option(
        None,
        "--chart-schema",
        help="the chart's values.schema.json (default: the one next to this source tree, if any)",
    ),
) -> None:
    """Render every profile, its spec, the images list and the values schema into --out."""
    from trellis.cli.kube import _read
    from trellis.kube.release_mirror import build as build_mirror

    schema = chart_schema or (_REPO_SCHEMA if _REPO_SCHEMA.is_file() else None)
    done = build_mirror(out, overlays=[_read(f) for f in overlay], sets=sets, chart_schema=schema)
    console.print(
        f"✔ release mirror in {out}: {len(done.files)} files, {len(done.images)} images",
        markup=False,
    )


@app.command("serve")
def serve(
    directory: Path = typer.Option(..., "--dir", help="a directory written by `build`"),
    address: str = typer.Option("0.0.0.0", "--address", help="address to listen on"),
    port: int = typer.Option(8080, "--port", help="port to listen on"),
) -> None:
    """Serve the mirror's files over HTTP (and POST /render for overlays) until stopped."""
    from aiohttp import web

    from trellis.kube.release_mirror_server import mirror_app

    app_ = mirror_app(directory)
    console.print(f"serving the release mirror {directory} on {address}:{port}", markup=False)
    web.run_app(app_, host=address, port=port, print=None, access_log=None)
