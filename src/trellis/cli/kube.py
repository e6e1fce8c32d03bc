"""Kubernetes commands: `manifest generate` and `kube-inject` (offline, YAML to stdout);
`install`, `upgrade`, `uninstall`, `verify-install`, `x precheck` (against the cluster)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer
import yaml

from trellis.cli.output import console, err_console
from trellis.errors import TrellisError, ValidationError
from trellis.kube.inject import InjectSettings, inject_documents
from trellis.kube.manifests import render_yaml, to_yaml
from trellis.kube.overlay import build_spec
from trellis.kube.spec import InstallSpec

if TYPE_CHECKING:  # the Kubernetes client is imported only by commands that use it
    from trellis.kube.cluster import Cluster

T = TypeVar("T")
manifest_app = typer.Typer(help="Render what `trellis install` would apply.", no_args_is_help=True)

ProfileOption = typer.Option(None, "--profile", help="default | demo | minimal")
SetOption = typer.Option(
    [], "--set", help="PATH=VALUE, e.g. components.ingressGateways[0].enabled=false"
)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as err:
        raise TrellisError(f"cannot read {path}: {err.strerror or err}") from err


def _spec(profile: str | None, overlays: list[str], sets: list[str]) -> InstallSpec:
    return build_spec(profile=profile, overlays=[_read(f) for f in overlays], sets=sets)


@manifest_app.command("generate")
def generate(
    profile: str | None = ProfileOption,
    overlay: list[str] = typer.Option(
        [], "-f", "--filename", help="IstioOperator-like overlay file (repeatable, - for stdin)"
    ),
    sets: list[str] = SetOption,
) -> None:
    """Print every object of the install as YAML (pipe it to `kubectl apply -f -`)."""
    sys.stdout.write(render_yaml(_spec(profile, overlay, sets)))


def kube_inject(
    filename: str = typer.Option(..., "-f", "--filename", help="Kubernetes YAML, - for stdin"),
    profile: str | None = ProfileOption,
    overlay: list[str] = typer.Option(
        [], "--overlay", help="IstioOperator-like overlay file the mesh was installed with"
    ),
    sets: list[str] = SetOption,
) -> None:
    """Add the Trellis sidecar to the pods in FILE; print the result as YAML."""
    text = _read(filename)
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as err:
        raise ValidationError(f"{filename}: not valid YAML: {err}") from err
    settings = InjectSettings.from_spec(_spec(profile, overlay, sets))
    sys.stdout.write(to_yaml(inject_documents(documents, settings)))


# --- commands that talk to a cluster -------------------------------------------------------

KubeconfigOption = typer.Option(
    None, "--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster)"
)
ContextOption = typer.Option(None, "--context", help="kubeconfig context")
NamespaceOption = typer.Option("istio-system", "-n", "--namespace", help="the mesh's namespace")


def _say(line: str) -> None:
    console.print(line, markup=False)


async def _with_cluster(
    kubeconfig: Path | None, context: str | None, work: Callable[[Cluster], Awaitable[T]]
) -> T:
    from trellis.kube.cluster import Cluster, connect

    api = await connect(kubeconfig, context)
    try:
        return await work(Cluster(api))
    finally:
        await api.close()


def _fail_on(problems: list[str], what: str) -> None:
    for problem in problems:
        err_console.print(f"✘ {problem}", markup=False)
    if problems:
        raise TrellisError(f"{what}: {len(problems)} problem(s), listed above")


def install(
    profile: str | None = ProfileOption,
    overlay: list[str] = typer.Option(
        [], "-f", "--filename", help="IstioOperator-like overlay file (repeatable)"
    ),
    sets: list[str] = SetOption,
    force: bool = typer.Option(
        False, "--force", help="install even if the precheck finds problems"
    ),
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Check the cluster, then apply everything `manifest generate` renders."""
    from trellis.kube.installer import install as install_objects
    from trellis.kube.installer import precheck

    spec = _spec(profile, overlay, sets)

    async def work(cluster: Cluster) -> None:
        problems = await precheck(cluster, spec.namespace)
        if not force:
            _fail_on(problems, "precheck (use --force to install anyway)")
        record = await install_objects(cluster, spec, report=_say)
        _say(
            f"✔ Trellis installed in {spec.namespace}: profile {spec.profile}, {len(record.objects)} objects"
        )

    asyncio.run(_with_cluster(kubeconfig, context, work))


def upgrade(
    profile: str | None = ProfileOption,
    overlay: list[str] = typer.Option(
        [], "-f", "--filename", help="IstioOperator-like overlay file (repeatable)"
    ),
    sets: list[str] = SetOption,
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Apply this version's rendering over an existing install; remove what it no longer has."""
    from trellis.kube.installer import install as install_objects

    spec = _spec(profile, overlay, sets)

    async def work(cluster: Cluster) -> None:
        record = await install_objects(cluster, spec, upgrade=True, report=_say)
        _say(
            f"✔ Trellis upgraded in {spec.namespace}: profile {spec.profile}, {len(record.objects)} objects"
        )

    asyncio.run(_with_cluster(kubeconfig, context, work))


def uninstall(
    purge: bool = typer.Option(
        False, "--purge", help="also delete Istio's CRDs (and all mesh config) and the namespace"
    ),
    namespace: str = NamespaceOption,
    if_installed: bool = typer.Option(
        False, "--if-installed", help="succeed when nothing is installed (for the chart's Job)"
    ),
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Delete exactly what `trellis install` created (CRDs and namespace only with --purge)."""
    from trellis.kube.installer import read_record
    from trellis.kube.installer import uninstall as uninstall_objects

    async def work(cluster: Cluster) -> None:
        if if_installed and await read_record(cluster, namespace) is None:
            _say(f"Trellis is not installed in {namespace}: nothing to do")
            return
        deleted = await uninstall_objects(cluster, namespace, purge=purge, report=_say)
        _say(f"✔ Trellis uninstalled from {namespace}: {len(deleted)} objects deleted")

    asyncio.run(_with_cluster(kubeconfig, context, work))


def verify_install(
    namespace: str = NamespaceOption,
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Check that every installed object exists and is ready."""
    from trellis.kube.installer import verify_install as verify

    async def work(cluster: Cluster) -> None:
        _fail_on(await verify(cluster, namespace), "verify-install")
        _say(f"✔ Trellis in {namespace} is installed and ready")

    asyncio.run(_with_cluster(kubeconfig, context, work))


def x_precheck(
    namespace: str = NamespaceOption,
    kubeconfig: Path | None = KubeconfigOption,
    context: str | None = ContextOption,
) -> None:
    """Check that Trellis can be installed in this cluster."""
    from trellis.kube.installer import precheck

    async def work(cluster: Cluster) -> None:
        _fail_on(await precheck(cluster, namespace), "precheck")
        _say("✔ no problems found: Trellis can be installed")

    asyncio.run(_with_cluster(kubeconfig, context, work))
