"""The chart's install Job: precheck, analyze, apply, verify, each under a header, and on
failure one message block that says what failed, on which object, and what to do next.

Users of the upstream chart find its Job's failures hard to diagnose (a Go stack or a bare
"failed" in `kubectl logs`), so every failure here ends in `JobFailure` and is printed as a
block by `failure_block`; nothing escapes as a traceback. The steps:

- precheck: the cluster checks of `trellis x precheck` (skipped with --force).
- analyze: Istio's analyzers (`trellis.analyze`) over the mesh config the install will serve:
  the Istio resources already in the cluster (kinds whose CRD is not installed yet are
  skipped) with the cluster's Services as registry. An Error-level message stops the Job
  unless analysis errors are ignored; warnings are printed and do not stop it.
- apply: `installer.install` (install, or reconfigure/upgrade an existing install).
- verify: `installer.verify_install`, polled until everything is ready or the timeout ends.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from trellis.analyze import Level, Message, analyze
from trellis.api.base import Resource
from trellis.errors import TrellisError, ValidationError
from trellis.kube.cluster import Cluster, KubeApiError
from trellis.kube.config_sync import resource_from_object
from trellis.kube.crds import ISTIO_KINDS
from trellis.kube.installer import install, precheck, verify_install
from trellis.kube.manifests import render_objects
from trellis.kube.spec import InstallSpec
from trellis.model.registry import Service
from trellis.registry.kubernetes import service_from_object

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class JobOptions:
    """How the Job runs; `job_name` only feeds the hints (`kubectl logs job/NAME`)."""

    job_name: str = "trellis-install"
    upgrade: bool = False
    force: bool = False
    ignore_analysis_errors: bool = False
    verify_timeout: float = 0.0


@dataclass
class JobFailure(Exception):
    """One failed step: what failed, on which object/field, the server's words, what to do."""

    step: str
    what: str
    subject: str = ""
    details: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = field(default_factory=tuple)


def failure_block(failure: JobFailure, namespace: str, job_name: str) -> str:
    """The message block printed at the end of a failed Job's log."""
    lines = [
        "",
        f"✘ TRELLIS INSTALL FAILED in step '{failure.step}'",
        f"  what failed: {failure.what}",
    ]
    if failure.subject:
        lines.append(f"  object:      {failure.subject}")
    lines += [f"  detail:      {detail}" for detail in failure.details]
    steps = [*failure.next_steps, f"this log again: kubectl -n {namespace} logs job/{job_name}"]
    lines.append("  what to do:")
    lines += [f"    {n}. {step}" for n, step in enumerate(steps, start=1)]
    return "\n".join(lines) + "\n"


async def run_job(cluster: Cluster, spec: InstallSpec, options: JobOptions, say: Say) -> None:
    """Run every step; raise JobFailure on the first that fails."""
    say("==> precheck")
    await _step("precheck", _precheck(cluster, spec, options, say))
    say("==> analyze")
    await _step("analyze", _analyze(cluster, spec, options, say))
    count = len(render_objects(spec))
    say(f"==> apply ({count} objects)")
    await _step("apply", _apply(cluster, spec, options, say))
    say("==> verify")
    await _step("verify", _verify(cluster, spec, options, say))
    say(f"✔ Trellis {'upgraded' if options.upgrade else 'installed'} in {spec.namespace}")


async def _step(name: str, work: Awaitable[None]) -> None:
    """Await one step; any error becomes a JobFailure naming the step."""
    try:
        await work
    except JobFailure:
        raise
    except KubeApiError as err:
        raise api_failure(name, err) from None
    except TrellisError as err:
        raise JobFailure(name, str(err), next_steps=_generic_next(name)) from None
    except (TimeoutError, OSError) as err:
        raise JobFailure(
            name,
            f"cannot reach the Kubernetes API server: {err}",
            next_steps=(
                "check that the cluster's API server is up and reachable from pods "
                "(NetworkPolicies, the kubernetes Service in namespace default)",
            ),
        ) from None


def api_failure(step: str, err: KubeApiError) -> JobFailure:
    """An API server refusal with the hint its HTTP status calls for."""
    subject = str(err.ref) if err.ref else ""
    what = f"the API server refused a request ({str(err).split(':', 1)[0]})"
    details = (err.reason or str(err),)
    hint: tuple[str, ...]
    if err.status in (401, 403):
        hint = (
            "the installer's service account lacks a permission: check ClusterRoleBinding "
            "trellis-installer (it binds cluster-admin) and any policy engine restricting it "
            "(`kubectl auth can-i --list --as=system:serviceaccount:<ns>:trellis-installer`)",
        )
    elif "admission webhook" in (err.reason or ""):
        hint = (
            "an admission webhook (policy engine, old Istio injector/validator) rejected the "
            "object: read its message above, then fix the policy or the values that render "
            "this object (`kubectl get validatingwebhookconfigurations,"
            "mutatingwebhookconfigurations`)",
        )
    elif err.status == 409:
        hint = ("another controller changed the object at the same time: run the upgrade again",)
    elif err.status == 422:
        hint = (
            "the object is invalid for this Kubernetes version: check the values that "
            "render it (overlayFile, k8s settings) and `trellis x precheck`",
        )
    else:
        hint = _generic_next(step)
    return JobFailure(
        step, what, subject, details, (*hint, "then retry: helm upgrade --install ...")
    )


