"""trellisd's garbage-collector thresholds: fewer collections of a large, long-lived heap.

trellisd holds the whole mesh (parsed resources, the PushContext, cached compiled output) as
hundreds of thousands of long-lived objects. With CPython's default thresholds (700, 10, 10) a
rebuild that allocates a few hundred thousand objects triggers many collections that walk that
heap again and again: measured at 1 000 services, an `apply` spent 0.6-0.9 s in rebuild with
the defaults and 0.17-0.28 s with these (bench/RESULTS.md). Reference counting still frees
almost everything at once; only cycles wait a little longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations minus deallocations before a generation-0 collection
MIDDLE_EVERY = 50  # generation-0 collections per generation-1 collection
OLD_EVERY = 100  # generation-1 collections per full collection


def tune_for_large_heap() -> None:
    """Call once at start-up, before the mesh is loaded."""
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_EVERY, OLD_EVERY)
