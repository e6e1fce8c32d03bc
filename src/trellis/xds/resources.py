"""Packed resources and the pure "what must this client get" diff.

A resource is packed into `google.protobuf.Any` once and identified by a hash of its
deterministic serialization: the hash is the per-resource version in delta xDS and the way the
server recognises "unchanged" and "already rejected" content in both variants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
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
    """Packs each generated message object once, for as long as the generator keeps using it.

    The generator hands proxies alike the very same message objects (its compile cache), and
    keeps them across config versions while their inputs are unchanged (compiler/incremental.py),
    so 50 proxies and many versions need one serialization + hash per resource, not one each.
    Entries hold their message, so an object id cannot be reused while cached. Per type, a new
    version starts a new generation; entries not used for `keep` generations of their type are
    dropped (an EDS-only change does not age the clusters).
    """

    def __init__(self, *, keep: int = 3) -> None:
        self._keep = keep
        self._types: dict[str, _PackedGenerations] = {}

    def pack_all(
        self, resources: Mapping[str, Message], version: str, type_url: str = ""
    ) -> Mapping[str, PackedResource]:
        """`resources` packed (read only: proxies given the same mapping share the result)."""
        generations = self._types.get(type_url)
        if generations is None:
            generations = self._types[type_url] = _PackedGenerations(self._keep)
        generations.advance(version)
        parts: Sequence[Mapping[str, Message]] | None = getattr(resources, "parts", None)
        if not parts:
            return generations.pack_all(resources)
        # A merge of parts (compiler/incremental.MergedParts): the parts proxies share
        # (thousands of outbound clusters) are packed once, only the merge is per proxy.
        packed: dict[str, PackedResource] = {}
        for part in parts:
            packed.update(generations.pack_all(part))
        return packed


@dataclass(slots=True)
class _Generation:
    by_message: dict[int, PackedResource] = field(default_factory=dict)
    # id of a generated mapping -> (that mapping, its packed form): proxies alike get the very
    # same mapping from the generator, so it is packed once, not once per proxy.
    by_source: dict[int, tuple[Mapping[str, Message], dict[str, PackedResource]]] = field(
        default_factory=dict
    )


class _PackedGenerations:
    """One type's packed resources by message identity: the current generation first, then
    older ones (a hit moves to the current one)."""

    def __init__(self, keep: int) -> None:
        self._version: str | None = None
        self._generations: list[_Generation] = [_Generation()]
        self._keep = keep

    def advance(self, version: str) -> None:
        if version != self._version:
            self._version = version
            self._generations = [_Generation(), *self._generations[: self._keep - 1]]

    def pack_all(self, resources: Mapping[str, Message]) -> dict[str, PackedResource]:
        current = self._generations[0]
        hit = current.by_source.get(id(resources))
        if hit is None:
            hit = self._from_older(resources)
        if hit is not None and hit[0] is resources:
            return hit[1]
        packed = {name: self.pack(name, message) for name, message in resources.items()}
        current.by_source[id(resources)] = (resources, packed)
        return packed

    def _from_older(
        self, resources: Mapping[str, Message]
    ) -> tuple[Mapping[str, Message], dict[str, PackedResource]] | None:
        """A mapping packed in an earlier generation, moved to the current one with its
        resources (so a later mapping sharing most of them finds them packed)."""
        for older in self._generations[1:]:
            hit = older.by_source.get(id(resources))
            if hit is not None and hit[0] is resources:
                current = self._generations[0]
                current.by_source[id(resources)] = hit
                current.by_message.update((id(r.message), r) for r in hit[1].values())
                return hit
        return None

    def pack(self, name: str, message: Message) -> PackedResource:
        current = self._generations[0].by_message
        hit = current.get(id(message))
        if hit is None:
            for older in self._generations[1:]:
                hit = older.by_message.get(id(message))
                if hit is not None:
                    break
        if hit is None or hit.message is not message or hit.name != name:
            hit = pack(name, message)
        current[id(message)] = hit
        return hit


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


def wanted(target: Mapping[str, PackedResource], state: TypeState) -> Mapping[str, PackedResource]:
    """The part of everything generated that this client subscribes to (read only)."""
    if state.wildcard:
        return target  # everything: no copy of thousands of names per proxy and push
    return {name: r for name, r in target.items() if name in state.subscribed}


def _sendable(resource: PackedResource, view: ClientView) -> bool:
    """Never send again content the client rejected: only a new generation goes out."""
    return view.rejected.get(resource.name) != resource.hash


def changed(
    target: Mapping[str, PackedResource], view: ClientView, force: frozenset[str], force_all: bool
) -> tuple[PackedResource, ...]:
    """Resources the client lacks or holds in another version (plus forced ones), sendable."""
    if force_all:
        candidates = list(target.values())
    else:
        # The generator hands back the very objects it packed before while their content is
        # unchanged, so identity settles most names without comparing hashes.
        have = view.have
        candidates = [
            r
            for name, r in target.items()
            if (held := have.get(name)) is not r and (held is None or held.hash != r.hash)
        ]
        if force:
            listed = {r.name for r in candidates}
            candidates += [target[n] for n in force if n in target and n not in listed]
    sendable = [r for r in candidates if _sendable(r, view)] if view.rejected else candidates
    return tuple(sorted(sendable, key=lambda r: r.name))


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
    gone: set[str] = set()
    if removals and state.wildcard:
        gone = set(view.have.keys() - mine.keys())
    elif removals:
        gone = {n for n in view.have if n not in mine and is_wanted(state, n)}
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