def _generic_next(step: str) -> tuple[str, ...]:
    return (f"fix the cause reported for step '{step}', then retry: helm upgrade --install ...",)


async def _precheck(cluster: Cluster, spec: InstallSpec, options: JobOptions, say: Say) -> None:
    problems = await precheck(cluster, spec.namespace)
    for problem in problems:
        say(f"  ✘ {problem}")
    if problems and not options.force:
        raise JobFailure(
            "precheck",
            f"{len(problems)} precheck problem(s)",
            details=tuple(problems),
            next_steps=(
                "fix each problem listed (each says how)",
                "or run `trellis x precheck` from a workstation to see them again",
            ),
        )
    if not problems:
        say("  ✔ no problems found")


async def _analyze(cluster: Cluster, spec: InstallSpec, options: JobOptions, say: Say) -> None:
    resources, invalid = await cluster_config(cluster)
    services = await cluster_services(cluster)
    messages = analyze(resources, services)
    for message in messages:
        say(f"  {message}")
    say(f"  {len(resources)} Istio resource(s), {len(services)} Service(s) analysed")
    errors = [m for m in messages if m.level is Level.ERROR]
    problems = [*invalid, *(str(m) for m in errors)]
    if problems and not options.ignore_analysis_errors:
        raise JobFailure(
            "analyze",
            f"{len(problems)} error(s) in the mesh config already in the cluster",
            subject=_first_subject(errors, invalid),
            details=tuple(problems),
            next_steps=(
                "fix each resource named (kubectl -n NAMESPACE edit KIND NAME), or delete it",
                "or install anyway: set installer.ignoreAnalysisErrors=true "
                "(trellis install --ignore-analysis-errors)",
            ),
        )


def _first_subject(errors: list[Message], invalid: list[str]) -> str:
    if errors:
        o = errors[0].origin
        return f"{o.kind} {o.namespace}/{o.name}" + (
            f" field {errors[0].field}" if errors[0].field else ""
        )
    return invalid[0].split(":", 1)[0] if invalid else ""


async def cluster_config(cluster: Cluster) -> tuple[list[Resource], list[str]]:
    """Istio resources in the cluster, parsed as `trellis apply` would; the ones that do not
    parse are returned as problems ("Kind ns/name: field: reason")."""
    resources: list[Resource] = []
    invalid: list[str] = []
    for kind in ISTIO_KINDS:
        version = "v1" if "v1" in kind.versions else kind.versions[0]
        for obj in await cluster.list_all(f"{kind.group}/{version}", kind.plural) or []:
            try:
                resources.append(resource_from_object(obj))
            except ValidationError as err:
                invalid.append(str(err))
    return resources, invalid


async def cluster_services(cluster: Cluster) -> list[Service]:
    """The cluster's Services as registry Services (cluster.local), for host references."""
    found = await cluster.list_all("v1", "services") or []
    services = (service_from_object(obj) for obj in found)
    return [service for service in services if service is not None]


async def _apply(cluster: Cluster, spec: InstallSpec, options: JobOptions, say: Say) -> None:
    def report(line: str) -> None:
        say(f"  {line}")

    await install(cluster, spec, upgrade=options.upgrade, report=report)


async def _verify(cluster: Cluster, spec: InstallSpec, options: JobOptions, say: Say) -> None:
    deadline = time.monotonic() + options.verify_timeout
    while True:
        problems = await verify_install(cluster, spec.namespace)
        if not problems:
            say("  ✔ every object exists and is ready")
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    raise JobFailure(
        "verify",
        f"{len(problems)} object(s) not ready after {options.verify_timeout:g}s",
        subject=_ref_of(problems[0]),
        details=tuple(problems),
        next_steps=(
            f"look at the pods: kubectl -n {spec.namespace} get pods; "
            f"kubectl -n {spec.namespace} describe pod POD (image pull errors, pending pods)",
            "images are HUB/NAME:TAG from global.hub and global.tag: check they exist",
            f"check again later: trellis verify-install -n {spec.namespace}",
        ),
    )


def _ref_of(problem: str) -> str:
    """The object a verify problem is about ("Kind ns/name: ..." or "Kind ns/name is ...")."""
    return re.split(r": | is ", problem, maxsplit=1)[0]


__all__ = [
    "JobFailure",
    "JobOptions",
    "api_failure",
    "cluster_config",
    "cluster_services",
    "failure_block",
    "run_job",
]
