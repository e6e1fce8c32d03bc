"""Envoy names are a contract: build, parse, and round-trip (DESIGN §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.model import names
from trellis.model.names import (
    ClusterName,
    Direction,
    ListenerName,
    RouteConfigName,
    VirtualHostName,
)

HOSTS = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,4}", fullmatch=True)
SUBSETS = st.from_regex(r"[a-z0-9-]{0,8}", fullmatch=True)
PORTS = st.integers(min_value=1, max_value=65535)


def test_outbound_cluster_name_has_istio_shape() -> None:
    name = ClusterName.outbound(9080, "v1", "reviews.default.svc.cluster.local")
    assert name == "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert ClusterName.outbound(9080, "", "reviews.default.svc.cluster.local") == (
        "outbound|9080||reviews.default.svc.cluster.local"
    )


def test_inbound_cluster_name_has_istio_shape() -> None:
    assert ClusterName.inbound(9080) == "inbound|9080||"
    assert ClusterName.parse("inbound|9080||") == ClusterName(Direction.INBOUND, 9080)


def test_cluster_name_parses_into_its_parts() -> None:
    parsed = ClusterName.parse("outbound|9080|v1|reviews.default.svc.cluster.local")
    assert parsed.direction is Direction.OUTBOUND
    assert (parsed.port, parsed.subset, parsed.host) == (
        9080,
        "v1",
        "reviews.default.svc.cluster.local",
    )


@given(PORTS, SUBSETS, HOSTS)
def test_outbound_cluster_name_round_trips(port: int, subset: str, host: str) -> None:
    name = ClusterName.outbound(port, subset, host)
    assert str(ClusterName.parse(name)) == name
    assert ClusterName.parse(name) == ClusterName(Direction.OUTBOUND, port, subset, host)


@pytest.mark.parametrize(
    "name",
    [
        names.BLACKHOLE,
        names.PASSTHROUGH,
        names.INBOUND_PASSTHROUGH,
        "sideways|1||x",
        "outbound|x||h",
    ],
)
def test_special_and_foreign_cluster_names_do_not_parse(name: str) -> None:
    with pytest.raises(ValueError):
        ClusterName.parse(name)


def test_special_names_are_istios() -> None:
    assert names.BLACKHOLE == "BlackHoleCluster"
    assert names.PASSTHROUGH == "PassthroughCluster"
    assert names.INBOUND_PASSTHROUGH == "InboundPassthroughCluster"
    assert (names.VIRTUAL_OUTBOUND, names.VIRTUAL_OUTBOUND_PORT) == ("virtualOutbound", 15001)
    assert (names.VIRTUAL_INBOUND, names.VIRTUAL_INBOUND_PORT) == ("virtualInbound", 15006)


def test_listener_names() -> None:
    assert ListenerName.wildcard(9080) == "0.0.0.0_9080"
    assert ListenerName.for_address("240.240.0.40", 9000) == "240.240.0.40_9000"
    assert ListenerName.parse("240.240.0.40_9000") == ListenerName("240.240.0.40", 9000)
    with pytest.raises(ValueError):
        ListenerName.parse(names.VIRTUAL_OUTBOUND)


@given(st.ip_addresses(v=4).map(str), PORTS)
def test_listener_name_round_trips(address: str, port: int) -> None:
    assert str(ListenerName.parse(ListenerName.for_address(address, port))) == f"{address}_{port}"


def test_route_config_names() -> None:
    assert RouteConfigName.sidecar(9080) == "9080"
    assert RouteConfigName.for_gateway(8080) == "http.8080"
    assert RouteConfigName.parse("9080") == RouteConfigName(9080)
    assert RouteConfigName.parse("http.8080") == RouteConfigName(8080, gateway=True)
    with pytest.raises(ValueError):
        RouteConfigName.parse("https.443.https.gw.ns")


@given(PORTS, st.booleans())
def test_route_config_name_round_trips(port: int, gateway: bool) -> None:
    name = str(RouteConfigName(port, gateway))
    assert RouteConfigName.parse(name) == RouteConfigName(port, gateway)


def test_virtual_host_names() -> None:
    assert VirtualHostName.build("reviews.default.svc.cluster.local", 9080) == (
        "reviews.default.svc.cluster.local:9080"
    )
    assert VirtualHostName.parse("*:8080") == VirtualHostName("*", 8080)
    with pytest.raises(ValueError):
        VirtualHostName.parse("allow_any")


@given(HOSTS, PORTS)
def test_virtual_host_name_round_trips(host: str, port: int) -> None:
    assert VirtualHostName.parse(VirtualHostName.build(host, port)) == VirtualHostName(host, port)
