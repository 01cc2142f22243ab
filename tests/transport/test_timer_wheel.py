"""The timer wheel that carries every session's heartbeat deadline."""

from __future__ import annotations

import asyncio
import itertools

from easyrtc_server.transport.timer_wheel import TimerWheel

RESOLUTION = 0.01


async def test_items_expire_at_their_deadline_never_before() -> None:
    loop = asyncio.get_running_loop()
    expired: dict[str, float] = {}
    done = asyncio.Event()

    def expire(item: str, now: float) -> None:
        expired[item] = now
        if len(expired) == 3:
            done.set()

    wheel: TimerWheel[str] = TimerWheel(RESOLUTION, expire)
    start = loop.time()
    deadlines = {"a": start + 0.05, "b": start + 0.02, "c": start + 0.08, "gone": start + 0.03}
    for item, deadline in deadlines.items():
        wheel.schedule(item, deadline)
    wheel.cancel("gone")
    wheel.schedule("c", start + 0.04)  # moved earlier: the timer follows
    deadlines["c"] = start + 0.04
    async with asyncio.timeout(2):
        await done.wait()
    assert set(expired) == {"a", "b", "c"}
    for item, at in expired.items():
        assert deadlines[item] - 1e-3 <= at <= deadlines[item] + 0.2, item
    assert len(wheel) == 0


async def test_rescheduling_from_the_callback() -> None:
    loop = asyncio.get_running_loop()
    times: list[float] = []
    done = asyncio.Event()

    def expire(item: int, now: float) -> None:
        times.append(now)
        if len(times) < 3:
            wheel.schedule(item, now + 0.02)
        else:
            done.set()

    wheel: TimerWheel[int] = TimerWheel(RESOLUTION, expire)
    wheel.schedule(1, loop.time() + 0.02)
    async with asyncio.timeout(2):
        await done.wait()
    assert len(times) == 3
    assert all(b - a >= 0.02 - 1e-3 for a, b in itertools.pairwise(times))
    assert len(wheel) == 0
