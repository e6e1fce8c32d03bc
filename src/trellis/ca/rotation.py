"""When to renew a certificate: at half its lifetime, as Istio's agent does by default.

Renewing at half life leaves the other half for retries if trellisd is away, and Envoy swaps the
SDS secret for new connections without closing old ones, so no request is dropped. Everything
here takes the time (or a clock) from its caller: tests move a fake clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

Clock = Callable[[], datetime]  # returns an aware UTC datetime
HALF_LIFE = 0.5


def next_rotation(
    not_before: datetime, not_after: datetime, *, fraction: float = HALF_LIFE
) -> datetime:
    """The moment a certificate valid from not_before to not_after should be replaced."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"rotation fraction must be in (0, 1], got {fraction}")
    return not_before + (not_after - not_before) * fraction


def needs_rotation(
    not_before: datetime, not_after: datetime, now: datetime, *, fraction: float = HALF_LIFE
) -> bool:
    """Whether the certificate has reached its rotation point (half life by default)."""
    return now >= next_rotation(not_before, not_after, fraction=fraction)


@dataclass(frozen=True, slots=True)
class _Tracked:
    not_before: datetime
    not_after: datetime
    rotate_at: datetime


class RotationScheduler:
    """Tracks named certificates and says which are due, by an injected clock.

    The caller owns the loop: `await asyncio.sleep(scheduler.seconds_until_next())`, renew the
    names `due()` returns, `track()` the new certificates. Nothing here sleeps.
    """

    def __init__(self, clock: Clock, *, fraction: float = HALF_LIFE) -> None:
        self._clock = clock
        self._fraction = fraction
        self._tracked: dict[str, _Tracked] = {}

    def track(self, name: str, not_before: datetime, not_after: datetime) -> None:
        """Start (or restart, after a renewal) watching the certificate known as `name`."""
        rotate_at = next_rotation(not_before, not_after, fraction=self._fraction)
        self._tracked[name] = _Tracked(not_before, not_after, rotate_at)

    def forget(self, name: str) -> None:
        self._tracked.pop(name, None)

    def due(self) -> list[str]:
        """Names whose certificates have reached their rotation point, most urgent first."""
        now = self._clock()
        ready = [(t.rotate_at, name) for name, t in self._tracked.items() if now >= t.rotate_at]
        return [name for _, name in sorted(ready)]

    def next_due(self) -> datetime | None:
        """The earliest rotation point among tracked certificates (None if none tracked)."""
        return min((t.rotate_at for t in self._tracked.values()), default=None)

    def seconds_until_next(self) -> float | None:
        """How long the caller may wait before something is due (0 if already due)."""
        when = self.next_due()
        if when is None:
            return None
        return max(0.0, (when - self._clock()).total_seconds())
