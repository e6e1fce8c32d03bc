"""The mesh without capture (`--capture=proxy`, DESIGN §7): node metadata, compiler, addresses."""

from __future__ import annotations

import socket
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import struct_pb2

from trellis.agent.bootstrap import BootstrapOptions, build_bootstrap
from trellis.api.kinds import parse_documents
from trellis.compiler import compile_all, compile_resources
from trellis.compiler.consistency import check_consistency
from trellis.compiler.dependencies import output_parts
from trellis.compiler.forward_proxy import DYNAMIC_FORWARD_PROXY_FILTER
from trellis.errors import Conflict
from trellis.model import xds_types
from trellis.model.proxy import InterceptionMode, Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.registry import Protocol, Service, ServicePort, Workload
from trellis.model.snapshot import MeshConfig, MeshSnapshot, OutboundPolicy
from trellis.runtime import loopback
from trellis.xds.node import MalformedNode, proxy_from_node

REVIEWS = Service(
    name="reviews",
    namespace="default",
    vip="240.240.0.12",
    ports=(ServicePort("http", 9080, 9080, Protocol.HTTP),),
    selector={"app": "reviews"},
)
PRODUCTPAGE = replace(REVIEWS, name="productpage", vip="240.240.0.10", selector={"app": "pp"})
WORKLOADS = (
    Workload("reviews-v1", "default", "127.18.0.21", {"app": "reviews", "version": "v1"}),
    Workload("reviews-v2", "default", "127.18.0.22", {"app": "reviews", "version": "v2"}),
    Workload("productpage-v1", "default", "127.18.0.10", {"app": "pp"}),
)
ROUTING = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
UNCAPTURED = Proxy(
    ProxyType.SIDECAR,
    "127.18.0.10",
    "productpage-v1",
    "default",
    {"app": "pp"},
    interception=InterceptionMode.NONE,
    app_host="127.19.0.10",
)


def push_for(mesh: MeshConfig | None = None) -> PushContext:
    return PushContext.build(
        MeshSnapshot(
            1,
            resources=tuple(parse_documents(ROUTING)),
            services=(REVIEWS, PRODUCTPAGE),
            workloads=WORKLOADS,
            mesh=mesh or MeshConfig(),
        )
    )


def node(metadata: dict[str, str]) -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update(metadata)
    return base_pb2.Node(
        id="sidecar~127.18.0.10~productpage-v1.default~default.svc.cluster.local", metadata=meta
    )


# --- node metadata --------------------------------------------------------------------------


def test_node_without_interception_mode_is_captured_like_istio() -> None:
    proxy = proxy_from_node(node({}))
    assert proxy.interception is InterceptionMode.REDIRECT and proxy.captured
    assert proxy.app_host == "127.0.0.1"


def test_node_with_interception_none_carries_the_app_host() -> None:
    proxy = proxy_from_node(node({"INTERCEPTION_MODE": "NONE", "APP_HOST": "127.19.0.10"}))
    assert proxy.interception is InterceptionMode.NONE and not proxy.captured
    assert proxy.app_host == "127.19.0.10"


@pytest.mark.parametrize(
    "metadata", [{"INTERCEPTION_MODE": "SOMETIMES"}, {"INTERCEPTION_MODE": "NONE", "APP_HOST": "x"}]
)
def test_node_with_bad_interception_metadata_is_refused(metadata: dict[str, str]) -> None:
    with pytest.raises(MalformedNode):
        proxy_from_node(node(metadata))


def test_bootstrap_sends_interception_mode_and_app_host_without_capture() -> None:
    base = BootstrapOptions(ProxyType.SIDECAR, "127.18.0.10", "productpage-v1", "default")
    captured = build_bootstrap(base)["node"]["metadata"]
    assert captured["INTERCEPTION_MODE"] == "REDIRECT" and "APP_HOST" not in captured
    opts = replace(base, interception=InterceptionMode.NONE, app_host="127.19.0.10")
    metadata = build_bootstrap(opts)["node"]["metadata"]
    assert (metadata["INTERCEPTION_MODE"], metadata["APP_HOST"]) == ("NONE", "127.19.0.10")
    assert opts.proxy.app_host == "127.19.0.10" and not opts.proxy.captured


# --- compiler -------------------------------------------------------------------------------


def test_uncaptured_sidecar_binds_pod_address_instead_of_capture_listeners() -> None:
    cfg = compile_all(UNCAPTURED, push_for())
    assert sorted(cfg.listeners) == ["127.18.0.10_15001", "127.18.0.10_9080"]
    assert list(cfg.routes) == ["proxy"]
    assert "InboundPassthroughCluster" not in cfg.clusters
    inbound = cfg.clusters["inbound|9080||"].load_assignment.endpoints[0].lb_endpoints[0]
    assert inbound.endpoint.address.socket_address.address == "127.19.0.10"
    assert check_consistency(cfg) == []


