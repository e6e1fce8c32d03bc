"""Who-called-whom in Envoy's own stats: the peer header and per-peer virtual clusters.

Destination-reported Istio metrics need the caller (DESIGN §6, docs/DECISIONS.md "Metrics:
both reporters"). A client sidecar sets `x-trellis-peer` to its own identity on every request
to a mesh service (overwriting whatever the app sent); a server's inbound route counts
requests per caller with one virtual cluster per mesh workload, on mTLS chains only (a
plaintext peer is not a mesh sidecar, so its header proves nothing), and removes the header
before the app sees it. Envoy picks the virtual cluster before it applies header removals.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.matcher.v3 import string_pb2

from trellis.compiler.protos import pack
from trellis.model.push_context import PushContext
from trellis.telemetry.peer import (
    PEER_HEADER,
    PEER_HEADER_VALUE,
    PLAINTEXT_PEER,
    PeerIdentity,
)

# Envoy insists that a virtual cluster match headers; every request has a method.
_EVERY_REQUEST = rc.VirtualCluster(
    name=PLAINTEXT_PEER, headers=[rc.HeaderMatcher(name=":method", present_match=True)]
)
_HCM_TYPE = "type.googleapis.com/" + hcm.HttpConnectionManager.DESCRIPTOR.full_name


def with_peer_header(host: rc.VirtualHost) -> rc.VirtualHost:
    """A mesh service's virtual host on a client proxy: its requests carry the proxy's own
    identity, never the app's (remove, then add from the proxy's environment)."""
    host.request_headers_to_remove.append(PEER_HEADER)
    host.request_headers_to_add.append(
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=PEER_HEADER, value=PEER_HEADER_VALUE),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
    )
    return host


def without_peer_header(host: rc.VirtualHost) -> rc.VirtualHost:
    """Hosts outside the mesh never learn who in the mesh called them."""
    host.request_headers_to_remove.append(PEER_HEADER)
    return host


def mesh_peers(push: PushContext) -> list[PeerIdentity]:
    """Every sidecar workload's identity, once each, in a stable order."""
    peers = {
        PeerIdentity.of(w.name, w.namespace, w.labels, w.service_account)
        for w in push.workloads
        if w.has_sidecar
    }
    return sorted(peers, key=PeerIdentity.encode)


def add_inbound_peer_stats(listener: listener_pb2.Listener, push: PushContext) -> None:
    """Per-caller virtual clusters on every inbound HTTP chain of `listener` (in place)."""
    peers = push.derived(_mesh_peer_clusters)  # once per snapshot, not per proxy
    for chain in listener.filter_chains:
        _count_callers(chain, peers)


def _mesh_peer_clusters(push: PushContext) -> list[rc.VirtualCluster]:
    return peer_virtual_clusters(mesh_peers(push))


def peer_virtual_clusters(peers: list[PeerIdentity]) -> list[rc.VirtualCluster]:
    return [
        rc.VirtualCluster(
            name=p.encode(),
            headers=[
                rc.HeaderMatcher(
                    name=PEER_HEADER, string_match=string_pb2.StringMatcher(exact=p.encode())
                )
            ],
        )
        for p in peers
    ]


def _count_callers(
    chain: listener_components_pb2.FilterChain, peers: list[rc.VirtualCluster]
) -> None:
    for network_filter in chain.filters:
        if network_filter.typed_config.type_url != _HCM_TYPE:
            continue
        manager = hcm.HttpConnectionManager()
        network_filter.typed_config.Unpack(manager)
        if not manager.HasField("route_config"):
            continue
        secure = chain.HasField("transport_socket")
        _count_route_callers(manager.route_config, peers if secure else None)
        network_filter.typed_config.CopyFrom(pack(manager))


def _count_route_callers(
    config: route_pb2.RouteConfiguration, peers: list[rc.VirtualCluster] | None
) -> None:
    """mTLS (`peers` given): one virtual cluster per mesh caller, Envoy's `other` for the rest;
    plaintext: one catch-all, so its requests are counted apart from mTLS ones."""
    config.request_headers_to_remove.append(PEER_HEADER)
    for host in config.virtual_hosts:
        if peers is None:
            host.virtual_clusters.append(_EVERY_REQUEST)
        else:
            host.virtual_clusters.extend(peers)
