"""Hypothesis budgets for the fuzz tests: small in the normal suite, large on request.

`HYPOTHESIS_PROFILE=long pytest tests/fuzz` multiplies every test's example count by 50
(minutes instead of seconds); the default profile keeps tests/fuzz well under a minute.
No deadline: the first examples pay for imports and sqlite files, which says nothing.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("fuzz", deadline=None, suppress_health_check=_SLOW_DATA)
settings.register_profile("long", deadline=None, suppress_health_check=_SLOW_DATA, print_blob=True)
PROFILE = "long" if os.environ.get("HYPOTHESIS_PROFILE") == "long" else "fuzz"
_SCALE = 50 if PROFILE == "long" else 1


def budget(examples: int) -> settings:
    """Settings for one test: `examples` in the normal suite, 50x that in the long profile."""
    return settings(settings.get_profile(PROFILE), max_examples=examples * _SCALE)
