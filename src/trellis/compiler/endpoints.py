"""EDS: one ClusterLoadAssignment per outbound service cluster, subsets filtered by labels.

Kept independent of CDS so an endpoint-only change recompiles only this (DESIGN §3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from trellis.compiler.locality import LocalityPlan, build_locality_endpoints, locality_plan
from trellis.compiler.mtls import endpoint_tls_metadata
from trellis.compiler.protos import socket_address, struct
from trellis.compiler.traffic_policy import cluster_policy
from trellis.model.names import ClusterName
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext, labels_match
from trellis.model.registry import Endpoint, Resolution, Service


def build_endpoints(
    proxy: Proxy, push: PushContext
) -> dict[str, endpoint_pb2.ClusterLoadAssignment]:
    """Assignments for every `outbound|PORT|SUBSET|HOST` cluster the proxy has."""
    assignments: dict[str, endpoint_pb2.ClusterLoadAssignment] = {}
    for service in push.outbound_services(proxy):  # exportTo + Sidecar egress scope
        assignments.update(build_service_endpoints(proxy, push, service))
    return assignments


def build_service_endpoints(
    proxy: Proxy, push: PushContext, service: Service
) -> dict[str, endpoint_pb2.ClusterLoadAssignment]:
    """One outbound service's assignments (the compile cache keeps them per service)."""
    if service.resolution is not Resolution.CLIENT_SIDE_LB:
        return {}  # DNS and ORIGINAL_DST clusters carry no EDS (compiler/resolution.py)
    rule = push.destination_rule(service.hostname, proxy.namespace)
    subsets: dict[str, Mapping[str, str]] = {"": {}}
    if rule is not None:
        subsets.update((s.name, s.labels) for s in rule.spec.subsets)
    assignments: dict[str, endpoint_pb2.ClusterLoadAssignment] = {}
    for port in service.ports:
        members = push.endpoints(service, port)
        for subset, labels in subsets.items():
            name = ClusterName.outbound(port.port, subset, service.hostname)
            policy = cluster_policy(rule, subset, port.port)
            plan = locality_plan(policy.load_balancer, policy.outlier_detection)
            chosen = _in_subset(members, labels)
            assignments[name] = build_load_assignment(name, chosen, proxy.labels, plan)
    return assignments


def _in_subset(endpoints: Iterable[Endpoint], labels: Mapping[str, str]) -> list[Endpoint]:
    """A subset's members; the default subset (no labels) takes every endpoint."""
    return [e for e in endpoints if not labels or labels_match(labels, e.labels)]


def build_load_assignment(
    cluster: str,
    endpoints: Iterable[Endpoint],
    proxy_labels: Mapping[str, str] | None = None,
    plan: LocalityPlan | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """Endpoints grouped by locality, with priorities or weights relative to the calling
    proxy's locality when `plan` says so (compiler/locality.py); an empty list is valid (the
    cluster answers 503 UH)."""
    localities = build_locality_endpoints(endpoints, proxy_labels or {}, plan, build_lb_endpoint)
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster, endpoints=localities)


def build_lb_endpoint(endpoint: Endpoint) -> endpoint_components_pb2.LbEndpoint:
    """One address, tagged with the workload it belongs to (Istio's `istio.workload` key)."""
    lb_endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=socket_address(endpoint.address, endpoint.port)
        )
    )
    workload = ";".join(
        (
            endpoint.workload,
            endpoint.namespace,
            endpoint.labels.get("app", ""),
            endpoint.labels.get("version", ""),
            "",
        )
    )
    lb_endpoint.metadata.filter_metadata["istio"].CopyFrom(struct({"workload": workload}))
    tls_match = endpoint_tls_metadata(endpoint.has_sidecar)
    if tls_match is not None:
        key, values = tls_match
        lb_endpoint.metadata.filter_metadata[key].CopyFrom(struct(values))
    return lb_endpoint
