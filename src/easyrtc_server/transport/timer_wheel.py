"""Many deadlines on one timer: a hashed timing wheel for the heartbeats of every session.

A timer per socket costs a heap entry and a callback for each ping; with 10,000 idle sockets that
is most of a core. The wheel keeps items in slots of ``resolution`` seconds and wakes once per
slot while it holds anything, expiring every item whose slot has come (up to ``resolution`` late,
never early).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TimerWheel"]

T = TypeVar("T", bound=Hashable)


class TimerWheel(Generic[T]):
    """Calls ``expire(item, now)`` once the deadline given to `schedule` for ``item`` passed.

    ``clock`` is the loop's clock (``loop.time``); the wheel runs on the running event loop.
    """

    def __init__(
        self,
        resolution: float,
        expire: Callable[[T, float], None],
        clock: Callable[[], float] | None = None,
    ) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be > 0")
        self.resolution = resolution
        self._expire = expire
        self._clock = clock
        self._slots: dict[int, dict[T, None]] = {}
        self._slot_of: dict[T, int] = {}
        self._next = 0
        """The first slot not yet expired."""
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0
        """The slot the timer is set for."""

    def __len__(self) -> int:
        return len(self._slot_of)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def schedule(self, item: T, deadline: float | None) -> None:
        """(Re)schedule ``item`` for ``deadline``; None cancels it."""
        if deadline is None:
            self.cancel(item)
            return
        slot = math.ceil(deadline / self.resolution)
        if not self._slot_of and self._timer is None:
            self._next = math.floor(self._now() / self.resolution)
        slot = max(slot, self._next)
        old = self._slot_of.get(item)
        if old == slot:
            return
        if old is not None:
            self._remove(item, old)
        self._slot_of[item] = slot
        self._slots.setdefault(slot, {})[item] = None
        if self._timer is None or slot < self._armed:
            if self._timer is not None:
                self._timer.cancel()
            self._arm()

    def close(self) -> None:
        """Forget every item and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._slots.clear()
        self._slot_of.clear()

    def cancel(self, item: T) -> None:
        slot = self._slot_of.pop(item, None)
        if slot is not None:
            members = self._slots[slot]
            del members[item]
            if not members:
                del self._slots[slot]

    def _remove(self, item: T, slot: int) -> None:
        members = self._slots[slot]
        del members[item]
        if not members:
            del self._slots[slot]

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._armed = min(self._slots)
        self._timer = loop.call_at(self._armed * self.resolution, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self._now()
        # the loop may run a timer a hair early (within its clock resolution)
        current = math.floor(now / self.resolution + 1e-6)
        while self._next <= current and self._slot_of:
            members = self._slots.pop(self._next, None)
            self._next += 1
            if not members:
                continue
            for item in members:
                del self._slot_of[item]
            for item in members:
                self._expire(item, now)
        if self._slot_of:
            self._next = max(self._next, current + 1)
            if self._timer is None:
                self._arm()
