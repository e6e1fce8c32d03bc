"""The ADS request decision table (protocol.py): one row per documented protocol situation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from trellis.model.proxy import ProxyType
from trellis.model.xds_types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from trellis.xds.node import MalformedNode, proxy_from_node
from trellis.xds.protocol import (
    RequestKind,
    TypeState,
    after_decision,
    after_send,
    decide_delta,
    decide_sotw,
)

SENT = TypeState(requested=True, last_nonce="n2", pending_nonces=frozenset({"n2"}), wildcard=True)
ACKED_EDS = TypeState(requested=True, last_nonce="n2", subscribed=frozenset({"a", "b"}))
EDS_AFTER_CDS = replace(ACKED_EDS, always_respond=True)


@dataclass(frozen=True)
class SotwRow:
    name: str
    type_url: str
    state: TypeState
    names: tuple[str, ...]
    nonce: str
    error: str | None
    kind: RequestKind
    respond: bool
    answered: str = ""
    wildcard: bool = False


SOTW_ROWS = [
    SotwRow("first CDS is wildcard", CLUSTER, TypeState(), (), "", None, RequestKind.INITIAL, True,
            wildcard=True),
    SotwRow("first EDS names resources", ENDPOINT, TypeState(), ("a",), "", None,
            RequestKind.INITIAL, True),
    SotwRow("EDS without names is no subscription", ENDPOINT, TypeState(), (), "", None,
            RequestKind.UNSUBSCRIBE, False),
    SotwRow("ACK of the outstanding response", CLUSTER, SENT, (), "n2", None, RequestKind.ACK,
            False, answered="n2", wildcard=True),
    SotwRow("NACK keeps the error", CLUSTER, SENT, (), "n2", "bad cluster", RequestKind.NACK,
            False, answered="n2", wildcard=True),
    SotwRow("older nonce is stale", CLUSTER, SENT, (), "n1", None, RequestKind.STALE_NONCE,
            False),
    SotwRow("new EDS names with the last nonce", ENDPOINT, ACKED_EDS, ("a", "b", "c"), "n2", None,
            RequestKind.SUBSCRIPTION_CHANGE, True),
    SotwRow("EDS names dropped to none", ENDPOINT, ACKED_EDS, (), "n2", None,
            RequestKind.UNSUBSCRIBE, False),
    SotwRow("same names again is an ACK", ENDPOINT, ACKED_EDS, ("b", "a"), "n2", None,
            RequestKind.ACK, False),
    SotwRow("same names after a CDS push is a re-request", ENDPOINT,
            EDS_AFTER_CDS, ("a", "b"), "n2", None, RequestKind.REREQUEST, True),
]  # fmt: skip


def _sotw(row: SotwRow) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(
        type_url=row.type_url, resource_names=list(row.names), response_nonce=row.nonce
    )
    if row.error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=row.error))
    return request


@pytest.mark.parametrize("row", SOTW_ROWS, ids=lambda r: r.name)
def test_sotw_decision(row: SotwRow) -> None:
    decision = decide_sotw(_sotw(row), row.state)
    assert decision.kind is row.kind
    assert decision.respond is row.respond
    assert decision.answered_nonce == row.answered
    if row.kind is not RequestKind.STALE_NONCE:
        assert decision.wildcard is row.wildcard
    if row.error:
        assert decision.nack_message == row.error
        assert decision.nacked


def test_sotw_rerequest_flag_is_used_once() -> None:
    request = _sotw(SOTW_ROWS[-1])
    state = after_decision(EDS_AFTER_CDS, decide_sotw(request, EDS_AFTER_CDS))
    assert not state.always_respond
    assert decide_sotw(request, state).kind is RequestKind.ACK


def test_sotw_newest_response_replaces_older_outstanding() -> None:
    state = after_send(after_send(TypeState(requested=True), "n1", delta=False), "n2", delta=False)
    assert state.pending_nonces == {"n2"}
    assert decide_sotw(_sotw(SOTW_ROWS[5]), state).kind is RequestKind.STALE_NONCE


@dataclass(frozen=True)
class DeltaRow:
    name: str
    type_url: str
    state: TypeState
    subscribe: tuple[str, ...]
    unsubscribe: tuple[str, ...]
    nonce: str
    error: str | None
    kind: RequestKind
    respond: bool
    subscribed: frozenset[str] = frozenset()
    wildcard: bool = False
    force: frozenset[str] = field(default_factory=frozenset)
    answered: str = ""


RDS_SUB = TypeState(requested=True, last_nonce="n2", pending_nonces=frozenset({"n2"}),
                    subscribed=frozenset({"r1"}))  # fmt: skip
LDS_WILD = TypeState(requested=True, last_nonce="n2", pending_nonces=frozenset({"n1", "n2"}),
                     wildcard=True)  # fmt: skip

DELTA_ROWS = [
    DeltaRow("first LDS without names is legacy wildcard", LISTENER, TypeState(), (), (), "", None,
             RequestKind.INITIAL, True, wildcard=True),
    DeltaRow("explicit * is wildcard", ROUTE, TypeState(), ("*",), (), "", None,
             RequestKind.INITIAL, True, wildcard=True),
    DeltaRow("first RDS names", ROUTE, TypeState(), ("r1",), (), "", None, RequestKind.INITIAL,
             True, subscribed=frozenset({"r1"}), force=frozenset({"r1"})),
    DeltaRow("ACK", ROUTE, RDS_SUB, (), (), "n2", None, RequestKind.ACK, False,
             subscribed=frozenset({"r1"}), answered="n2"),
    DeltaRow("ACK of an older response still counts", LISTENER, LDS_WILD, (), (), "n1", None,
             RequestKind.ACK, False, wildcard=True, answered="n1"),
    DeltaRow("NACK", ROUTE, RDS_SUB, (), (), "n2", "bad regex", RequestKind.NACK, False,
             subscribed=frozenset({"r1"}), answered="n2"),
    DeltaRow("unknown nonce is stale", ROUTE, RDS_SUB, (), (), "n0", None,
             RequestKind.STALE_NONCE, False, subscribed=frozenset({"r1"})),
    DeltaRow("subscribe beside an ACK", ROUTE, RDS_SUB, ("r2",), (), "n2", None,
             RequestKind.SUBSCRIPTION_CHANGE, True, subscribed=frozenset({"r1", "r2"}),
             force=frozenset({"r2"}), answered="n2"),
    DeltaRow("subscribe beside a stale nonce is still applied", ROUTE, RDS_SUB, ("r2",), (),
             "n0", None, RequestKind.SUBSCRIPTION_CHANGE, True,
             subscribed=frozenset({"r1", "r2"}), force=frozenset({"r2"})),
    DeltaRow("re-subscribe asks for a resend", ENDPOINT, RDS_SUB, ("r1",), (), "", None,
             RequestKind.SUBSCRIPTION_CHANGE, True, subscribed=frozenset({"r1"}),
             force=frozenset({"r1"})),
    DeltaRow("unsubscribe sends nothing", ROUTE, RDS_SUB, (), ("r1",), "", None,
             RequestKind.UNSUBSCRIBE, False),
    DeltaRow("unsubscribe * leaves wildcard", LISTENER, LDS_WILD, (), ("*",), "", None,
             RequestKind.UNSUBSCRIBE, False),
]  # fmt: skip


def _delta(row: DeltaRow) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=row.type_url,
        resource_names_subscribe=list(row.subscribe),
        resource_names_unsubscribe=list(row.unsubscribe),
        response_nonce=row.nonce,
    )
    if row.error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=row.error))
    return request


@pytest.mark.parametrize("row", DELTA_ROWS, ids=lambda r: r.name)
def test_delta_decision(row: DeltaRow) -> None:
    decision = decide_delta(_delta(row), row.state)
    assert decision.kind is row.kind
    assert decision.respond is row.respond
    assert decision.subscribed == row.subscribed
    assert decision.wildcard is row.wildcard
    assert decision.force == row.force
    assert decision.answered_nonce == row.answered


def test_delta_reconnect_carries_initial_versions() -> None:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=ENDPOINT,
        resource_names_subscribe=["c1", "c2"],
        initial_resource_versions={"c1": "h1"},
    )
    decision = decide_delta(request, TypeState())
    assert decision.kind is RequestKind.INITIAL
    assert dict(decision.initial_versions) == {"c1": "h1"}
    assert decision.force == {"c2"}  # c1 goes out only if its version differs


def test_delta_each_response_is_acked_separately() -> None:
    state = after_send(after_send(TypeState(requested=True), "n1", delta=True), "n2", delta=True)
    assert state.pending_nonces == {"n1", "n2"}
    request = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce="n1")
    assert after_decision(state, decide_delta(request, state)).pending_nonces == {"n2"}


# -- node ids ------------------------------------------------------------------------------


def _node(node_id: str, **meta: object) -> base_pb2.Node:
    node = base_pb2.Node(id=node_id)
    node.metadata.update(meta)
    return node


def test_node_id_and_metadata_make_the_proxy() -> None:
    node = _node(
        "sidecar~198.18.0.5~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local",
        LABELS={"app": "reviews", "version": "v1"},
        SERVICE_ACCOUNT="bookinfo-reviews",
        NAMESPACE="bookinfo",
    )
    proxy = proxy_from_node(node)
    assert proxy.type is ProxyType.SIDECAR
    assert (proxy.ip, proxy.name, proxy.namespace) == ("198.18.0.5", "reviews-v1-abc", "bookinfo")
    assert proxy.labels == {"app": "reviews", "version": "v1"}
    assert proxy.service_account == "bookinfo-reviews"
    assert proxy.id == node.id


def test_router_without_metadata_gets_defaults() -> None:
    proxy = proxy_from_node(
        _node("router~127.0.0.1~gw.istio-system~istio-system.svc.cluster.local")
    )
    assert proxy.type is ProxyType.ROUTER
    assert proxy.labels == {}
    assert proxy.service_account == "default"


@pytest.mark.parametrize(
    ("node_id", "meta", "says"),
    [
        ("sidecar~1.2.3.4~a.ns", {}, "4"),
        ("gateway~1.2.3.4~a.ns~ns.svc.cluster.local", {}, "unknown proxy type"),
        ("sidecar~not-an-ip~a.ns~ns.svc.cluster.local", {}, "not an IP"),
        ("sidecar~1.2.3.4~nodots~ns.svc.cluster.local", {}, "NAME.NAMESPACE"),
        ("sidecar~1.2.3.4~a.ns~other.svc.cluster.local", {}, "domain"),
        ("sidecar~1.2.3.4~a.ns~ns.svc.cluster.local", {"NAMESPACE": "x"}, "contradicts"),
        ("sidecar~1.2.3.4~a.ns~ns.svc.cluster.local", {"LABELS": "app=x"}, "LABELS"),
        ("sidecar~1.2.3.4~a.ns~ns.svc.cluster.local", {"LABELS": {"n": 1}}, "not a string"),
    ],
)
def test_malformed_node_is_a_clear_error(node_id: str, meta: dict[str, object], says: str) -> None:
    with pytest.raises(MalformedNode, match=says):
        proxy_from_node(_node(node_id, **meta))
