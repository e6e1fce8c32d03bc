"""ServiceEntry hosts become registry services (registry/service_entries.py), as Istio's docs say."""

from __future__ import annotations

from typing import cast

from trellis.api.kinds import parse_documents
from trellis.api.networking import ServiceEntry
from trellis.model.push_context import PushContext
from trellis.model.registry import Protocol, Resolution, Service, Workload
from trellis.model.snapshot import MeshSnapshot
from trellis.registry.local import hosts_entries
from trellis.registry.service_entries import (
    entry_vip,
    service_from_entry_host,
    services_from_service_entries,
    vip_key,
    vip_requests,
)


def entry(spec: str, name: str = "ext", namespace: str = "default") -> ServiceEntry:
    text = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{spec}"""
    (resource,) = parse_documents(text)
    return cast(ServiceEntry, resource)


STATIC = entry(
    """
  hosts: [api.example.test, api2.example.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 5432, name: tcp-db, protocol: TCP, targetPort: 15432}
  endpoints:
  - {address: 198.18.9.10, labels: {version: v1}}
  - {address: 198.18.9.11, labels: {version: v2}, ports: {http: 8080}}
"""
)


def test_each_host_is_its_own_service_named_by_the_host_as_written() -> None:
    services = services_from_service_entries([STATIC], {})
    assert [s.hostname for s in services] == ["api.example.test", "api2.example.test"]
    assert all(s.namespace == "default" and s.mesh_external for s in services)


def test_ports_take_their_protocol_and_target_port() -> None:
    service = service_from_entry_host(STATIC, "api.example.test")
    http, tcp = service.ports
    assert (http.port, http.target_port, http.protocol) == (80, 80, Protocol.HTTP)
    assert (tcp.port, tcp.target_port, tcp.protocol) == (5432, 15432, Protocol.TCP)


def test_static_endpoints_per_port_with_labels_and_named_port_overrides() -> None:
    service = service_from_entry_host(STATIC, "api.example.test")
    assert service.resolution is Resolution.CLIENT_SIDE_LB
    on_80 = [(e.address, e.port, dict(e.labels)) for n, e in service.static_endpoints if n == 80]
    assert on_80 == [
        ("198.18.9.10", 80, {"version": "v1"}),
        ("198.18.9.11", 8080, {"version": "v2"}),
    ]
    on_db = [(e.address, e.port) for n, e in service.static_endpoints if n == 5432]
    assert on_db == [("198.18.9.10", 15432), ("198.18.9.11", 15432)]


def test_mesh_external_endpoints_never_assume_a_sidecar() -> None:
    service = service_from_entry_host(STATIC, "api.example.test")
    assert not any(e.has_sidecar for _, e in service.static_endpoints)


def test_mesh_internal_endpoints_have_a_sidecar_only_when_labelled_so() -> None:
    internal = entry(
        """
  hosts: [vm.internal.test]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9090, name: http, protocol: HTTP}]
  endpoints:
  - {address: 198.18.9.30, labels: {security.istio.io/tlsMode: istio}}
  - {address: 198.18.9.31}
"""
    )
    service = service_from_entry_host(internal, "vm.internal.test")
    assert not service.mesh_external
    assert [e.has_sidecar for _, e in service.static_endpoints] == [True, False]


def test_resolutions_map_to_cluster_kinds() -> None:
    def resolution_of(value: str, host: str = "x.example.test", endpoints: str = "") -> Resolution:
        spec = f"  hosts: ['{host}']\n  resolution: {value}\n  ports: [{{number: 80, name: http}}]"
        return service_from_entry_host(entry(spec + endpoints), host).resolution

    assert resolution_of("NONE") is Resolution.PASSTHROUGH
    assert resolution_of("STATIC") is Resolution.CLIENT_SIDE_LB
    assert resolution_of("DNS") is Resolution.DNS
    assert resolution_of("DNS_ROUND_ROBIN") is Resolution.DNS_ROUND_ROBIN
    # A wildcard is no name DNS can resolve: its traffic passes through.
    assert resolution_of("DNS", host="*.example.test") is Resolution.PASSTHROUGH


def test_addresses_give_the_vip_cidr_ranges_do_not() -> None:
    assert entry_vip(["198.18.9.20"]) == "198.18.9.20"
    assert entry_vip(["198.18.9.20/32"]) == "198.18.9.20"
    assert entry_vip(["198.18.0.0/16"]) == ""
    assert entry_vip(["198.18.0.0/16", "198.18.9.21"]) == "198.18.9.21"


def test_auto_allocated_vips_only_for_concrete_hosts_without_addresses_and_not_none() -> None:
    dns = entry("  hosts: [a.example.test, '*.w.example.test']\n  resolution: DNS")
    none = entry("  hosts: [n.example.test]\n  resolution: NONE", name="none")
    addressed = entry(
        "  hosts: [b.example.test]\n  addresses: [198.18.9.20]\n  resolution: STATIC", name="b"
    )
    assert vip_requests([dns, none, addressed]) == [vip_key("default", "a.example.test")]
    (a, wild) = services_from_service_entries(
        [dns], {vip_key("default", "a.example.test"): "240.240.0.7"}
    )
    assert (a.vip, wild.vip) == ("240.240.0.7", "")
    assert service_from_entry_host(addressed, "b.example.test").vip == "198.18.9.20"


def test_hosts_files_name_entry_hosts_with_their_address_but_no_wildcards() -> None:
    dns = entry("  hosts: [a.example.test, '*.w.example.test']\n  resolution: DNS")
    services = services_from_service_entries(
        [dns], {vip_key("default", "a.example.test"): "240.240.0.7"}
    )
    assert hosts_entries(services, "other") == [("240.240.0.7", ["a.example.test"])]


def test_export_to_is_kept_for_visibility() -> None:
    scoped = entry("  hosts: [a.example.test]\n  exportTo: ['.']")
    assert service_from_entry_host(scoped, "a.example.test").export_to == (".",)


def test_workload_selector_selects_registry_workloads_in_the_entry_namespace() -> None:
    selected = entry(
        """
  hosts: [legacy.internal.test]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {labels: {app: legacy}}
  ports: [{number: 7070, name: tcp, protocol: TCP, targetPort: 7071}]
"""
    )
    services: tuple[Service, ...] = services_from_service_entries([selected], {})
    workloads = (
        Workload("legacy-1", "default", "198.18.9.40", {"app": "legacy"}),
        Workload("legacy-elsewhere", "other", "198.18.9.41", {"app": "legacy"}),
    )
    push = PushContext.build(MeshSnapshot(1, (), services, workloads))
    (service,) = push.services
    found = push.endpoints(service, service.ports[0])
    assert [(e.address, e.port, e.workload) for e in found] == [("198.18.9.40", 7071, "legacy-1")]


def test_static_endpoints_reach_the_push_context_per_port() -> None:
    push = PushContext.build(MeshSnapshot(1, (), services_from_service_entries([STATIC], {})))
    service = push.service("api.example.test")
    assert service is not None
    http, tcp = service.ports
    assert [e.port for e in push.endpoints(service, http)] == [80, 8080]
    assert [e.port for e in push.endpoints(service, tcp)] == [15432, 15432]
