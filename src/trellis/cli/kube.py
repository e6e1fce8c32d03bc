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

from trellis.cli.config import read_input
from trellis.cli.output import console, err_console
from trellis.errors import TrellisError, ValidationError
from trellis.kube.inject import InjectSettings, inject_documents
from trellis.kube.manifests import render_yaml, to_yaml
from trellis.kube.overlay import build_spec
from trellis.kube.spec import InstallSpec

if TYPE_CHECKING:  # the Kubernetes client is imported only by commands that use it
    from trellis.kube.cluster import Cluster
    from trellis.kube.install_job import JobOptions

T = TypeVar("T")
manifest_app = typer.Typer(help="Render what `trellis install` would apply.", no_args_is_help=True)

ProfileOption = typer.Option(None, "--profile", help="default | demo | minimal")
SetOption = typer.Option(
    [], "--set", help="PATH=VALUE, e.g. components.ingressGateways[0].enabled=false"
)


def _read(path: str) -> str:
    return read_input(path)  # UTF-8 or one clear error line, like apply -f


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


FromJobOption = typer.Option(
    None,
    "--from-job",
    metavar="JOB",
    help="run as the chart's Job JOB: step headers (precheck, analyze, apply, verify) and one "
    "failure block saying what to do",
)
IgnoreAnalysisOption = typer.Option(
    False, "--ignore-analysis-errors", help="with --from-job: install despite analysis errors"
)
VerifyTimeoutOption = typer.Option(
    0.0, "--verify-timeout", help="with --from-job: seconds to wait for the install to be ready"
)


def _job_options(
    job: str, upgrade: bool, force: bool, ignore_analysis: bool, verify_timeout: float
) -> JobOptions:
    from trellis.kube.install_job import JobOptions

    return JobOptions(job, upgrade, force, ignore_analysis, verify_timeout)


def _run_job(
    profile: str | None,
    overlays: list[str],
    sets: list[str],
    options: JobOptions,
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    """The chart Job's run: every failure, even a bad overlay, ends as one message block on
    stdout (the Job's log) and exit code 1, never a traceback."""
    from trellis.kube.install_job import JobFailure, failure_block, run_job

    namespace = "istio-system"
    try:
        _say("==> overlay")
        try:
            spec = _spec(profile, overlays, sets)
        except TrellisError as err:
            raise JobFailure(
                "overlay",
                "the install overlay is invalid",
                details=(str(err),),
                next_steps=(
                    "fix the key named above in the chart's values (overlayFile, or the value "
                    "it comes from), then retry: helm upgrade --install ...",
                ),
            ) from None
        namespace = spec.namespace
        _say(f"  profile {spec.profile}, namespace {namespace}")
        asyncio.run(_with_cluster(kubeconfig, context, lambda c: run_job(c, spec, options, _say)))
    except JobFailure as failure:
        sys.stdout.write(failure_block(failure, namespace, options.job_name))
        sys.stdout.flush()
        raise typer.Exit(1) from None
    except TrellisError as err:  # e.g. no cluster to talk to
        connect = JobFailure(
            "connect",
            str(err),
            next_steps=("check the Job's service account token and the API server",),
        )
        sys.stdout.write(failure_block(connect, namespace, options.job_name))
        sys.stdout.flush()
        raise typer.Exit(1) from None


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
    from_job: str | None = FromJobOption,
    ignore_analysis_errors: bool = IgnoreAnalysisOption,
    verify_timeout: float = VerifyTimeoutOption,
) -> None:
    """Check the cluster, then apply everything `manifest generate` renders."""
    from trellis.kube.installer import install as install_objects
    from trellis.kube.installer import precheck

    if from_job is not None:
        options = _job_options(from_job, False, force, ignore_analysis_errors, verify_timeout)
        _run_job(profile, overlay, sets, options, kubeconfig, context)
        return
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
    from_job: str | None = FromJobOption,
    ignore_analysis_errors: bool = IgnoreAnalysisOption,
    verify_timeout: float = VerifyTimeoutOption,
    mirror: str | None = typer.Option(
        None,
        "--mirror",
        help="release mirror URL (trellis release-mirror serve): fetch the manifests from it "
        "instead of rendering here",
    ),
) -> None:
    """Apply this version's rendering over an existing install; remove what it no longer has."""
    from trellis.kube.installer import install as install_objects

    if mirror is not None:
        _upgrade_from_mirror(mirror, profile, overlay, sets, kubeconfig, context)
        return
    if from_job is not None:
        options = _job_options(from_job, True, False, ignore_analysis_errors, verify_timeout)
        _run_job(profile, overlay, sets, options, kubeconfig, context)
        return
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


def _upgrade_from_mirror(
    url: str,
    profile: str | None,
    overlays: list[str],
    sets: list[str],
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    """Upgrade with the objects a release mirror rendered (nothing rendered here)."""
    from trellis.kube.installer import install as install_objects
    from trellis.kube.release_mirror_server import fetch_release

    texts = [_read(f) for f in overlays]

    async def work(cluster: Cluster) -> None:
        spec, objects = await fetch_release(url, profile, texts, sets)
        _say(f"fetched {len(objects)} objects for profile {spec.profile} from {url}")
        record = await install_objects(cluster, spec, upgrade=True, report=_say, objects=objects)
        _say(
            f"✔ Trellis upgraded in {spec.namespace} from the release mirror: "
            f"profile {spec.profile}, {len(record.objects)} objects"
        )

    asyncio.run(_with_cluster(kubeconfig, context, work))
