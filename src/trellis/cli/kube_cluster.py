"""`trellis x check-inject`: which pods have the sidecar, and which need a restart to get it.

Injection happens when a pod is created; pods that existed before their namespace was
enabled (or before Trellis was installed) keep running without a sidecar until restarted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from trellis.cli.output import Format, print_items
from trellis.kube.injection_policy import PodInjection, PodInjectionStatus


def check_inject(
    namespace: str | None = typer.Option(None, "-n", "--namespace", help="default: all"),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)"
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context"),
    output: Format = typer.Option(Format.table, "-o", "--output"),
) -> None:
    """List pods with their injection state; `needs restart` pods lack a sidecar they would get."""
    statuses = asyncio.run(_check(namespace, kubeconfig, context))
    rows = [{"namespace": s.namespace, "pod": s.name, "sidecar": s.status.value} for s in statuses]
    print_items(rows, output, [("NAMESPACE", "namespace"), ("POD", "pod"), ("SIDECAR", "sidecar")])
    restart = [s for s in statuses if s.status is PodInjection.NEEDS_RESTART]
    if restart and output is Format.table:
        typer.echo(
            f"{len(restart)} pod(s) need a restart to get the sidecar, e.g. "
            "`kubectl rollout restart deployment -n NAMESPACE NAME`",
            err=True,
        )


async def _check(
    namespace: str | None, kubeconfig: Path | None, context: str | None
) -> list[PodInjectionStatus]:
    from trellis.kube.cluster import connect
    from trellis.kube.injection_policy import check_cluster

    api = await connect(kubeconfig, context)
    try:
        return await check_cluster(api, namespace)
    finally:
        await api.close()
