"""The Telemetry resource and per-caller stats in compiled config (compiler/telemetry.py,
compiler/peer_stats.py): access logging per workload and side, metrics overrides handed to the
agent as listener metadata, the peer header on client routes and per-caller virtual clusters
on inbound routes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import json_format
from google.protobuf.message import Message

from trellis.api.kinds import parse_documents
from trellis.compiler import compile_all, compile_resources
from trellis.controlplane.state import MeshState
from trellis.model import names, xds_types
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.registry import Workload
from trellis.model.snapshot import MeshConfig
from trellis.store.sqlite import SqliteStore
from trellis.telemetry.metric_config import METRICS_METADATA_KEY, MetricsConfig
from trellis.telemetry.peer import PEER_HEADER, PEER_HEADER_VALUE, PeerIdentity

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
"""
CLIENT = Proxy(
    ProxyType.SIDECAR, "198.18.0.5", "client-v1", "default", {"app": "client"}, "client-sa"
)
REVIEWS = Proxy(ProxyType.SIDECAR, "198.18.1.1", "reviews-v1", "default", {"app": "reviews"})


def _state(tmp_path: Path, extra: str = "") -> MeshState:
    state = MeshState(
        store=SqliteStore(tmp_path / "config.db"), mesh=MeshConfig(), notify=lambda *a: None
    )
    state.apply(parse_documents(CONFIG + extra))
    state.put_workload(Workload("reviews-v1", "default", "198.18.1.1", {"app": "reviews"}), "")
    state.put_workload(
        Workload("client-v1", "default", "198.18.0.5", {"app": "client"}, "client-sa"), ""
    )
    return state


def _managers(listener: Message) -> list[tuple[bool, hcm.HttpConnectionManager]]:
    """(chain has TLS, HCM) for every HCM of a listener."""
    found = []
    for chain in listener.filter_chains:
        for f in chain.filters:
            manager = hcm.HttpConnectionManager()
            if f.typed_config.Unpack(manager):
                found.append((chain.HasField("transport_socket"), manager))
    return found


def _access_logs(listeners: dict[str, Message]) -> dict[str, list[accesslog_pb2.AccessLog]]:
    out: dict[str, list[accesslog_pb2.AccessLog]] = {}
    for name, listener in listeners.items():
        for _, manager in _managers(listener):
            out.setdefault(name, []).extend(manager.access_log)
    return out


def test_client_routes_send_the_proxy_identity_and_strip_it_for_unknown_hosts(
    tmp_path: Path,
) -> None:
    config = compile_all(CLIENT, _state(tmp_path).push)
    route: route_pb2.RouteConfiguration = config.routes["9080"]
    service, catch_all = route.virtual_hosts[0], route.virtual_hosts[-1]
    assert PEER_HEADER in service.request_headers_to_remove
    [added] = service.request_headers_to_add
    assert (added.header.key, added.header.value) == (PEER_HEADER, PEER_HEADER_VALUE)
    assert list(catch_all.request_headers_to_remove) == [PEER_HEADER]
    assert not catch_all.request_headers_to_add


def test_inbound_mtls_chains_count_each_mesh_caller_plaintext_chains_count_apart(
    tmp_path: Path,
) -> None:
    config = compile_all(REVIEWS, _state(tmp_path).push)
    chains = _managers(config.listeners[names.VIRTUAL_INBOUND])
    assert {tls for tls, _ in chains} == {True, False}  # PERMISSIVE: both variants
    client = PeerIdentity("client-v1", "default", "client", "", "client-sa").encode()
    for tls, manager in chains:
        route = manager.route_config
        assert list(route.request_headers_to_remove) == [PEER_HEADER]  # the app never sees it
        vclusters = [vc.name for vc in route.virtual_hosts[0].virtual_clusters]
        if tls:
            assert client in vclusters
            [match] = next(
                vc.headers for vc in route.virtual_hosts[0].virtual_clusters if vc.name == client
            )
            assert (match.name, match.string_match.exact) == (PEER_HEADER, client)
        else:
            assert vclusters == ["plaintext"]


