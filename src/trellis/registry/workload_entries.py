"""WorkloadEntry and WorkloadGroup as registry values: workloads that `trellis run` did not start.

A WorkloadEntry (VM, plain process, auto-registered agent) becomes a `Workload`, so a Service
whose selector matches its labels, or a ServiceEntry's workloadSelector, gets its address as an
endpoint exactly like a runtime pod's. A WorkloadGroup is the template an agent joining with a
group token registers from: trellisd names the entry `<group>-<ip>` (Istio's naming) and marks
it with the group annotation so it can remove it when the proxy goes away. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import cast

from trellis.api.base import ObjectMeta, Resource
from trellis.api.networking import (
    NETWORKING_GROUP,
    WorkloadEntry,
    WorkloadEntrySpec,
    WorkloadGroup,
)
from trellis.compiler.locality import locality_labels
from trellis.model.registry import Workload

# Istio's label for the endpoint's mTLS mode; `istio` means the workload has a sidecar.
TLS_MODE_LABEL = "security.istio.io/tlsMode"
TLS_MODE_ISTIO = "istio"
# Istio's annotations on an auto-registered WorkloadEntry.
AUTO_REGISTRATION_GROUP = "istio.io/autoRegistrationGroup"
WORKLOAD_CONTROLLER = "istio.io/workloadController"
CONNECTED_AT = "istio.io/connectedAt"
DISCONNECTED_AT = "istio.io/disconnectedAt"
# A join token for a group grants this "workload": DNS-1123 names never start with '_', so no
# `trellis run` workload can be confused with a group grant.
GROUP_GRANT_PREFIX = "_wg."


def has_sidecar(spec: WorkloadEntrySpec) -> bool:
    """Istio's rule for a WorkloadEntry's endpoint tlsMode: the `security.istio.io/tlsMode`
    label when present, else `istio` exactly when a serviceAccount is set."""
    mode = spec.labels.get(TLS_MODE_LABEL)
    if mode is not None:
        return mode == TLS_MODE_ISTIO
    return bool(spec.service_account)


def workload_from_entry(entry: WorkloadEntry) -> Workload | None:
    """The registry workload for one entry; None when its address is not an IP (a DNS name
    serves only ServiceEntry DNS resolution, which reads the entry itself). Its `locality`
    becomes the topology labels, as Istio augments workload labels (explicit labels win)."""
    spec = entry.spec
    if not _is_ip(spec.address or ""):
        return None
    return Workload(
        name=entry.name,
        namespace=entry.namespace,
        ip=str(ipaddress.ip_address(spec.address or "")),
        labels={**locality_labels(spec.locality), **spec.labels},
        service_account=spec.service_account or "default",
        has_sidecar=has_sidecar(spec),
        ports=tuple(sorted(set(spec.ports.values()))),
        named_ports=dict(spec.ports),
    )


def workloads_from_resources(resources: Iterable[Resource]) -> tuple[Workload, ...]:
    """Every WorkloadEntry among `resources` that names an IP, as a registry workload."""
    workloads = []
    for resource in resources:
        if resource.kind != WorkloadEntry.KIND:
            continue
        workload = workload_from_entry(cast(WorkloadEntry, resource))
        if workload is not None:
            workloads.append(workload)
    return tuple(workloads)


def auto_entry_name(group: str, ip: str) -> str:
    """Istio's name for an auto-registered entry: `<group>-<ip>` (IPv6 ':' become '-')."""
    return f"{group}-{ip.replace(':', '-')}"


def group_grant(group: str) -> str:
    """The `workload` a group join token grants (see GROUP_GRANT_PREFIX)."""
    return GROUP_GRANT_PREFIX + group


def group_of_grant(workload: str) -> str | None:
    """The group a token's granted workload stands for, or None for an ordinary workload."""
    if workload.startswith(GROUP_GRANT_PREFIX):
        return workload.removeprefix(GROUP_GRANT_PREFIX) or None
    return None


def auto_registered_entry(
    group: WorkloadGroup, ip: str, *, connected_at: str, controller: str = "trellisd"
) -> WorkloadEntry:
    """The entry trellisd creates when an agent of `group` connects from `ip`.

    The template gives labels (the group's metadata labels win over the template's, as in
    Istio), ports and service account; the address is the proxy's. Every auto-registered
    workload has a sidecar, so the entry carries the tlsMode label explicitly.
    """
    template = group.spec.template
    meta = group.spec.metadata
    labels = {**template.labels, **(meta.labels if meta else {}), TLS_MODE_LABEL: TLS_MODE_ISTIO}
    annotations = {
        **(meta.annotations if meta else {}),
        AUTO_REGISTRATION_GROUP: group.name,
        WORKLOAD_CONTROLLER: controller,
        CONNECTED_AT: connected_at,
    }
    spec = template.model_copy(
        update={
            "address": ip,
            "labels": labels,
            "service_account": template.service_account or "default",
        }
    )
    return WorkloadEntry(
        api_version=f"{NETWORKING_GROUP}/v1",
        kind=WorkloadEntry.KIND,
        metadata=ObjectMeta(
            name=auto_entry_name(group.name, ip),
            namespace=group.namespace,
            labels=dict(meta.labels if meta else {}),
            annotations=annotations,
        ),
        spec=spec,
    )


def auto_registration_group(entry: Resource) -> str | None:
    """The group that registered `entry`, or None for an entry a user applied."""
    return _annotations(entry).get(AUTO_REGISTRATION_GROUP)


def same_registration(a: WorkloadEntry, b: WorkloadEntry) -> bool:
    """True when two entries differ at most in their connect/disconnect timestamps, so a
    reconnecting proxy does not rewrite (and push) an unchanged entry."""
    skip = {CONNECTED_AT, DISCONNECTED_AT}
    return (
        a.spec == b.spec
        and a.metadata.labels == b.metadata.labels
        and _strip(a.metadata.annotations, skip) == _strip(b.metadata.annotations, skip)
    )


def _strip(values: Mapping[str, str], keys: set[str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k not in keys}


def _annotations(resource: Resource) -> Mapping[str, str]:
    return resource.metadata.annotations


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
