"""Loading golden cases (input.yaml) and rendering compiled output (expected.json).

See README.md in this directory for the input format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from trellis.api.base import Resource
from trellis.api.kinds import parse_documents
from trellis.api.networking import ServiceEntry
from trellis.compiler import ProxyConfig, compile_all
from trellis.model.proxy import InterceptionMode, Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Service, Workload
from trellis.model.snapshot import MeshConfig, MeshSnapshot, OutboundPolicy
from trellis.registry.local import allocate_vip, service_from_resource
from trellis.registry.service_entries import services_from_service_entries, vip_requests
from trellis.registry.workload_entries import workloads_from_resources

GOLDEN_DIR = Path(__file__).parent
TEST_API = "golden.trellis.dev/v1"
CASE_FILES = frozenset({"input.yaml", "expected.json"})


@dataclass(frozen=True)
class GoldenCase:
    name: str
    snapshot: MeshSnapshot
    proxies: tuple[Proxy, ...]

    def compile(self) -> dict[str, ProxyConfig]:
        push = PushContext.build(self.snapshot)
        return {proxy.key: compile_all(proxy, push) for proxy in self.proxies}


def case_dirs() -> list[Path]:
    return sorted(
        p for p in GOLDEN_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )


def load_case(directory: Path) -> GoldenCase:
    docs = [d for d in yaml.safe_load_all((directory / "input.yaml").read_text()) if d]
    test_docs = [d for d in docs if d.get("apiVersion") == TEST_API]
    api_text = yaml.safe_dump_all([d for d in docs if d.get("apiVersion") != TEST_API])
    resources = tuple(parse_documents(api_text))
    services = tuple(
        service_from_resource(r, r.spec.cluster_ip or "")  # type: ignore[attr-defined]
        for r in resources
        if r.kind == "Service"
    )
    services += _service_entry_services(resources, {s.hostname: s.vip for s in services})
    snapshot = MeshSnapshot(
        version=1,
        resources=tuple(r for r in resources if r.kind != "Service"),
        services=services,
        workloads=(
            *(_workload(d) for d in test_docs if d["kind"] == "Workload"),
            *workloads_from_resources(resources),  # WorkloadEntry, as trellisd adds them
        ),
        mesh=_mesh(next((d for d in test_docs if d["kind"] == "MeshConfig"), None)),
    )
    proxies = tuple(_proxy(d) for d in test_docs if d["kind"] == "Proxy")
    if not proxies:
        raise ValueError(f"golden case {directory.name}: no `kind: Proxy` document")
    return GoldenCase(directory.name, snapshot, proxies)


def _service_entry_services(
    resources: tuple[Resource, ...], taken: dict[str, str]
) -> tuple[Service, ...]:
    """ServiceEntry hosts, auto-allocated VIPs taken as trellisd would (after the clusterIPs)."""
    entries = [r for r in resources if isinstance(r, ServiceEntry)]
    allocated = dict(taken)
    for key in vip_requests(entries):
        allocated[key] = allocate_vip(key, allocated)
    return services_from_service_entries(entries, allocated)


def _workload(doc: dict[str, Any]) -> Workload:
    meta = doc["metadata"]
    return Workload(
        name=meta["name"],
        namespace=meta.get("namespace", "default"),
        ip=doc["ip"],
        labels=meta.get("labels", {}),
        service_account=doc.get("serviceAccount", "default"),
        has_sidecar=doc.get("hasSidecar", True),
    )


def _proxy(doc: dict[str, Any]) -> Proxy:
    meta = doc["metadata"]
    return Proxy(
        type=ProxyType(doc.get("type", "sidecar")),
        ip=doc["ip"],
        name=meta["name"],
        namespace=meta.get("namespace", "default"),
        labels=meta.get("labels", {}),
        service_account=doc.get("serviceAccount", "default"),
        interception=InterceptionMode(doc.get("interceptionMode", "REDIRECT")),
        app_host=doc.get("appHost", "127.0.0.1"),
    )


def _mesh(doc: dict[str, Any] | None) -> MeshConfig:
    mesh = MeshConfig()
    if doc is None:
        return mesh
    if "outboundTrafficPolicy" in doc:
        mesh = replace(mesh, outbound_policy=OutboundPolicy(doc["outboundTrafficPolicy"]))
    if "accessLogFile" in doc:
        mesh = replace(mesh, access_log_file=doc["accessLogFile"])
    if "connectTimeout" in doc:
        mesh = replace(mesh, connect_timeout_s=float(doc["connectTimeout"]))
    if "tracingAddress" in doc:
        mesh = replace(mesh, tracing_address=doc["tracingAddress"])
    if "traceSampling" in doc:
        mesh = replace(mesh, trace_sampling=float(doc["traceSampling"]))
    return mesh


def to_json(message: Message) -> dict[str, Any]:
    """Envoy's own config-dump style: proto field names, typed Anys with @type."""
    return MessageToDict(message, preserving_proto_field_name=True)


def render(configs: dict[str, ProxyConfig]) -> str:
    """expected.json text: per proxy, per xDS type, resources by name; keys sorted."""
    data = {
        key: {
            "clusters": {n: to_json(m) for n, m in cfg.clusters.items()},
            "endpoints": {n: to_json(m) for n, m in cfg.endpoints.items()},
            "listeners": {n: to_json(m) for n, m in cfg.listeners.items()},
            "routes": {n: to_json(m) for n, m in cfg.routes.items()},
        }
        for key, cfg in configs.items()
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
