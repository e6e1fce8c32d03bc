"""Compiled output reused across snapshot versions while nothing it read has changed.

The compiler is a pure function of (proxy, PushContext). A cached piece of output is therefore
still right for a new PushContext when every value it read from the old one reads the same
from the new one. Instead of naming those inputs by hand (and missing one), the piece is built
against a `TrackedPush`, which records every attribute and method result the compiler takes
from the PushContext; on a new version the record is replayed against the new PushContext and
compared (`==`, after a cheap `is`). The proxy facts a piece reads are the caller's key
(compiler/dependencies.py), as before.

So a VirtualService change recompiles the one host whose routes read it, an endpoint change the
one service's assignments, and the rest keeps its message objects, which the xDS layer then
need not pack or send again (DESIGN §3, "cached and invalidated by the config they depend on").
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from trellis.model.push_context import PushContext

_T = TypeVar("_T")
_V = TypeVar("_V")
_ATTRIBUTE = None  # Read.args of a plain attribute read
_NOT_REPLAYED = object()

# The PushContext fields each lookup method reads, directly or through other methods (a test
# checks this against their source). While those fields are the very same objects, which
# `share_unchanged` arranges for indexes whose content did not change, the method answers
# every question as before and its recorded reads need no replay.
READS_FIELDS: dict[str, tuple[str, ...]] = {
    "service": ("_services_by_host",),
    "resolve_host": ("mesh", "_services_by_host"),
    "resolve_service": ("mesh", "_services_by_host"),
    "endpoints": ("_endpoints",),
    "mesh_virtual_service": ("_mesh_vs_hosts",),
    "destination_rule": ("mesh", "_services_by_host", "_rules_by_host"),
}
_SHAREABLE = frozenset(f for fields in READS_FIELDS.values() for f in fields)


@dataclass(frozen=True, slots=True)
class Read:
    """One thing a build took from the PushContext: `push.NAME` or `push.NAME(*args)`."""

    name: str
    args: tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]] | None
    value: Any
    # (name, args) when hashable, else (name, ids of the arguments): the same read of another
    # piece has the same marker while this Read (holding its arguments) lives.
    marker: Hashable = field(init=False, compare=False)

    def __post_init__(self) -> None:
        marker: Hashable = (self.name, self.args)
        try:
            hash(marker)
        except TypeError:  # unhashable arguments (a Proxy, a Service)
            marker = (self.name, _identities(self.args))
        object.__setattr__(self, "marker", marker)

    def replay(self, push: PushContext) -> Any:
        current = getattr(push, self.name)
        if self.args is None:
            return current
        positional, keywords = self.args
        return current(*positional, **dict(keywords))


class ReadLog:
    """The reads of one build, each (name, arguments) once."""

    __slots__ = ("_seen", "reads", "untrackable")

    def __init__(self) -> None:
        self.reads: list[Read] = []
        self.untrackable = False  # a read raised: the output may depend on the failure
        self._seen: set[Hashable] = set()

    def add(self, read: Read) -> None:
        if read.marker in self._seen:
            return
        self._seen.add(read.marker)
        self.reads.append(read)


class TrackedPush:
    """Stands in for a PushContext and logs what is read from it (methods run on the real one,
    so what they read inside is covered by their recorded result)."""

    __slots__ = ("_log", "_push")

    def __init__(self, push: PushContext, log: ReadLog) -> None:
        self._push = push
        self._log = log

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._push, name)
        if inspect.ismethod(value) and value.__self__ is self._push:
            return self._tracked_method(name, value)
        self._log.add(Read(name, _ATTRIBUTE, value))
        return value

    def _tracked_method(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        log = self._log

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = method(*args, **kwargs)
            except Exception:
                log.untrackable = True
                raise
            log.add(Read(name, (args, tuple(sorted(kwargs.items()))), result))
            return result

        return call


def _identities(args: Any) -> tuple[object, ...]:
    positional, keywords = args
    return (*(id(a) for a in positional), *((k, id(v)) for k, v in keywords))


def share_unchanged(push: PushContext, previous: PushContext) -> PushContext:
    """`push` with each index of READS_FIELDS that equals `previous`'s replaced by that very
    object, so the compile cache sees at a glance which lookups cannot have changed."""
    same = {
        f: getattr(previous, f)
        for f in _SHAREABLE
        if getattr(push, f) is not getattr(previous, f) and getattr(push, f) == getattr(previous, f)
    }
    return dataclasses.replace(push, **same) if same else push


def tracked(push: PushContext, log: ReadLog) -> PushContext:
    """`push` as the compiler's functions take it, logging into `log`."""
    return cast(PushContext, TrackedPush(push, log))


