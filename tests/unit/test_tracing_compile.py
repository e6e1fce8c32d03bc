"""Tracing in the compiled config (compiler/tracing.py) and in the shared compile cache.

With the mesh's trace store set, every HCM carries the OpenTelemetry tracer named after the
workload's service and every proxy gets the `tracing-otlp` cluster; without it nothing changes.
The outbound listeners then depend on the proxy's `app` label: the cache must not share them
between apps (compared with a fresh compile, as in test_compile_cache.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from envoy.config.trace.v3 import opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf.message import Message

from trellis.api.kinds import parse_documents
from trellis.compiler import compile_all, compile_resources
from trellis.compiler.tracing import TRACING_CLUSTER, trace_service_name
from trellis.controlplane.state import MeshState
from trellis.model import xds_types
from trellis.model.proxy import InterceptionMode, Proxy, ProxyType
from trellis.model.registry import Workload
from trellis.model.snapshot import MeshConfig
from trellis.runtime.trace_store import plan_trace_store
from trellis.store.sqlite import SqliteStore

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""
TRACED = MeshConfig(tracing_address="198.18.0.1:4317", trace_sampling=100.0)
CLIENT = Proxy(ProxyType.SIDECAR, "198.18.0.5", "client-v1", "default", {"app": "client"})
REVIEWS = Proxy(ProxyType.SIDECAR, "198.18.1.1", "reviews-v1", "default", {"app": "reviews"})


def _state(tmp_path: Path, mesh: MeshConfig) -> MeshState:
    state = MeshState(store=SqliteStore(tmp_path / "config.db"), mesh=mesh, notify=lambda *a: None)
    state.apply(parse_documents(CONFIG))
    state.put_workload(Workload("reviews-v1", "default", "198.18.1.1", {"app": "reviews"}), "")
    return state


def _managers(listeners: dict[str, Message]) -> list[hcm.HttpConnectionManager]:
    found = []
    for listener in listeners.values():
        chains = [*listener.filter_chains, listener.default_filter_chain]
        for chain in chains:
            for f in chain.filters:
                manager = hcm.HttpConnectionManager()
                if f.typed_config.Unpack(manager):
                    found.append(manager)
    return found


def test_service_name_is_app_label_else_name_dot_namespace() -> None:
    assert trace_service_name(REVIEWS) == "reviews.default"
    assert trace_service_name(dataclasses.replace(REVIEWS, labels={})) == "reviews-v1.default"


@pytest.mark.parametrize(
    "proxy",
    [
        REVIEWS,
        dataclasses.replace(REVIEWS, interception=InterceptionMode.NONE, app_host="127.0.0.8"),
    ],
    ids=["captured", "no-capture"],
)
def test_every_hcm_traces_to_the_store_when_tracing_is_on(tmp_path: Path, proxy: Proxy) -> None:
    state = _state(tmp_path, TRACED)
    config = compile_all(proxy, state.push)
    managers = _managers(dict(config.listeners))
    assert len(managers) >= 2  # inbound and outbound
    for manager in managers:
        assert manager.tracing.random_sampling.value == 100.0
        assert not manager.tracing.spawn_upstream_span.value
        tracer = opentelemetry_pb2.OpenTelemetryConfig()
        assert manager.tracing.provider.typed_config.Unpack(tracer)
        assert tracer.service_name == "reviews.default"
        assert tracer.grpc_service.envoy_grpc.cluster_name == TRACING_CLUSTER
    cluster = config.clusters[TRACING_CLUSTER]
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "198.18.0.1",
        4317,
    )


def test_nothing_is_traced_without_a_trace_store(tmp_path: Path) -> None:
    config = compile_all(REVIEWS, _state(tmp_path, MeshConfig()).push)
    assert TRACING_CLUSTER not in config.clusters
    assert all(not m.HasField("tracing") for m in _managers(dict(config.listeners)))


def test_cache_does_not_share_outbound_listeners_between_apps(tmp_path: Path) -> None:
    state = _state(tmp_path, TRACED)
    other_app = dataclasses.replace(CLIENT, name="client-2", labels={"app": "other"})
    same_app = dataclasses.replace(CLIENT, name="client-3", ip="198.18.0.9")
    for type_url in (xds_types.LISTENER, xds_types.CLUSTER):
        state.generate(CLIENT, type_url)  # fill the cache with the client app's parts
        for proxy in (other_app, same_app):
            fresh = compile_resources(proxy, state.push, type_url)
            cached = dict(state.generate(proxy, type_url))
            assert {n: m.SerializeToString(deterministic=True) for n, m in cached.items()} == {
                n: m.SerializeToString(deterministic=True) for n, m in fresh.items()
            }
    listeners = state.generate(CLIENT, xds_types.LISTENER)
    shared = state.generate(same_app, xds_types.LISTENER)
    assert shared["0.0.0.0_9080"] is listeners["0.0.0.0_9080"]  # same app: still shared


def test_without_capture_the_trace_store_gets_free_loopback_ports() -> None:
    plan = plan_trace_store("127.0.0.1", proxy_mode=True)
    assert plan.host == "127.0.0.1"
    ports = {plan.otlp_grpc_port, plan.otlp_http_port, plan.zipkin_port, plan.query_port}
    assert len(ports) == 4 and all(p > 0 for p in ports)
    assert plan.otlp_address == f"127.0.0.1:{plan.otlp_grpc_port}"


TELEMETRY = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{randomSamplingPercentage: 100}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet, namespace: other}
spec:
  tracing: [{randomSamplingPercentage: 5}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: canary, namespace: default}
spec:
  selector: {matchLabels: {version: canary}}
  tracing: [{randomSamplingPercentage: 50}]
"""


