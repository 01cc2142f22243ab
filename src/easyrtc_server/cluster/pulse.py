"""How long a state change waits for the cluster log: slow is not gone.

A client's state change waits twice: for Redis to take its entry, then for this node's reader
to apply it. Under a storm, or beside other busy processes, either can take many seconds while
nothing is broken: the node's own event loop is late reading Redis' replies, its reader is
working through the entries before this one. A fixed bound on the wait (it was 2 s) then
refuses state changes as "unavailable" while Redis answers, which is what overload must never
do; the bounded backpressure is ``cluster_max_pending_appends`` (refused as busy, at once).

So the waits are bounded by *progress*, not by their length:

- Redis is **gone** when it has not answered this node for ``silence`` seconds (one alive TTL:
  the time after which a silent node is itself gone for the cluster), and the entry has waited
  at least ``least`` seconds (a Redis just back gets that long to take it). Its answers are heard by
  the heartbeat thread (its own client and timer, so the event loop's load does not delay it:
  a ``PING`` every third of the TTL, which a Redis that only holds writes back, ``CLIENT
  PAUSE WRITE``, still answers) and by the writer (each batch taken). A Redis that refuses the
  connection or the command is gone at once: the writer's error says so.
- The reader is **stuck** when it has applied nothing for ``stall`` seconds since the entry
  was written. A reader that applies other entries is behind, and the entry waits its turn.

Knows no Redis: told of answers and progress, asked with its clock; ``wait_until`` waits by it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class Pulse:
    """When Redis last answered this node, and when this node's reader last applied an entry."""

    def __init__(
        self,
        silence: float,
        stall: float,
        *,
        least: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.silence = silence
        """Seconds without an answer after which Redis is gone."""
        self.least = least
        """Seconds an entry waits for Redis at least, whatever its silence so far."""
        self.stall = stall
        """Seconds without an entry applied after which the reader is stuck."""
        self.clock = clock
        self.answered_at = clock()
        """When Redis last answered (set from the heartbeat thread too: one float, atomic)."""
        self.applied_at = clock()
        """When the reader last applied an entry."""

    def answered(self) -> None:
        """Redis answered a command of this node."""
        self.answered_at = self.clock()

    def applied(self) -> None:
        """This node's reader applied an entry."""
        self.applied_at = self.clock()

    def write_deadline(self, queued_at: float) -> float:
        """When an entry queued at ``queued_at`` stops waiting for Redis, as far as Redis'
        answers so far say (each answer moves it on)."""
        return max(self.answered_at + self.silence, queued_at + self.least)

    def apply_deadline(self, written_at: float) -> float:
        """When the reader is stuck for an entry written at ``written_at`` (each entry applied
        moves it on)."""
        return max(written_at, self.applied_at) + self.stall

    def silent_for(self) -> float:
        """Seconds since Redis last answered."""
        return self.clock() - self.answered_at


async def wait_until(
    future: asyncio.Future[Any], deadline: Callable[[], float], clock: Callable[[], float]
) -> bool:
    """Wait for ``future`` until ``deadline()`` (by ``clock``, asked again each time the wait
    runs out: progress moves it on); False if it passed first. ``future`` is not cancelled."""
    while not future.done():
        left = deadline() - clock()
        if left <= 0:
            return False
        await asyncio.wait({future}, timeout=left)
    return True
