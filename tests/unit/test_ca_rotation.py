"""Certificates are renewed at half life; the scheduler follows an injected clock (no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trellis.ca.rotation import RotationScheduler, needs_rotation, next_rotation

T0 = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_rotation_is_due_at_half_life() -> None:
    assert next_rotation(T0, T0 + DAY) == T0 + DAY / 2
    assert not needs_rotation(T0, T0 + DAY, T0 + DAY / 2 - timedelta(seconds=1))
    assert needs_rotation(T0, T0 + DAY, T0 + DAY / 2)
    assert needs_rotation(T0, T0 + DAY, T0 + 2 * DAY)


def test_rotation_counts_the_backdated_start() -> None:
    backdated = T0 - timedelta(minutes=5)
    assert next_rotation(backdated, T0 + DAY) == backdated + (DAY + timedelta(minutes=5)) / 2


def test_other_fractions_and_bad_ones() -> None:
    assert next_rotation(T0, T0 + DAY, fraction=0.8) == T0 + DAY * 0.8
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            next_rotation(T0, T0 + DAY, fraction=bad)


def test_scheduler_reports_due_certificates_as_the_clock_moves() -> None:
    clock = FakeClock(T0)
    scheduler = RotationScheduler(clock)
    assert scheduler.next_due() is None and scheduler.seconds_until_next() is None
    scheduler.track("default/reviews", T0, T0 + DAY)
    scheduler.track("default/ratings", T0, T0 + DAY / 2)
    assert scheduler.due() == []
    assert scheduler.next_due() == T0 + DAY / 4
    assert scheduler.seconds_until_next() == (DAY / 4).total_seconds()
    clock.now = T0 + DAY / 2
    assert scheduler.due() == ["default/ratings", "default/reviews"]
    assert scheduler.seconds_until_next() == 0.0


def test_scheduler_renewal_moves_the_next_rotation() -> None:
    clock = FakeClock(T0 + DAY / 2)
    scheduler = RotationScheduler(clock)
    scheduler.track("w", T0, T0 + DAY)
    assert scheduler.due() == ["w"]
    scheduler.track("w", clock.now, clock.now + DAY)  # renewed
    assert scheduler.due() == []
    assert scheduler.next_due() == T0 + DAY
    scheduler.forget("w")
    assert scheduler.next_due() is None