def _outbound_sampling(state: MeshState, proxy: Proxy) -> float:
    listeners = dict(state.generate(proxy, xds_types.LISTENER))
    manager = _managers({"l": listeners["0.0.0.0_9080"]})[0]
    return float(manager.tracing.random_sampling.value)


def test_telemetry_sets_sampling_per_mesh_namespace_and_workload(tmp_path: Path) -> None:
    state = _state(tmp_path, MeshConfig(tracing_address="198.18.0.1:4317"))
    state.apply(parse_documents(TELEMETRY))
    canary = dataclasses.replace(CLIENT, name="c2", labels={"app": "client", "version": "canary"})
    elsewhere = dataclasses.replace(CLIENT, name="c3", namespace="other")
    for proxy, sampling in ((CLIENT, 100.0), (canary, 50.0), (elsewhere, 5.0)):
        assert _outbound_sampling(state, proxy) == sampling
        for type_url in (xds_types.LISTENER, xds_types.ROUTE, xds_types.CLUSTER):
            fresh = compile_resources(proxy, state.push, type_url)
            cached = dict(state.generate(proxy, type_url))
            assert {n: m.SerializeToString(deterministic=True) for n, m in cached.items()} == {
                n: m.SerializeToString(deterministic=True) for n, m in fresh.items()
            }


SIDES = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: sides, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  tracing:
  - match: {mode: SERVER}
    randomSamplingPercentage: 20
  - match: {mode: CLIENT}
    disableSpanReporting: true
"""


def test_telemetry_modes_pick_the_side_and_can_turn_spans_off(tmp_path: Path) -> None:
    state = _state(tmp_path, TRACED)
    state.apply(parse_documents(SIDES))
    listeners = dict(compile_resources(REVIEWS, state.push, xds_types.LISTENER))
    inbound = _managers({"in": listeners["virtualInbound"]})
    outbound = _managers({"out": listeners["0.0.0.0_9080"]})
    assert inbound and all(m.tracing.random_sampling.value == 20.0 for m in inbound)
    assert outbound and all(not m.HasField("tracing") for m in outbound)
    cached = dict(state.generate(REVIEWS, xds_types.LISTENER))
    assert cached["0.0.0.0_9080"] == listeners["0.0.0.0_9080"]


CUSTOM_TAGS = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: tags, namespace: default}
spec:
  tracing:
  - customTags:
      team: {literal: {value: bookstore}}
      user: {header: {name: end-user, defaultValue: anonymous}}
      zone: {environment: {name: ZONE}}
"""


def test_telemetry_custom_tags_become_envoy_custom_tags_on_both_sides(tmp_path: Path) -> None:
    state = _state(tmp_path, TRACED)
    state.apply(parse_documents(CUSTOM_TAGS))
    listeners = dict(compile_resources(REVIEWS, state.push, xds_types.LISTENER))
    managers = _managers({"in": listeners["virtualInbound"], "out": listeners["0.0.0.0_9080"]})
    assert len(managers) >= 2
    for manager in managers:
        tags = {tag.tag: tag for tag in manager.tracing.custom_tags}
        assert sorted(tags) == ["team", "user", "zone"]
        assert tags["team"].literal.value == "bookstore"
        assert tags["user"].request_header.name == "end-user"
        assert tags["user"].request_header.default_value == "anonymous"
        assert tags["zone"].environment.name == "ZONE"
    cached = dict(state.generate(REVIEWS, xds_types.LISTENER))
    assert cached["0.0.0.0_9080"] == listeners["0.0.0.0_9080"]
