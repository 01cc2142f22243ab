"""Python's garbage collector, set for a server process (the command line's, not a host app's).

A join storm keeps most of what it allocates (connections, members, rooms, a partition's
model), and every object that outlives a young collection is traversed again by the older
ones: with the interpreter's defaults (a young collection every 700 allocations) the storm
into 1,000 rooms spent a quarter to a third of a node's CPU collecting (``bench/cluster.py
--rooms-storm``, a process with the collector off against one with it on; ``bench/RESULTS.md``).
Young collections every ``YOUNG_THRESHOLD`` allocations let the short-lived objects of a
request (its futures, coroutines, messages) die before any collection sees them, and the
objects loaded at start (modules, classes, the application) are frozen out of every
collection. Cycles are still collected; the relayed message's path is not affected (it
allocates little that lives).
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 10_000
"""Allocations (less deallocations) between two young collections; Python's default is 700."""


def tune_for_serving() -> None:
    """Freeze what is loaded so far and space the young collections out. Called once, by the
    command line, when the application is built and before it serves."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
