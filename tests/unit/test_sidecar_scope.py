"""Config visibility (model/sidecar_scope.py): which Sidecar applies to a proxy, which services
its egress hosts and exportTo let it see, and what the compiler makes of it."""

from __future__ import annotations

import dataclasses

import pytest

from trellis.api.kinds import parse_documents
from trellis.api.networking import Sidecar
from trellis.compiler import compile_all
from trellis.compiler.consistency import check_consistency
from trellis.model import names
from trellis.model.proxy import InterceptionMode, Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Protocol, Service, ServicePort
from trellis.model.sidecar_scope import (
    UNSCOPED,
    EgressHost,
    exported_to,
    parse_export_to,
    select_sidecar,
)
from trellis.model.snapshot import MeshSnapshot, OutboundPolicy
from trellis.registry.local import service_from_resource

HTTP = (ServicePort("http", 9080, 9080, Protocol.HTTP),)


def service(name: str, namespace: str = "default", *, export_to: tuple[str, ...] = ()) -> Service:
    return Service(name, namespace, "", HTTP, {"app": name}, export_to=export_to)


SERVICES = (
    service("details"),
    service("reviews"),
    service("httpbin", "other"),
    service("istiod", "istio-system"),
)


def proxy(namespace: str = "default", app: str = "productpage", **kw: object) -> Proxy:
    return Proxy(ProxyType.SIDECAR, "198.18.0.10", f"{app}-v1", namespace, {"app": app}, **kw)


def sidecar(
    name: str, namespace: str, hosts: list[str], selector: str = "", extra: str = ""
) -> str:
    select = f"  workloadSelector: {{labels: {{app: {selector}}}}}\n" if selector else ""
    return (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{select}"
        f"  egress: [{{hosts: {hosts}}}]\n{extra}---\n"
    )


def push(yaml_text: str = "", services: tuple[Service, ...] = SERVICES) -> PushContext:
    return PushContext.build(MeshSnapshot(1, tuple(parse_documents(yaml_text)), services))


def visible(p: Proxy, ctx: PushContext) -> list[str]:
    return sorted(s.name for s in ctx.outbound_services(p))


# --- which Sidecar applies ------------------------------------------------------------------

SIDECARS = (
    sidecar("root", "istio-system", ["./*"])
    + sidecar("ns", "default", ["./*"])
    + sidecar("pp", "default", ["./details"], selector="productpage")
    + sidecar("other-ns-selector", "other", ["*/*"], selector="productpage")
)


def _chosen(p: Proxy) -> str | None:
    ctx = push(SIDECARS)
    chosen: Sidecar | None = select_sidecar(p, ctx.sidecars, ctx.mesh.root_namespace)
    return chosen.name if chosen else None


def test_a_selecting_sidecar_beats_the_namespace_default() -> None:
    assert _chosen(proxy(app="productpage")) == "pp"


def test_the_namespace_default_applies_to_workloads_no_selector_matches() -> None:
    assert _chosen(proxy(app="details")) == "ns"


def test_the_root_namespace_default_covers_namespaces_without_their_own() -> None:
    assert _chosen(proxy("third")) == "root"


def test_a_selector_only_applies_in_its_own_namespace() -> None:
    assert _chosen(proxy("other", app="productpage")) == "other-ns-selector"
    assert _chosen(proxy("other", app="sleep")) == "root"


def test_gateways_ignore_sidecars() -> None:
    gateway = dataclasses.replace(proxy(), type=ProxyType.ROUTER)
    assert _chosen(gateway) is None
    assert push(SIDECARS).sidecar_scope(gateway) == UNSCOPED


def test_no_sidecar_means_everything_is_visible() -> None:
    assert visible(proxy(), push()) == ["details", "httpbin", "istiod", "reviews"]


# --- egress hosts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        (["./*"], ["details", "reviews"]),
        (["*/*"], ["details", "httpbin", "istiod", "reviews"]),
        (["~/*"], []),
        (["./details.default.svc.cluster.local"], ["details"]),
        (
            ["./reviews", "istio-system/*"],
            ["istiod"],
        ),  # a dnsName is matched as written: FQDN or `*`
        (["./*.default.svc.cluster.local", "istio-system/*"], ["details", "istiod", "reviews"]),
        (["other/*", "*/istiod.istio-system.svc.cluster.local"], ["httpbin", "istiod"]),
    ],
)
def test_egress_hosts_select_services_by_namespace_and_dns_name(
    hosts: list[str], expected: list[str]
) -> None:
    assert visible(proxy(), push(sidecar("s", "default", hosts))) == expected


def test_dot_in_the_root_default_means_the_proxy_namespace() -> None:
    ctx = push(sidecar("root", "istio-system", ["./*"]))
    assert visible(proxy("other", app="sleep"), ctx) == ["httpbin"]
    assert visible(proxy(), ctx) == ["details", "reviews"]


def test_egress_host_parsing() -> None:
    assert EgressHost.parse("./*", "ns1") == EgressHost("ns1", "*")
    assert EgressHost.parse("*/a.b", "ns1") == EgressHost("*", "a.b")
    assert not EgressHost.parse("~/*", "ns1").allows(service("details"))


