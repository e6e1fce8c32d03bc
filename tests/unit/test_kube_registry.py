"""Core v1 Services, Pods and EndpointSlices as registry values (registry/kubernetes.py)."""

from __future__ import annotations

from typing import Any

from trellis.model.registry import Protocol
from trellis.registry.kubernetes import service_from_object, workload_from_pod


def svc(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta = {"name": "reviews", "namespace": "shop", "annotations": annotations or {}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def test_service_vip_is_the_cluster_ip_and_ports_keep_istio_protocols() -> None:
    spec = {
        "clusterIP": "10.96.3.4",
        "selector": {"app": "reviews"},
        "ports": [
            {"name": "http-web", "port": 80, "targetPort": 9080},
            {"name": "grpc", "port": 81, "targetPort": "grpc-port"},
            {"name": "db", "port": 5432, "appProtocol": "tcp"},
        ],
    }
    service = service_from_object(svc(spec, {"networking.istio.io/exportTo": "."}))
    assert service is not None
    assert (service.vip, service.hostname) == ("10.96.3.4", "reviews.shop.svc.cluster.local")
    assert [(p.port, p.target_port, p.protocol) for p in service.ports] == [
        (80, 9080, Protocol.HTTP),
        (81, 81, Protocol.GRPC),  # named targetPort: the service port
        (5432, 5432, Protocol.TCP),
    ]
    assert service.export_to == (".",)


def test_headless_and_external_name_services() -> None:
    headless = service_from_object(svc({"clusterIP": "None", "selector": {"a": "b"}}))
    assert headless is not None and headless.vip == ""
    assert service_from_object(svc({"type": "ExternalName", "externalName": "x.example"})) is None


def pod(status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "r-1", "namespace": "shop", "labels": {"app": "r"}, **meta},
        "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
        "status": status,
    }


def test_pod_workload_needs_an_ip_readiness_and_life() -> None:
    running = {"phase": "Running", "podIP": "10.1.2.3"}
    workload = workload_from_pod(pod(running))
    assert workload is not None
    assert (workload.ip, workload.service_account, workload.has_sidecar) == (
        "10.1.2.3",
        "default",
        True,
    )
    assert workload_from_pod(pod({"phase": "Pending"})) is None
    assert workload_from_pod(pod({**running, "phase": "Succeeded"})) is None
    assert workload_from_pod(pod(running, deletionTimestamp="2026-01-01T00:00:00Z")) is None
    not_ready = {**running, "conditions": [{"type": "Ready", "status": "False"}]}
    assert workload_from_pod(pod(not_ready)) is None
