"""Who answers behind a client's cluster: destination labels for reporter="source".

The compiler tags every endpoint with Istio's `filter_metadata.istio.workload`
(`NAME;NAMESPACE;APP;VERSION;CLUSTER`, compiler/endpoints.py). Envoy's stats are per cluster,
not per endpoint, so a label is filled only when every endpoint of the cluster agrees on it:
a subset cluster (`outbound|9080|v1|reviews...`) names its workload, a whole-service cluster
at least its app. The agent reads the endpoints from the admin's config dump when any
outbound cluster carried traffic (agent/stats.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

EDS_DUMP = "/config_dump?resource=dynamic_endpoint_configs&include_eds"


@dataclass(frozen=True, slots=True)
class DestinationWorkload:
    """What all endpoints of one cluster share; empty where they differ or nobody said."""

    workload: str = ""
    app: str = ""
    version: str = ""


def eds_dump_path(clusters: Iterable[str]) -> str | None:
    """The admin path that dumps the endpoints; None when no cluster needs naming.

    All clusters' endpoints, filtered here: Envoy's `name_regex` is RE2 with a small program
    size limit, so an alternation of a handful of cluster names is already refused."""
    return EDS_DUMP if any(True for _ in clusters) else None


def destinations_from_dump(
    dump: Any, clusters: Iterable[str] | None = None
) -> dict[str, DestinationWorkload]:
    """Cluster name -> what its endpoints agree on, from an EDS config dump (tolerant);
    only `clusters` when given."""
    wanted = None if clusters is None else set(clusters)
    out: dict[str, DestinationWorkload] = {}
    configs = dump.get("configs", []) if isinstance(dump, Mapping) else []
    for entry in configs:
        assignment = entry.get("endpoint_config", {}) if isinstance(entry, Mapping) else {}
        name = assignment.get("cluster_name")
        if isinstance(name, str) and (wanted is None or name in wanted):
            out[name] = _shared(_workload_tags(assignment))
    return out


def _workload_tags(assignment: Mapping[str, Any]) -> list[list[str]]:
    tags = []
    for locality in assignment.get("endpoints", []):
        for endpoint in locality.get("lb_endpoints", []):
            istio = endpoint.get("metadata", {}).get("filter_metadata", {}).get("istio", {})
            value = istio.get("workload")
            tags.append(value.split(";") if isinstance(value, str) else [])
    return tags


def _shared(tags: list[list[str]]) -> DestinationWorkload:
    def agreed(index: int) -> str:
        values = {t[index] if len(t) > index else "" for t in tags}
        return values.pop() if len(values) == 1 else ""

    return DestinationWorkload(workload=agreed(0), app=agreed(2), version=agreed(3))