def test_proxy_route_config_reuses_the_virtual_service_translation() -> None:
    push = push_for()
    captured = replace(UNCAPTURED, interception=InterceptionMode.REDIRECT)
    per_port = compile_all(captured, push).routes["9080"].virtual_hosts
    proxy = compile_all(UNCAPTURED, push).routes["proxy"].virtual_hosts
    by_name = {h.name: h for h in proxy}
    for host in per_port[:-1]:  # the catch-all differs only in being shared by all ports
        assert list(by_name[host.name].routes) == list(host.routes)
        assert list(by_name[host.name].domains) == [d for d in host.domains if d.endswith(":9080")]


def test_registry_only_mesh_blackholes_unknown_hosts_without_forward_proxy() -> None:
    push = push_for(MeshConfig(outbound_policy=OutboundPolicy.REGISTRY_ONLY))
    cfg = compile_all(UNCAPTURED, push)
    catch_all = cfg.routes["proxy"].virtual_hosts[-1]
    # Istio's block_all route answers 502 itself (an empty BlackHoleCluster would give 503).
    assert catch_all.name == "block_all" and catch_all.routes[0].direct_response.status == 502
    manager = hcm.HttpConnectionManager()
    cfg.listeners["127.18.0.10_15001"].filter_chains[0].filters[0].typed_config.Unpack(manager)
    assert DYNAMIC_FORWARD_PROXY_FILTER not in [f.name for f in manager.http_filters]


def test_allow_any_mesh_forwards_unknown_hosts_by_their_host_header() -> None:
    cfg = compile_all(UNCAPTURED, push_for())
    assert cfg.routes["proxy"].virtual_hosts[-1].routes[0].route.cluster == "PassthroughCluster"
    assert cfg.clusters["PassthroughCluster"].cluster_type.name.endswith("dynamic_forward_proxy")


def test_the_compile_cache_treats_an_uncaptured_sidecar_as_a_whole() -> None:
    push = push_for()
    for type_url in (xds_types.CLUSTER, xds_types.LISTENER, xds_types.ROUTE):
        merged: dict[str, object] = {}
        for part in output_parts(UNCAPTURED, type_url):
            merged.update(part.build(UNCAPTURED, push))
        assert merged == compile_resources(UNCAPTURED, push, type_url)
        captured = replace(UNCAPTURED, interception=InterceptionMode.REDIRECT)
        keys = {p.key(UNCAPTURED, push) for p in output_parts(UNCAPTURED, type_url)}
        assert keys.isdisjoint({p.key(captured, push) for p in output_parts(captured, type_url)})


# --- runtime addresses ----------------------------------------------------------------------


def test_each_pod_address_has_a_private_app_twin() -> None:
    assert loopback.app_address("127.18.3.7") == "127.19.3.7"
    assert loopback.app_to_pod(IPv4Address("127.19.3.7")) == IPv4Address("127.18.3.7")


def test_a_mesh_takes_a_loopback_block_nothing_listens_in() -> None:
    first = loopback.choose_loopback_subnet([], "trabcd")
    assert first.subnet_of(loopback.POD_NETWORK) and first.prefixlen == 20
    busy = [first.network_address + 5, IPv4Address("127.0.0.1")]
    second = loopback.choose_loopback_subnet(busy, "trabcd")
    assert second != first
    app_busy = [IPv4Address(loopback.app_address(str(first.network_address + 9)))]
    assert loopback.choose_loopback_subnet(app_busy, "trabcd") != first


def test_listening_addresses_are_read_from_proc_net_tcp(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 0A00127F:1F90 00000000:0000 0A 00000000:00000000\n"  # 127.18.0.10:8080 LISTEN
        "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000\n"  # established: ignored
    )
    assert loopback.listening_addresses(table) == {IPv4Address("127.18.0.10")}
    assert loopback.listening_addresses(tmp_path / "missing") == set()


def test_a_taken_port_fails_with_a_clear_reason() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(Conflict, match=f"port {port} on 127.0.0.1 is taken"):
            loopback.check_ports_free(["127.0.0.1"], [port])
    loopback.check_ports_free(["127.18.255.254"], [port])


def test_apps_get_their_address_and_their_sidecar_as_http_proxy() -> None:
    env = loopback.app_env("127.18.0.10", "127.19.0.10", sidecar=True)
    assert env["TRELLIS_APP_HOST"] == env["HOST"] == env["BIND_ADDRESS"] == "127.19.0.10"
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://127.18.0.10:15001"
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1"
    assert "HTTP_PROXY" not in loopback.app_env("127.18.0.11", "127.18.0.11", sidecar=False)
    assert IPv4Network("127.18.0.0/16") == loopback.POD_NETWORK
