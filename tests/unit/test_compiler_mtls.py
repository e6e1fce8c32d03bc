"""mTLS in the compiler: PeerAuthentication modes on inbound chains, auto mTLS on clusters."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from trellis.api.kinds import parse_documents
from trellis.api.networking import ClientTLSMode, ClientTLSSettings
from trellis.api.security import PeerAuthenticationMode
from trellis.compiler.listeners import build_virtual_inbound
from trellis.compiler.mtls import (
    apply_client_mtls,
    inbound_mode,
    inbound_transports,
    mesh_sni,
)
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.push_context import PushContext
from trellis.model.snapshot import MeshSnapshot

PROXY = Proxy(ProxyType.SIDECAR, "198.18.0.5", "ratings-v1", "default", {"app": "ratings"})
CLUSTER = "outbound|9080|v1|ratings.default.svc.cluster.local"


def push_with(yaml_text: str) -> PushContext:
    return PushContext.build(MeshSnapshot(version=1, resources=tuple(parse_documents(yaml_text))))


def peer_auth(namespace: str, mode: str, selector: str = "", ports: str = "") -> str:
    return (
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n"
        f"metadata: {{name: pa-{namespace}{selector}, namespace: {namespace}}}\n"
        f"spec:\n  mtls: {{mode: {mode}}}\n"
        + (f"  selector: {{matchLabels: {{app: {selector}}}}}\n" if selector else "")
        + (f"  portLevelMtls: {{{ports}}}\n" if ports else "")
        + "---\n"
    )


def test_without_peer_authentication_a_port_is_permissive() -> None:
    assert inbound_mode(PROXY, push_with(""), 9080) is PeerAuthenticationMode.PERMISSIVE


def test_namespace_policy_overrides_the_mesh_and_workload_policy_the_namespace() -> None:
    push = push_with(
        peer_auth("istio-system", "STRICT")
        + peer_auth("default", "DISABLE")
        + peer_auth("default", "UNSET", selector="ratings", ports="9090: {mode: STRICT}")
    )
    assert inbound_mode(PROXY, push, 9080) is PeerAuthenticationMode.DISABLE
    assert inbound_mode(PROXY, push, 9090) is PeerAuthenticationMode.STRICT


def test_strict_and_permissive_share_the_mtls_chain() -> None:
    """Switching modes keeps established mTLS connections: that chain is the same message."""
    strict = inbound_transports(PeerAuthenticationMode.STRICT, "cluster.local")
    permissive = inbound_transports(PeerAuthenticationMode.PERMISSIVE, "cluster.local")
    assert strict[0] == permissive[0]
    assert strict[1].transport_socket is not None  # plaintext fails the handshake
    assert permissive[1].transport_socket is None  # plaintext is let through
    [disabled] = inbound_transports(PeerAuthenticationMode.DISABLE, "cluster.local")
    assert disabled.transport_socket is None and disabled.transport_protocol == ""


def test_istio_sni_names_port_subset_and_host() -> None:
    assert mesh_sni(CLUSTER) == "outbound_.9080_.v1_.ratings.default.svc.cluster.local"


def _cluster(tls: ClientTLSSettings | None) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=CLUSTER)
    apply_client_mtls(cluster, tls, "cluster.local")
    return cluster


def test_auto_mtls_picks_the_socket_per_endpoint() -> None:
    cluster = _cluster(None)
    assert [m.name for m in cluster.transport_socket_matches] == [
        "tlsMode-istio",
        "tlsMode-disabled",
    ]
    assert dict(cluster.transport_socket_matches[0].match) == {"tlsMode": "istio"}
    context = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket_matches[0].transport_socket.typed_config.Unpack(context)
    assert context.sni == mesh_sni(CLUSTER)
    assert list(context.common_tls_context.alpn_protocols) == ["istio-peer-exchange", "istio"]
    validation = context.common_tls_context.combined_validation_context
    assert validation.validation_context_sds_secret_config.name == "ROOTCA"
    san = validation.default_validation_context.match_typed_subject_alt_names[0]
    assert san.matcher.prefix == "spiffe://cluster.local/"


@pytest.mark.parametrize(
    ("mode", "secure"),
    [(ClientTLSMode.ISTIO_MUTUAL, True), (ClientTLSMode.DISABLE, False)],
)
def test_destination_rule_tls_overrides_auto_mtls(mode: ClientTLSMode, secure: bool) -> None:
    cluster = _cluster(ClientTLSSettings(mode=mode))
    assert not cluster.transport_socket_matches
    assert cluster.HasField("transport_socket") is secure


@pytest.mark.parametrize(
    ("mode", "requires_tls"), [("STRICT", True), ("PERMISSIVE", False), ("DISABLE", False)]
)
def test_ports_without_a_service_follow_the_workload_mode(mode: str, requires_tls: bool) -> None:
    """Under STRICT a plaintext peer must not reach the app through the passthrough chain."""
    listener = build_virtual_inbound(PROXY, push_with(peer_auth("default", mode)))
    passthrough = listener.default_filter_chain
    assert passthrough.name == "InboundPassthroughCluster"
    assert passthrough.HasField("transport_socket") is requires_tls
    if requires_tls:
        context = tls_pb2.DownstreamTlsContext()
        passthrough.transport_socket.typed_config.Unpack(context)
        assert context.require_client_certificate.value