class MergedParts(dict[str, _V]):
    """Parts merged in order (a later part wins a name) that still lists its `parts`: the
    xDS layer packs shared parts once (xds/resources.PackCache) instead of once per proxy."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Mapping[str, _V], ...]) -> None:
        super().__init__()
        for part in parts:
            self.update(part)
        self.parts = parts


@dataclass(slots=True)
class _Entry(Generic[_T]):
    value: _T
    inputs: tuple[Any, ...]  # explicit inputs besides the PushContext, compared with ==
    reads: tuple[Read, ...]
    checked: int  # generation it was last built or found valid at


class ReuseCache:
    """Output pieces by key, kept across PushContext versions while their reads still hold.

    Not thread-safe: the owner (controlplane/state.py) locks around it. Entries unused for
    `keep` generations (snapshot versions) are dropped, so keys that vanish (a service deleted,
    the last proxy of a kind gone) do not pin memory.
    """

    def __init__(self, *, keep: int = 8) -> None:
        self._entries: dict[Hashable, _Entry[Any]] = {}
        self._keep = keep
        self._version: int | None = None
        self._generation = 0
        self._pushes: dict[int, PushContext] = {}  # generation -> its PushContext
        self._unchanged: dict[tuple[int, str], bool] = {}
        self._same: dict[tuple[int, int], tuple[Any, Any, bool]] = {}
        self._replayed: dict[Hashable, Any] = {}
        self._verdicts: dict[tuple[Hashable, int], tuple[Read, bool]] = {}
        self._stable: dict[Hashable, tuple[int, Any]] = {}
        # ids of merged parts -> (generation, the parts (kept alive), their merge)
        self._merged: dict[tuple[int, ...], tuple[int, tuple[Any, ...], Any]] = {}
        self.built = 0  # counters for tests and the bench: pieces compiled / reused
        self.reused = 0

    def get(
        self,
        key: Hashable,
        push: PushContext,
        inputs: tuple[Any, ...],
        build: Callable[[PushContext], _T],
    ) -> _T:
        """The piece `build(push)` would make, built only if `key`'s cached one is stale."""
        self.advance(push)
        entry = self._entries.get(key)
        if entry is not None and self._valid(entry, push, inputs):
            entry.checked = self._generation
            self.reused += 1
            return cast(_T, entry.value)
        log = ReadLog()
        value = build(tracked(push, log))
        self.built += 1
        if log.untrackable:
            self._entries.pop(key, None)
        else:
            self._entries[key] = _Entry(value, inputs, tuple(log.reads), self._generation)
        return value

    def stable(self, key: Hashable, value: _T) -> _T:
        """`value`, or the equal value last given for `key`: unchanged output keeps its
        identity across versions, which is how the xDS layer skips re-packing it."""
        previous = self._stable.get(key)
        if previous is not None and previous[1] is not value and previous[1] == value:
            value = previous[1]
        self._stable[key] = (self._generation, value)
        return value

    def merged(self, parts: tuple[Mapping[str, _V], ...]) -> Mapping[str, _V]:
        """The parts merged in order (later ones win a name); the same mapping object for
        the same part objects, so proxies and versions with equal parts share it."""
        if len(parts) == 1:
            return parts[0]
        marker = tuple(id(p) for p in parts)
        hit = self._merged.get(marker)
        if hit is None or any(a is not b for a, b in zip(hit[1], parts, strict=True)):
            hit = (self._generation, parts, MergedParts(parts))
        self._merged[marker] = (self._generation, hit[1], hit[2])
        return cast(Mapping[str, _V], hit[2])

    def __len__(self) -> int:
        return len(self._entries)

    def _valid(self, entry: _Entry[Any], push: PushContext, inputs: tuple[Any, ...]) -> bool:
        if entry.checked == self._generation:
            return self._same_value(entry.inputs, inputs)
        if not self._same_value(entry.inputs, inputs):
            return False
        holds = self._holds
        since = entry.checked
        return all(holds(read, push, since) for read in entry.reads)

    def _holds(self, read: Read, push: PushContext, since: int) -> bool:
        """Whether `read` reads the same from `push` as from the PushContext of generation
        `since` (where it last held); once per generation per distinct read and value: the
        pieces of many proxies and types ask the same (a host's DestinationRule from one
        namespace, the same Service's endpoints)."""
        if read.args is not None and self._fields_unchanged(read.name, since):
            return True
        key = (read.marker, id(read.value))
        hit = self._verdicts.get(key)
        if hit is None:
            current = self._replayed.get(read.marker, _NOT_REPLAYED)
            if current is _NOT_REPLAYED:
                current = self._replayed[read.marker] = read.replay(push)
            # The memo holds the read (its arguments, its value): ids in keys stay unique.
            hit = self._verdicts[key] = (read, self._same_value(read.value, current))
        return hit[1]

    def _same_value(self, old: Any, new: Any) -> bool:
        """`old == new`, remembered per pair for this generation: proxies alike read the very
        same large values (all services, every peer), compared once instead of per entry."""
        if old is new:
            return True
        marker = (id(old), id(new))
        hit = self._same.get(marker)
        if hit is None:
            # Both objects are held in the memo so their ids cannot be reused meanwhile.
            hit = self._same[marker] = (old, new, bool(old == new))
        return hit[2]

    def _fields_unchanged(self, method: str, since: int) -> bool:
        """Whether every field `method` reads (READS_FIELDS) is the very same object now as
        at generation `since`: then its answer for any arguments is the same too."""
        fields = READS_FIELDS.get(method)
        if fields is None:
            return False
        marker = (since, method)
        hit = self._unchanged.get(marker)
        if hit is None:
            before, now = self._pushes.get(since), self._pushes[self._generation]
            hit = before is not None and all(getattr(before, f) is getattr(now, f) for f in fields)
            self._unchanged[marker] = hit
        return hit

    def advance(self, push: PushContext) -> None:
        """Start a generation when the PushContext version changes (entries age by it)."""
        if push.version == self._version:
            return
        self._version = push.version
        self._generation += 1
        self._pushes[self._generation] = push
        self._same = {}
        self._replayed = {}
        self._verdicts = {}
        self._unchanged = {}
        oldest = self._generation - self._keep
        self._pushes = {g: p for g, p in self._pushes.items() if g >= oldest}
        self._entries = {k: e for k, e in self._entries.items() if e.checked >= oldest}
        self._stable = {k: v for k, v in self._stable.items() if v[0] >= oldest}
        self._merged = {k: v for k, v in self._merged.items() if v[0] >= oldest}
