"""Mutual TLS between sidecars: auto mTLS for clients, PeerAuthentication for servers.

Clients (DESIGN §5, istio-notes §1.9): a cluster without a DestinationRule `tls` gets two
transport sockets chosen per endpoint, as Istio does: endpoints whose metadata says
`tlsMode: istio` (they have a sidecar) are called with ISTIO_MUTUAL, the others in plaintext.
A DestinationRule `tls` decides alone: ISTIO_MUTUAL forces mTLS, DISABLE plaintext,
SIMPLE/MUTUAL use their own files (clusters.build_upstream_tls).

Servers: the inbound filter chains of a port depend on the workload's effective
PeerAuthentication mode for that port: STRICT accepts only mTLS, PERMISSIVE (the default)
both mTLS and plaintext (told apart by the tls_inspector), DISABLE only plaintext. Inbound
listeners always carry the tls_inspector, so a mode change only swaps filter chains.

Certificates come over SDS on the ADS stream: `default` (the proxy's own) and `ROOTCA`.
Peers are checked against the mesh's trust domain (any `spiffe://<td>/` identity), not
against the destination's service accounts: clusters then do not depend on endpoints, so an
endpoint change stays an EDS-only push (docs/DECISIONS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from trellis.api.networking import ClientTLSMode, ClientTLSSettings
from trellis.api.policy_scope import EffectiveMTLS, mtls_for_workload
from trellis.api.security import PeerAuthenticationMode
from trellis.compiler.protos import ads_config_source, pack, struct
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext

DEFAULT_SECRET = "default"
ROOTCA_SECRET = "ROOTCA"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
RAW_BUFFER = "envoy.transport_sockets.raw_buffer"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
# Endpoint metadata that selects a cluster's transport socket (Istio's key and value).
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
TLS_MODE_KEY = "tlsMode"
TLS_MODE_ISTIO = "istio"
MTLS_MATCH_NAME = "tlsMode-istio"
PLAINTEXT_MATCH_NAME = "tlsMode-disabled"
# ALPN a Trellis client offers to a sidecar: Istio's values, so either side can be Istio's.
MESH_ALPN = ("istio-peer-exchange", "istio")


@dataclass(frozen=True, slots=True)
class InboundTransport:
    """One inbound filter chain variant for a port: how it is matched and secured.

    `transport_protocol` is "" (any), "tls" or "raw_buffer"; `suffix` keeps chain names apart.
    """

    transport_protocol: str
    transport_socket: base_pb2.TransportSocket | None
    suffix: str = ""


# --- SDS references ----------------------------------------------------------------------


def sds_secret(name: str) -> secret_pb2.SdsSecretConfig:
    """A secret fetched over the ADS stream; trellisd's SDS generator answers it."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_config_source())


def mesh_tls_context(trust_domain: str, *, verify_trust_domain: bool) -> tls_pb2.CommonTlsContext:
    """Own cert `default`, peers validated against `ROOTCA` (and, for clients, the trust domain)."""
    context = tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[sds_secret(DEFAULT_SECRET)]
    )
    combined = context.combined_validation_context
    combined.validation_context_sds_secret_config.CopyFrom(sds_secret(ROOTCA_SECRET))
    if verify_trust_domain:
        combined.default_validation_context.match_typed_subject_alt_names.append(
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.SanType.URI,
                matcher=string_pb2.StringMatcher(prefix=f"spiffe://{trust_domain}/"),
            )
        )
    else:
        combined.default_validation_context.SetInParent()
    return context


# --- clients (clusters and endpoints) -----------------------------------------------------


def istio_mutual_socket(sni: str, trust_domain: str) -> base_pb2.TransportSocket:
    """ISTIO_MUTUAL: present the workload cert, accept any identity of the mesh."""
    context = tls_pb2.UpstreamTlsContext(
        sni=sni, common_tls_context=mesh_tls_context(trust_domain, verify_trust_domain=True)
    )
    context.common_tls_context.alpn_protocols.extend(MESH_ALPN)
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def plaintext_socket() -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=RAW_BUFFER, typed_config=pack(raw_buffer_pb2.RawBuffer()))


def mesh_sni(cluster_name: str) -> str:
    """Istio's SNI for a mesh cluster: `outbound_.PORT_.SUBSET_.HOST` from `outbound|P|S|H`."""
    return "_.".join(cluster_name.split("|"))


