"""Debounce config updates: wait for 100 ms of quiet, but never longer than 1 s (DESIGN §3).

Pure and clock-free: the caller passes `now`, so tests drive time by hand and the server passes
its injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trellis.model.proxy import Proxy

AffectedFn = Callable[[Proxy], bool]


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """Several updates merged into one push: newest version, union of types and scopes."""

    version: str
    types: frozenset[str]
    scopes: tuple[AffectedFn, ...] | None  # None: every proxy is affected
    merged: int = 1

    def affects(self, proxy: Proxy) -> bool:
        return self.scopes is None or any(scope(proxy) for scope in self.scopes)

    def merge(self, other: PendingUpdate) -> PendingUpdate:
        scopes = None if self.scopes is None or other.scopes is None else self.scopes + other.scopes
        return PendingUpdate(
            version=other.version,
            types=self.types | other.types,
            scopes=scopes,
            merged=self.merged + other.merged,
        )


class Debouncer:
    def __init__(self, *, quiet: float, max_wait: float) -> None:
        self.quiet = quiet
        self.max_wait = max_wait
        self._pending: PendingUpdate | None = None
        self._first = 0.0
        self._last = 0.0

    def add(
        self, now: float, version: str, types: frozenset[str], affected: AffectedFn | None
    ) -> None:
        update = PendingUpdate(version, types, None if affected is None else (affected,))
        if self._pending is None:
            self._pending, self._first = update, now
        else:
            self._pending = self._pending.merge(update)
        self._last = now

    @property
    def first_added(self) -> float | None:
        """When the oldest update now pending was added (None if nothing pends)."""
        return None if self._pending is None else self._first

    def due_in(self, now: float) -> float | None:
        """Seconds until the pending update should go out (0: now); None if nothing pends."""
        if self._pending is None:
            return None
        deadline = min(self._last + self.quiet, self._first + self.max_wait)
        return max(0.0, deadline - now)

    def take(self) -> PendingUpdate | None:
        pending, self._pending = self._pending, None
        return pending
