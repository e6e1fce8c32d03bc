"""The `--prometheus*` options of `trellis up` and `trellis demo`, checked before anything
starts so a mistake is one clear line, not a supervisor log to read."""

from __future__ import annotations

from pathlib import Path

import typer

from trellis.cli.output import console
from trellis.errors import TrellisError
from trellis.runtime.layout import MeshInfo
from trellis.runtime.prometheus import (
    DEFAULT_PORT,
    PrometheusOptions,
    check_port_free,
    load_extra_scrape_configs,
    prometheus_binary,
)

PrometheusOption = typer.Option(
    False,
    "--prometheus",
    help="Also run Prometheus (Debian's `prometheus`), scraping every proxy and trellisd",
)
PrometheusPortOption = typer.Option(
    DEFAULT_PORT, "--prometheus-port", help="Prometheus's port on 127.0.0.1"
)
PrometheusNamespacesOption = typer.Option(
    "",
    "--prometheus-namespaces",
    help="Comma-separated namespaces whose proxies are scraped (default: all)",
)
PrometheusExtraOption = typer.Option(
    None,
    "--prometheus-extra-scrape-config",
    help="YAML file with a list of Prometheus scrape configs to append (additionalScrapeConfigs)",
)


def prometheus_options(
    enabled: bool, port: int, namespaces: str, extra: Path | None
) -> PrometheusOptions | None:
    """None without --prometheus; else checked options (binary, port, extra jobs)."""
    if not enabled:
        if namespaces or extra is not None:
            raise TrellisError(
                "--prometheus-namespaces and --prometheus-extra-scrape-config need --prometheus"
            )
        return None
    prometheus_binary()
    check_port_free(port)
    resolved = extra.resolve() if extra is not None else None
    load_extra_scrape_configs(resolved)
    selected = tuple(n.strip() for n in namespaces.split(",") if n.strip())
    return PrometheusOptions(port=port, namespaces=selected, extra_scrape_config=resolved)


def prometheus_argv(options: PrometheusOptions | None) -> list[str]:
    """The supervisor's command-line arguments for these options."""
    if options is None:
        return []
    argv = ["--prometheus-port", str(options.port)]
    if options.namespaces:
        argv += ["--prometheus-namespaces", ",".join(options.namespaces)]
    if options.extra_scrape_config is not None:
        argv += ["--prometheus-extra-scrape-config", str(options.extra_scrape_config)]
    return argv


def print_prometheus(info: MeshInfo) -> None:
    if info.prometheus_port:
        console.print(f"Prometheus: http://127.0.0.1:{info.prometheus_port}/")