def apply_client_mtls(
    cluster: cluster_pb2.Cluster, tls: ClientTLSSettings | None, trust_domain: str
) -> None:
    """Auto mTLS unless the DestinationRule's `tls` says otherwise (see module doc)."""
    if tls is not None and tls.mode is not ClientTLSMode.ISTIO_MUTUAL:
        return  # DISABLE, SIMPLE, MUTUAL: clusters.build_upstream_tls decides
    secure = istio_mutual_socket(mesh_sni(cluster.name), trust_domain)
    if tls is not None:
        cluster.transport_socket.CopyFrom(secure)
        return
    match_type = cluster_pb2.Cluster.TransportSocketMatch
    cluster.transport_socket_matches.extend(
        [
            match_type(
                name=MTLS_MATCH_NAME,
                match=struct({TLS_MODE_KEY: TLS_MODE_ISTIO}),
                transport_socket=secure,
            ),
            match_type(name=PLAINTEXT_MATCH_NAME, transport_socket=plaintext_socket()),
        ]
    )


def endpoint_tls_metadata(has_sidecar: bool) -> tuple[str, dict[str, object]] | None:
    """The metadata that makes a sidecar endpoint pick the mTLS transport socket."""
    return (TRANSPORT_SOCKET_MATCH, {TLS_MODE_KEY: TLS_MODE_ISTIO}) if has_sidecar else None


# --- servers (inbound filter chains) --------------------------------------------------------


def inbound_mode(proxy: Proxy, push: PushContext, target_port: int) -> PeerAuthenticationMode:
    """The effective PeerAuthentication mode of a workload (container) port; never UNSET."""
    return _effective(proxy, push).mode_for_port(target_port)


def workload_mode(proxy: Proxy, push: PushContext) -> PeerAuthenticationMode:
    """The workload-wide mode (no portLevelMtls): what ports without a Service get."""
    return _effective(proxy, push).mode


def _effective(proxy: Proxy, push: PushContext) -> EffectiveMTLS:
    return mtls_for_workload(
        push.security_policies,
        namespace=proxy.namespace,
        labels=proxy.labels,
        root_namespace=push.mesh.root_namespace,
    )


def server_tls_socket(trust_domain: str) -> base_pb2.TransportSocket:
    """mTLS server side: a client certificate from the mesh's roots is required."""
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=mesh_tls_context(trust_domain, verify_trust_domain=False),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def inbound_transports(mode: PeerAuthenticationMode, trust_domain: str) -> list[InboundTransport]:
    """The filter chain variants a port gets under `mode`.

    The mTLS chain is the same message under STRICT and PERMISSIVE, so switching between them
    is an in-place filter chain update that leaves established mTLS connections alone (the
    migration task's zero failed requests). Under STRICT the plaintext chain requires TLS too:
    a plaintext client fails the handshake instead of reaching the passthrough chain.
    """
    tls = server_tls_socket(trust_domain)
    if mode is PeerAuthenticationMode.DISABLE:
        return [InboundTransport("", None)]
    plaintext = tls if mode is PeerAuthenticationMode.STRICT else None
    return [
        InboundTransport("tls", tls, suffix="-mtls"),
        InboundTransport("raw_buffer", plaintext),
    ]


def secure_chains(
    chain: listener_components_pb2.FilterChain, transports: Sequence[InboundTransport]
) -> list[listener_components_pb2.FilterChain]:
    """Copies of one inbound chain (same filters), one per transport variant."""
    chains: list[listener_components_pb2.FilterChain] = []
    for transport in transports:
        variant = listener_components_pb2.FilterChain()
        variant.CopyFrom(chain)
        if transport.suffix:
            variant.name = chain.name + transport.suffix
        if transport.transport_protocol:
            variant.filter_chain_match.transport_protocol = transport.transport_protocol
        if transport.transport_socket is not None:
            variant.transport_socket.CopyFrom(transport.transport_socket)
        chains.append(variant)
    return chains


def tls_inspector_filter() -> listener_components_pb2.ListenerFilter:
    """Tells TLS from plaintext (transport_protocol "tls" / "raw_buffer")."""
    return listener_components_pb2.ListenerFilter(
        name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
    )


__all__ = [
    "DEFAULT_SECRET",
    "ROOTCA_SECRET",
    "InboundTransport",
    "apply_client_mtls",
    "endpoint_tls_metadata",
    "inbound_mode",
    "inbound_transports",
    "istio_mutual_socket",
    "mesh_sni",
    "secure_chains",
    "server_tls_socket",
    "tls_inspector_filter",
]