def test_a_port_scoped_egress_listener_narrows_the_service_ports() -> None:
    two_ports = Service(
        "httpbin",
        "other",
        "",
        (
            ServicePort("http", 8000, 80, Protocol.HTTP),
            ServicePort("http-alt", 9080, 80, Protocol.HTTP),
        ),
    )
    text = (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec:\n"
        "  egress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n"
        "    hosts: [other/*]\n  - hosts: [./*]\n"
    )
    (seen,) = push(text, (two_ports,)).outbound_services(proxy())
    assert [p.port for p in seen.ports] == [9080]


def test_virtual_service_destinations_of_visible_hosts_stay_visible() -> None:
    text = sidecar("s", "default", ["./details.default.svc.cluster.local"]) + (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: details}\nspec:\n  hosts: [details]\n"
        "  http: [{route: [{destination: {host: reviews}}]}]\n"
    )
    assert visible(proxy(), push(text)) == ["details", "reviews"]


# --- exportTo -------------------------------------------------------------------------------


def test_export_to_annotation_is_parsed_from_a_service_resource() -> None:
    (resource,) = parse_documents(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n"
        "  annotations: {networking.istio.io/exportTo: '., istio-system'}\n"
        "spec: {ports: [{name: http, port: 9080}]}\n"
    )
    assert service_from_resource(resource, "").export_to == (".", "istio-system")
    assert parse_export_to(None) == ()


@pytest.mark.parametrize(
    ("export_to", "namespace", "expected"),
    [
        ((), "other", True),
        (("*",), "other", True),
        ((".",), "default", True),
        ((".",), "other", False),
        (("other",), "other", True),
        (("other",), "third", False),
        (("~",), "default", False),
    ],
)
def test_export_to_rules(export_to: tuple[str, ...], namespace: str, expected: bool) -> None:
    assert exported_to(export_to, "default", namespace) is expected


def test_unexported_services_are_invisible_even_to_gateways_and_wide_sidecars() -> None:
    services = (service("details"), service("reviews", export_to=(".",)))
    ctx = push(sidecar("root", "istio-system", ["*/*"]), services)
    gateway = dataclasses.replace(proxy("istio-system"), type=ProxyType.ROUTER)
    assert visible(gateway, ctx) == ["details"]
    assert visible(proxy("other"), ctx) == ["details"]
    assert visible(proxy(), ctx) == ["details", "reviews"]


def test_a_service_entry_style_export_to_applies_too() -> None:
    """ServiceEntry hosts carry their exportTo on the registry Service the same way."""
    external = Service("api", "default", "", HTTP, host="api.example.com", export_to=("other",))
    assert visible(proxy("other"), push("", (external,))) == ["api"]
    assert visible(proxy(), push("", (external,))) == []


# --- what the compiler makes of a scope -----------------------------------------------------

SCOPED = (
    sidecar(
        "pp",
        "default",
        ["./details.default.svc.cluster.local"],
        selector="productpage",
        extra=(
            "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
            "  ingress: [{port: {number: 9080, protocol: HTTP, name: http},"
            " defaultEndpoint: '127.0.0.1:8080'}]\n"
        ),
    )
    + "apiVersion: v1\nkind: Service\nmetadata: {name: productpage}\n"
    "spec: {selector: {app: productpage}, ports: [{name: http, port: 9080}]}\n"
)


def _scoped_push() -> PushContext:
    resources = tuple(parse_documents(SCOPED))
    pp = service_from_resource(next(r for r in resources if r.kind == "Service"), "240.240.0.5")
    kept = tuple(r for r in resources if r.kind != "Service")
    return PushContext.build(MeshSnapshot(1, kept, (*SERVICES, pp)))


def test_a_scoped_proxy_gets_only_its_clusters_and_stays_consistent() -> None:
    config = compile_all(proxy(), _scoped_push())
    outbound = sorted(n for n in config.clusters if n.startswith("outbound|"))
    assert outbound == ["outbound|9080||details.default.svc.cluster.local"]
    assert sorted(config.endpoints) == outbound
    assert check_consistency(config) == []


def test_the_sidecar_outbound_policy_overrides_the_mesh() -> None:
    ctx = _scoped_push()
    assert ctx.outbound_policy(proxy()) is OutboundPolicy.REGISTRY_ONLY
    assert ctx.outbound_policy(proxy(app="details")) is OutboundPolicy.ALLOW_ANY
    config = compile_all(proxy(), ctx)
    fallback = config.listeners[names.VIRTUAL_OUTBOUND].default_filter_chain.name
    assert fallback == names.BLACKHOLE
    assert config.routes["9080"].virtual_hosts[-1].name == names.BLOCK_ALL_VHOST


def test_an_ingress_listener_forwards_its_port_to_the_default_endpoint() -> None:
    config = compile_all(proxy(), _scoped_push())
    cluster = config.clusters["inbound|9080||"]
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "127.0.0.1",
        8080,
    )
    chains = config.listeners[names.VIRTUAL_INBOUND].filter_chains
    assert {c.filter_chain_match.destination_port.value for c in chains} == {9080}


def test_without_capture_the_scope_still_narrows_the_proxy_route() -> None:
    uncaptured = proxy(interception=InterceptionMode.NONE, app_host="127.19.0.10")
    config = compile_all(uncaptured, _scoped_push())
    hosts = [vh.name for vh in config.routes[names.HTTP_PROXY_ROUTE].virtual_hosts]
    assert hosts == ["details.default.svc.cluster.local:9080", names.BLOCK_ALL_VHOST]
    assert "inbound|9080||" in config.clusters  # ingress listeners: captured sidecars only
    assert check_consistency(config) == []
