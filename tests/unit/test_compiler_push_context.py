"""PushContext indexes: Istio's scoping rules for hosts, VirtualServices and DestinationRules."""

from __future__ import annotations

from trellis.api.kinds import parse_documents
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext, exported_to, gateway_key, host_matches
from trellis.model.registry import Protocol, Service, ServicePort, Workload
from trellis.model.snapshot import MeshSnapshot


def service(name: str, namespace: str = "default", port: int = 9080, target: int = 9080) -> Service:
    return Service(
        name=name,
        namespace=namespace,
        vip="240.240.0.9",
        ports=(ServicePort("http", port, target, Protocol.HTTP),),
        selector={"app": name},
    )


def push_of(
    yaml_text: str = "", services: tuple[Service, ...] = (), workloads: tuple[Workload, ...] = ()
) -> PushContext:
    resources = tuple(parse_documents(yaml_text)) if yaml_text else ()
    return PushContext.build(MeshSnapshot(1, resources, services, workloads))


def dr(name: str, namespace: str, host: str, export_to: str = "") -> str:
    export = f"\n  exportTo: [{export_to!r}]" if export_to else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {host}{export}
---"""


def test_short_host_resolves_against_the_resource_namespace() -> None:
    push = push_of(services=(service("reviews"), service("ratings", "other")))
    assert push.resolve_host("reviews", "default") == "reviews.default.svc.cluster.local"
    assert push.resolve_host("ratings", "default") == "ratings.default.svc.cluster.local"
    assert push.resolve_host("ratings.other", "default") == "ratings.other.svc.cluster.local"
    assert push.resolve_host("ratings.other.svc", "x") == "ratings.other.svc.cluster.local"


def test_external_and_wildcard_hosts_stay_as_written() -> None:
    push = push_of(services=(service("reviews"),))
    assert push.resolve_host("example.com", "default") == "example.com"
    assert push.resolve_host("*.example.com", "default") == "*.example.com"


def test_host_matching_supports_wildcards() -> None:
    assert host_matches("*", "reviews.default.svc.cluster.local")
    assert host_matches("*.example.com", "a.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert not host_matches("a.example.com", "*.example.com")


def test_export_to() -> None:
    assert exported_to([], "a", "b")
    assert exported_to(["*"], "a", "b")
    assert exported_to(["."], "a", "a")
    assert not exported_to(["."], "a", "b")
    assert exported_to(["b"], "a", "b")


def test_gateway_references_are_namespaced() -> None:
    assert gateway_key("mesh", "default") == "mesh"
    assert gateway_key("bookinfo-gateway", "default") == "default/bookinfo-gateway"
    assert gateway_key("istio-system/public", "default") == "istio-system/public"
    assert gateway_key("public.istio-system.svc.cluster.local", "x") == "istio-system/public"


def test_virtual_service_without_gateways_binds_to_mesh_and_first_wins() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: first}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: second}
spec: {hosts: [reviews.default.svc.cluster.local], http: [{route: [{destination: {host: reviews}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec: {hosts: ["*"], gateways: [gw], http: [{route: [{destination: {host: reviews}}]}]}
"""
    push = push_of(text, (service("reviews"),))
    chosen = push.mesh_virtual_service("reviews.default.svc.cluster.local", "default")
    assert chosen is not None and chosen.name == "first"
    assert [vs.name for vs in push.virtual_services_for("default/gw", "default")] == ["edge"]


def test_destination_rule_lookup_prefers_client_then_service_then_root_namespace() -> None:
    host = "reviews.default.svc.cluster.local"
    rules = (
        dr("root", "istio-system", host) + dr("svc", "default", host) + dr("client", "team", host)
    )
    push = push_of(rules, (service("reviews"),))
    assert _rule(push, host, "team") == "client"
    assert _rule(push, host, "elsewhere") == "svc"
    only_root = push_of(dr("root", "istio-system", host), (service("reviews"),))
    assert _rule(only_root, host, "team") == "root"


def test_destination_rule_export_to_dot_hides_it_from_other_namespaces() -> None:
    host = "reviews.default.svc.cluster.local"
    push = push_of(dr("private", "default", "reviews", export_to="."), (service("reviews"),))
    assert _rule(push, host, "default") == "private"
    assert push.destination_rule(host, "team") is None


def _rule(push: PushContext, host: str, namespace: str) -> str:
    rule = push.destination_rule(host, namespace)
    assert rule is not None
    return rule.name


def test_endpoints_are_matching_workloads_of_the_same_namespace_on_the_target_port() -> None:
    workloads = (
        Workload("r1", "default", "198.18.0.2", {"app": "reviews"}),
        Workload("r0", "default", "198.18.0.1", {"app": "reviews"}),
        Workload("elsewhere", "other", "198.18.0.3", {"app": "reviews"}),
        Workload("x", "default", "198.18.0.4", {"app": "ratings"}),
    )
    svc = service("reviews", port=80, target=8080)
    push = push_of(services=(svc,), workloads=workloads)
    found = push.endpoints(svc, svc.ports[0])
    assert [(e.address, e.port, e.workload) for e in found] == [
        ("198.18.0.1", 8080, "r0"),
        ("198.18.0.2", 8080, "r1"),
    ]


def test_services_selecting_a_proxy_are_its_inbound_services() -> None:
    push = push_of(services=(service("reviews"), service("ratings"), service("reviews", "other")))
    proxy = Proxy(ProxyType.SIDECAR, "198.18.0.1", "reviews-v1", "default", {"app": "reviews"})
    assert [s.hostname for s in push.services_selecting(proxy)] == [
        "reviews.default.svc.cluster.local"
    ]