def test_request_size_histograms_only_for_http_clusters(tmp_path: Path) -> None:
    config = compile_all(CLIENT, _state(tmp_path).push)
    reviews = config.clusters["outbound|9080||reviews.default.svc.cluster.local"]
    db = config.clusters["outbound|5432||db.default.svc.cluster.local"]
    assert reviews.track_cluster_stats.request_response_sizes
    assert not db.track_cluster_stats.request_response_sizes


NO_SERVER_LOGS = """
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet-reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging:
  - match: {mode: SERVER}
    disabled: true
"""


def test_access_logging_disabled_for_one_workload_and_side(tmp_path: Path) -> None:
    push = _state(tmp_path, NO_SERVER_LOGS).push
    reviews = _access_logs(compile_all(REVIEWS, push).listeners)
    assert reviews[names.VIRTUAL_INBOUND] == []
    assert reviews["0.0.0.0_9080"]  # client side keeps logging
    other = dataclasses.replace(REVIEWS, labels={"app": "reviews", "quiet": "no"})
    assert _access_logs(compile_all(other, push).listeners)[names.VIRTUAL_INBOUND] == []
    client = _access_logs(compile_all(CLIENT, push).listeners)
    assert all(client.values())  # a workload the Telemetry does not select logs as before


ERRORS_ONLY = """
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: errors-only, namespace: default}
spec:
  accessLogging:
  - filter: {expression: "response.code >= 400"}
"""


def test_filter_expression_becomes_envoys_status_code_filter(tmp_path: Path) -> None:
    push = _state(tmp_path, ERRORS_ONLY).push
    for logs in _access_logs(compile_all(CLIENT, push).listeners).values():
        [log] = logs
        comparison = log.filter.status_code_filter.comparison
        assert comparison.op == accesslog_pb2.ComparisonFilter.Op.GE
        assert comparison.value.default_value == 400


def test_not_equal_filter_is_an_or_of_both_sides() -> None:
    from trellis.api.telemetry_expr import StatusFilter, StatusOp
    from trellis.compiler.telemetry import build_status_filter

    built = build_status_filter(StatusFilter(StatusOp.NE, 200))
    bounds = [
        (f.status_code_filter.comparison.op, f.status_code_filter.comparison.value.default_value)
        for f in built.or_filter.filters
    ]
    assert bounds == [
        (accesslog_pb2.ComparisonFilter.Op.LE, 199),
        (accesslog_pb2.ComparisonFilter.Op.GE, 201),
    ]


METRICS = """
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
    - tagOverrides:
        tier: {value: "'gold'"}
        response_flags: {operation: REMOVE}
"""


def test_metrics_overrides_reach_the_agent_as_virtual_inbound_metadata(tmp_path: Path) -> None:
    push = _state(tmp_path, METRICS).push
    listener = compile_all(REVIEWS, push).listeners[names.VIRTUAL_INBOUND]
    data = json_format.MessageToDict(listener.metadata.filter_metadata[METRICS_METADATA_KEY])
    config = MetricsConfig.from_json(data)
    assert not config.enabled("REQUEST_COUNT", "source")
    assert config.enabled("REQUEST_COUNT", "destination")
    labels = config.relabel("REQUEST_DURATION", "source", {"response_flags": "-", "a": "b"})
    assert labels == {"a": "b", "tier": "gold"}


def test_no_telemetry_no_metadata(tmp_path: Path) -> None:
    listener = compile_all(REVIEWS, _state(tmp_path).push).listeners[names.VIRTUAL_INBOUND]
    assert METRICS_METADATA_KEY not in listener.metadata.filter_metadata


def test_cache_does_not_share_outbound_listeners_across_access_log_settings(
    tmp_path: Path,
) -> None:
    state = _state(tmp_path, NO_SERVER_LOGS.replace("mode: SERVER", "mode: CLIENT"))
    quiet = dataclasses.replace(CLIENT, name="reviews-v2", labels={"app": "reviews"})
    state.generate(CLIENT, xds_types.LISTENER)
    fresh = compile_resources(quiet, state.push, xds_types.LISTENER)
    cached = dict(state.generate(quiet, xds_types.LISTENER))
    assert {n: m.SerializeToString(deterministic=True) for n, m in cached.items()} == {
        n: m.SerializeToString(deterministic=True) for n, m in fresh.items()
    }
    assert _access_logs(cached)["0.0.0.0_9080"] == []
