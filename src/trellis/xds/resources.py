"""Packed resources and the pure "what must this client get" diff.

A resource is packed into `google.protobuf.Any` once and identified by a hash of its
deterministic serialization: the hash is the per-resource version in delta xDS and the way the
server recognises "unchanged" and "already rejected" content in both variants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from trellis.xds.protocol import TypeState, is_wanted


@dataclass(frozen=True, slots=True)
class PackedResource:
    name: str
    any: any_pb2.Any
    hash: str
    message: Message | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Payload:
    """One response's content: resources to send and (delta only) names to remove."""

    resources: tuple[PackedResource, ...] = ()
    removed: tuple[str, ...] = ()
    full_state: bool = False  # SotW CDS/LDS: the complete set, so an empty one removes all

    def __bool__(self) -> bool:
        return bool(self.resources or self.removed or self.full_state)


def pack(name: str, message: Message) -> PackedResource:
    packed = any_pb2.Any()
    packed.Pack(message)
    digest = hashlib.sha256(packed.SerializeToString(deterministic=True)).hexdigest()
    return PackedResource(name=name, any=packed, hash=digest[:20], message=message)


def pack_all(resources: Mapping[str, Message]) -> dict[str, PackedResource]:
    return {name: pack(name, message) for name, message in resources.items()}


class PackCache:
    """Packs each generated message object once per config version.

    The generator hands proxies alike the very same message objects (its compile cache), so
    50 proxies need one serialization + hash per resource, not 50. Entries hold their message,
    so an object id cannot be reused while cached; a new version drops them all.
    """

    def __init__(self) -> None:
        self._version = ""
        self._packed: dict[int, PackedResource] = {}

    def pack_all(self, resources: Mapping[str, Message], version: str) -> dict[str, PackedResource]:
        if version != self._version:
            self._version, self._packed = version, {}
        out: dict[str, PackedResource] = {}
        for name, message in resources.items():
            hit = self._packed.get(id(message))
            if hit is None or hit.message is not message or hit.name != name:
                hit = self._packed[id(message)] = pack(name, message)
            out[name] = hit
        return out


def eds_names(clusters: Iterable[PackedResource]) -> frozenset[str]:
    """The EDS resource names the given EDS clusters read their endpoints from."""
    names = set()
    for resource in clusters:
        cluster = resource.message
        if not isinstance(cluster, cluster_pb2.Cluster):
            cluster = cluster_pb2.Cluster()
            resource.any.Unpack(cluster)
        if cluster.type == cluster_pb2.Cluster.EDS:
            names.add(cluster.eds_cluster_config.service_name or cluster.name)
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class ClientView:
    """What the server believes the client holds for one type, and what it rejected."""

    have: Mapping[str, PackedResource]
    rejected: Mapping[str, str]  # name -> hash of content the client NACKed


def wanted(target: Mapping[str, PackedResource], state: TypeState) -> dict[str, PackedResource]:
    """The part of everything generated that this client subscribes to."""
    return {name: r for name, r in target.items() if is_wanted(state, name)}


def _sendable(resource: PackedResource, view: ClientView) -> bool:
    """Never send again content the client rejected: only a new generation goes out."""
    return view.rejected.get(resource.name) != resource.hash


def changed(
    target: Mapping[str, PackedResource], view: ClientView, force: frozenset[str], force_all: bool
) -> tuple[PackedResource, ...]:
    """Resources the client lacks or holds in another version (plus forced ones), sendable."""
    out = []
    for name, resource in sorted(target.items()):
        have = view.have.get(name)
        differs = have is None or have.hash != resource.hash
        if (differs or force_all or name in force) and _sendable(resource, view):
            out.append(resource)
    return tuple(out)


def delta_payload(
    target: Mapping[str, PackedResource],
    view: ClientView,
    state: TypeState,
    *,
    force: frozenset[str] = frozenset(),
    removals: bool,
) -> Payload:
    """Delta: changed resources, and with `removals` the names the client must drop.

    Callers ask for removals of wildcard types only: for explicit names (EDS/RDS/SDS) Envoy
    unsubscribes itself once the listener/cluster that used them is gone.
    """
    mine = wanted(target, state)
    gone = {n for n in view.have if n not in mine and is_wanted(state, n)} if removals else set()
    # A name asked for that does not exist is answered as removed, so Envoy stops waiting for it.
    gone |= {n for n in force if n not in mine}
    return Payload(changed(mine, view, force, False), tuple(sorted(gone)))


def sotw_payload(
    target: Mapping[str, PackedResource],
    view: ClientView,
    state: TypeState,
    *,
    full_state: bool,
    force_all: bool = False,
    removals: bool = True,
) -> Payload:
    """State of the world. `full_state` types (CDS/LDS) always carry the complete set.

    For a full-state type whose update is to be made before removals are broken, `removals=False`
    keeps what the client has beside the new set (make-before-break, DESIGN §3). Resources whose
    new content was rejected are replaced by what the client already has.
    """
    mine = wanted(target, state)
    updates = changed(mine, view, frozenset(), force_all)
    if not full_state:
        return Payload(updates)
    kept = _kept_in_full_state(mine, view, removals)
    gone = any(n not in kept for n in view.have)
    if not updates and not gone and not force_all:
        return Payload()
    return Payload(tuple(kept[n] for n in sorted(kept)), full_state=True)


def _kept_in_full_state(
    mine: Mapping[str, PackedResource], view: ClientView, removals: bool
) -> dict[str, PackedResource]:
    kept: dict[str, PackedResource] = {}
    for name, resource in mine.items():
        if _sendable(resource, view):
            kept[name] = resource
        elif name in view.have:
            kept[name] = view.have[name]
    if not removals:
        for name, resource in view.have.items():
            kept.setdefault(name, resource)
    return kept
