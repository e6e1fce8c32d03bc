"""Kiali's default health thresholds for HTTP traffic (Kiali's `healthConfig` defaults).

5xx: Degraded above 0 %, Failure from 10 %; 4xx: Degraded from 10 %, Failure from 20 %.
No requests at all is NA: no traffic says nothing about health.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class HealthStatus(enum.StrEnum):
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    FAILURE = "Failure"
    NA = "NA"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    HealthStatus.NA: 0,
    HealthStatus.HEALTHY: 1,
    HealthStatus.DEGRADED: 2,
    HealthStatus.FAILURE: 3,
}


@dataclass(frozen=True, slots=True)
class Tolerance:
    """One code class's thresholds in percent; `degraded_inclusive` False means "above"."""

    code_class: str  # "5" or "4"
    degraded: float
    failure: float
    degraded_inclusive: bool = True

    def status(self, percent: float) -> HealthStatus:
        if percent >= self.failure:
            return HealthStatus.FAILURE
        hit = percent >= self.degraded if self.degraded_inclusive else percent > self.degraded
        return HealthStatus.DEGRADED if hit else HealthStatus.HEALTHY


KIALI_DEFAULTS = (
    Tolerance("5", degraded=0.0, failure=10.0, degraded_inclusive=False),
    Tolerance("4", degraded=10.0, failure=20.0),
)


def error_percent(by_code: Mapping[str, float], code_class: str) -> float:
    total = sum(by_code.values())
    if total <= 0:
        return 0.0
    return 100.0 * sum(v for code, v in by_code.items() if code.startswith(code_class)) / total


def http_health(
    by_code: Mapping[str, float], tolerances: tuple[Tolerance, ...] = KIALI_DEFAULTS
) -> HealthStatus:
    """The worst status any tolerance gives for request rates by response code."""
    if sum(by_code.values()) <= 0:
        return HealthStatus.NA
    return max(
        (t.status(error_percent(by_code, t.code_class)) for t in tolerances), key=lambda s: s.rank
    )


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    return max(statuses, key=lambda s: s.rank, default=HealthStatus.NA)
