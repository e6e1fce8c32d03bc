"""The agent's Envoy bootstrap: identity, ADS wiring and the static ports (DESIGN.md §4)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from trellis.agent.bootstrap import BootstrapOptions, build_bootstrap
from trellis.model.proxy import ProxyType

_REVIEWS = "outbound|9080|v1|reviews.bookinfo.svc.cluster.local"


def _opts(**overrides: Any) -> BootstrapOptions:
    base: dict[str, Any] = {
        "type": ProxyType.SIDECAR,
        "ip": "198.18.0.7",
        "name": "reviews-v1",
        "namespace": "bookinfo",
        "labels": {"app": "reviews", "version": "v1"},
        "service_account": "bookinfo-reviews",
        "xds_host": "198.18.0.1",
        "xds_port": 15010,
    }
    base.update(overrides)
    return BootstrapOptions(**base)


def _listener(bootstrap: dict[str, Any], name: str) -> dict[str, Any]:
    return next(x for x in bootstrap["static_resources"]["listeners"] if x["name"] == name)


def _cluster(bootstrap: dict[str, Any], name: str) -> dict[str, Any]:
    return next(x for x in bootstrap["static_resources"]["clusters"] if x["name"] == name)


def _routes(listener: dict[str, Any]) -> list[dict[str, Any]]:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["route_config"]["virtual_hosts"][0]["routes"]


def test_sidecar_node_id_is_istio_style() -> None:
    node = build_bootstrap(_opts())["node"]
    assert node["id"] == "sidecar~198.18.0.7~reviews-v1.bookinfo~bookinfo.svc.cluster.local"
    assert node["cluster"] == "reviews-v1.bookinfo"


def test_gateway_node_id_starts_with_router() -> None:
    node = build_bootstrap(_opts(type=ProxyType.ROUTER, name="ingressgateway"))["node"]
    assert node["id"].startswith("router~198.18.0.7~ingressgateway.bookinfo~")


def test_node_metadata_carries_workload_identity() -> None:
    metadata = build_bootstrap(_opts(app_ports=(9080,)))["node"]["metadata"]
    assert metadata["NAME"] == "reviews-v1"
    assert metadata["NAMESPACE"] == "bookinfo"
    assert metadata["LABELS"] == {"app": "reviews", "version": "v1"}
    assert metadata["SERVICE_ACCOUNT"] == "bookinfo-reviews"
    assert metadata["INSTANCE_IPS"] == "198.18.0.7"
    assert json.loads(metadata["POD_PORTS"]) == [{"containerPort": 9080, "protocol": "TCP"}]


def test_delta_ads_is_the_default_and_sotw_is_an_option() -> None:
    assert build_bootstrap(_opts())["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    sotw = build_bootstrap(_opts(delta=False))["dynamic_resources"]["ads_config"]
    assert sotw["api_type"] == "GRPC"


def test_clusters_and_listeners_come_over_ads() -> None:
    dynamic = build_bootstrap(_opts())["dynamic_resources"]
    for key in ("cds_config", "lds_config"):
        assert dynamic[key]["ads"] == {}
        assert dynamic[key]["resource_api_version"] == "V3"
        assert re.fullmatch(r"\d+(\.\d+)?s", dynamic[key]["initial_fetch_timeout"])
    grpc = dynamic["ads_config"]["grpc_services"][0]["envoy_grpc"]
    assert grpc["cluster_name"] == "xds-grpc"


def test_xds_cluster_speaks_http2_to_the_control_plane() -> None:
    cluster = _cluster(build_bootstrap(_opts()), "xds-grpc")
    assert cluster["type"] == "STATIC"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "198.18.0.1", "port_value": 15010}
    options = next(iter(cluster["typed_extension_protocol_options"].values()))
    assert "http2_protocol_options" in options["explicit_http_config"]


def test_xds_host_name_is_resolved_by_dns() -> None:
    cluster = _cluster(build_bootstrap(_opts(xds_host="trellisd.local")), "xds-grpc")
    assert cluster["type"] == "STRICT_DNS"


def test_admin_listens_on_loopback_only() -> None:
    admin = build_bootstrap(_opts(admin_port=15100))["admin"]
    assert admin["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15100}


def test_prometheus_stats_listener_forwards_to_admin() -> None:
    bootstrap = build_bootstrap(_opts(admin_port=15100, stats_port=15190))
    listener = _listener(bootstrap, "prometheus_stats")
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15190}
    [route] = _routes(listener)
    assert route["match"] == {"prefix": "/stats/prometheus"}
    assert route["route"]["cluster"] == "prometheus_stats"
    admin = _cluster(bootstrap, "prometheus_stats")["load_assignment"]["endpoints"][0]
    address = admin["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address == {"address": "127.0.0.1", "port_value": 15100}


def test_no_envoy_stats_listener_when_the_agent_serves_the_stats_port() -> None:
    bootstrap = build_bootstrap(_opts(envoy_serves_stats=False))
    names = [x["name"] for x in bootstrap["static_resources"]["listeners"]]
    assert names == ["agent_ready"]  # the readiness route still uses the admin cluster
    assert _cluster(bootstrap, "prometheus_stats")


@pytest.mark.parametrize(
    ("stat", "cluster"),
    [
        (f"cluster.{_REVIEWS}.upstream_rq_200", _REVIEWS),
        (f"cluster.{_REVIEWS}.external.upstream_rq_time", _REVIEWS),
        ("cluster.inbound|9080||.upstream_rq_time", "inbound|9080||"),
        ("cluster.xds-grpc.upstream_cx_total", "xds-grpc"),
        ("cluster.outbound|443||httpbin.org.upstream_rq_200", "outbound|443||httpbin"),
    ],
)
def test_cluster_name_tag_keeps_mesh_cluster_names_whole(stat: str, cluster: str) -> None:
    [tag] = build_bootstrap(_opts())["stats_config"]["stats_tags"]
    assert tag["tag_name"] == "envoy.cluster_name"
    match = re.match(tag["regex"], stat)
    assert match is not None
    assert match.group(2) == cluster
    assert match.group(1) == cluster + "."  # removed from the Prometheus metric name


def test_readiness_listener_maps_healthz_ready_to_admin_ready() -> None:
    listener = _listener(build_bootstrap(_opts(ready_port=15121)), "agent_ready")
    assert listener["address"]["socket_address"]["port_value"] == 15121
    [route] = _routes(listener)
    assert route["match"] == {"path": "/healthz/ready"}
    assert route["route"]["prefix_rewrite"] == "/ready"


def _stat_kept(bootstrap: dict[str, Any], name: str) -> bool:
    patterns = bootstrap["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    for pattern in patterns:
        if "prefix" in pattern and name.startswith(pattern["prefix"]):
            return True
        if "safe_regex" in pattern and re.search(pattern["safe_regex"]["regex"], name):
            return True
    return False


def test_stats_matcher_keeps_what_telemetry_reads() -> None:
    bootstrap = build_bootstrap(_opts())
    cluster = "cluster.outbound|9080|v1|reviews.bookinfo.svc.cluster.local"
    for name in (
        f"{cluster}.upstream_rq_total",
        f"{cluster}.upstream_rq_200",
        f"{cluster}.upstream_rq_time",
        "cluster.inbound|9080||.upstream_rq_503",
        "cluster.inbound|9080||.upstream_rq_time",
        f"{cluster}.upstream_cx_tx_bytes_total",
        "http.inbound_0.0.0.0_9080.downstream_rq_2xx",
        "http.inbound_0.0.0.0_9080.rbac.denied",
        "listener.0.0.0.0_15006.downstream_cx_total",
        "server.live",
        "control_plane.connected_state",
    ):
        assert _stat_kept(bootstrap, name), name


def test_stats_matcher_drops_the_rest() -> None:
    bootstrap = build_bootstrap(_opts())
    cluster = "cluster.outbound|9080|v1|reviews.bookinfo.svc.cluster.local"
    for name in (
        f"{cluster}.circuit_breakers.default.rq_open",
        f"{cluster}.lb_healthy_panic",
        "runtime.load_success",
        "http.inbound_0.0.0.0_9080.no_route",
    ):
        assert not _stat_kept(bootstrap, name), name


def test_bootstrap_is_plain_json() -> None:
    bootstrap = build_bootstrap(_opts())
    assert json.loads(json.dumps(bootstrap)) == bootstrap


def test_spans_are_exported_every_second_and_the_admin_runtime_layer_stays() -> None:
    layers = build_bootstrap(_opts())["layered_runtime"]["layers"]
    static = next(layer["static_layer"] for layer in layers if "static_layer" in layer)
    assert static["tracing.opentelemetry.flush_interval_ms"] == 1000
    assert any("admin_layer" in layer for layer in layers)
