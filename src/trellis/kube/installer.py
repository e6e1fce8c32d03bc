"""install | upgrade | uninstall | verify-install | precheck against a Kubernetes API server.

Every install writes an install record (ConfigMap `trellis-install` in the mesh's namespace):
the spec it installed and the list of objects it applied. Upgrade prunes what the new render
no longer contains; uninstall deletes exactly what the record lists, so objects Trellis did
not create are never touched. CRDs (they hold users' config) and the namespace (it may hold
the operator's CA secret) are removed only with `--purge`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from trellis.errors import NotFound, TrellisError
from trellis.kube.cluster import Cluster, ObjectRef
from trellis.kube.manifests import render_objects
from trellis.kube.objects import config_map, labels
from trellis.kube.overlay import validate_spec
from trellis.kube.spec import InstallSpec

RECORD_NAME = "trellis-install"
MIN_KUBERNETES = (1, 30)
_KEPT_WITHOUT_PURGE = {"CustomResourceDefinition", "Namespace"}
Report = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class InstallRecord:
    """What one install applied: the spec and every object, in apply order."""

    spec: InstallSpec
    objects: tuple[ObjectRef, ...]

    def to_config_map(self) -> dict[str, Any]:
        spec_yaml = yaml.safe_dump(self.spec.model_dump(mode="json", by_alias=True), sort_keys=True)
        objects = json.dumps([ref.to_dict() for ref in self.objects], indent=1)
        return config_map(
            RECORD_NAME,
            self.spec.namespace,
            labels("trellis-installer"),
            {"spec": spec_yaml, "objects": objects},
        )

    @classmethod
    def from_config_map(cls, obj: dict[str, Any]) -> InstallRecord:
        data = obj.get("data") or {}
        try:
            spec = validate_spec(yaml.safe_load(data["spec"]) or {})
            refs = tuple(ObjectRef.from_dict(item) for item in json.loads(data["objects"]))
        except (KeyError, TypeError, ValueError, yaml.YAMLError) as err:
            raise TrellisError(
                f"the install record ConfigMap {RECORD_NAME} is damaged: {err}"
            ) from None
        return cls(spec, refs)


def record_ref(namespace: str) -> ObjectRef:
    return ObjectRef("v1", "ConfigMap", namespace, RECORD_NAME)


async def read_record(cluster: Cluster, namespace: str) -> InstallRecord | None:
    found = await cluster.get(record_ref(namespace))
    return InstallRecord.from_config_map(found) if found else None


async def install(
    cluster: Cluster,
    spec: InstallSpec,
    *,
    upgrade: bool = False,
    report: Report = _quiet,
    objects: list[dict[str, Any]] | None = None,
) -> InstallRecord:
    """Apply every rendered object, prune what an earlier install applied and this one does
    not, then write the record. `upgrade=True` insists that an install exists. `objects`
    are the spec's objects rendered elsewhere (a release mirror); default: render here."""
    previous = await read_record(cluster, spec.namespace)
    if upgrade and previous is None:
        raise NotFound(f"Trellis is not installed in {spec.namespace}: run `trellis install` first")
    objects = render_objects(spec) if objects is None else objects
    for obj in objects:
        await cluster.apply(obj)
        report(f"applied {ObjectRef.of(obj)}")
    record = InstallRecord(spec, tuple(ObjectRef.of(obj) for obj in objects))
    if previous is not None:
        await _prune(cluster, previous, record, report)
    await cluster.apply(record.to_config_map())
    return record


async def _prune(
    cluster: Cluster, previous: InstallRecord, current: InstallRecord, report: Report
) -> None:
    keep = set(current.objects)
    for ref in reversed(previous.objects):
        if ref not in keep and ref.kind not in _KEPT_WITHOUT_PURGE and await cluster.delete(ref):
            report(f"removed {ref} (no longer part of the install)")


async def uninstall(
    cluster: Cluster, namespace: str, *, purge: bool = False, report: Report = _quiet
) -> list[ObjectRef]:
    """Delete what the record lists, newest first; CRDs and the namespace only with purge."""
    record = await read_record(cluster, namespace)
    if record is None:
        raise NotFound(f"Trellis is not installed in {namespace} (no ConfigMap {RECORD_NAME})")
    deleted = []
    for ref in reversed(record.objects):
        if ref.kind in _KEPT_WITHOUT_PURGE and not purge:
            continue
        if ref.kind == "Namespace":
            continue  # last, after the record inside it
        if await cluster.delete(ref):
            deleted.append(ref)
            report(f"deleted {ref}")
    await cluster.delete(record_ref(namespace))
    if purge:
        for ref in record.objects:
            if ref.kind == "Namespace" and await cluster.delete(ref):
                deleted.append(ref)
                report(f"deleted {ref}")
    return deleted


async def verify_install(cluster: Cluster, namespace: str, *, report: Report = _quiet) -> list[str]:
    """Problems with the recorded install: missing objects, Deployments not ready, CRDs not
    established. An empty list means the install is complete and healthy."""
    record = await read_record(cluster, namespace)
    if record is None:
        return [f"Trellis is not installed in {namespace} (no ConfigMap {RECORD_NAME})"]
    problems = []
    for ref in record.objects:
        found = await cluster.get(ref)
        problem = _health(ref, found)
        if problem:
            problems.append(problem)
        else:
            report(f"ok {ref}")
    return problems


def _health(ref: ObjectRef, found: dict[str, Any] | None) -> str | None:
    if found is None:
        return f"{ref} is missing: run `trellis install` again with the same options"
    status = found.get("status") or {}
    if ref.kind == "Deployment":
        wanted = (found.get("spec") or {}).get("replicas", 1)
        ready = status.get("readyReplicas", 0) or 0
        if ready < wanted:
            return f"{ref}: {ready}/{wanted} replicas ready (see `kubectl -n {ref.namespace} describe deployment {ref.name}`)"
    if ref.kind == "CustomResourceDefinition":
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        if conditions.get("Established") != "True":
            return f"{ref} is not established yet"
    return None


async def precheck(cluster: Cluster, namespace: str) -> list[str]:
    """Reasons not to install here: an old Kubernetes, or Istio's istiod in the namespace."""
    problems = []
    major, minor = await cluster.server_version()
    if (major, minor) < MIN_KUBERNETES:
        want = ".".join(map(str, MIN_KUBERNETES))
        problems.append(f"Kubernetes {major}.{minor} is too old: Trellis needs {want} or newer")
    if await cluster.get(ObjectRef("apps/v1", "Deployment", namespace, "istiod")):
        problems.append(
            f"Istio's istiod runs in {namespace}: uninstall Istio first (`istioctl uninstall --purge`); "
            "Trellis reads the same CRDs and would fight it over the webhooks"
        )
    from trellis.kube.precheck import cluster_precheck

    problems += await cluster_precheck(cluster.api, namespace)
    return problems
