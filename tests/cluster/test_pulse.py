"""The rule that tells a slow Redis, or a busy node, from a gone Redis (``cluster.pulse``).

Sans-I/O, with an injected clock: an entry waits for Redis while Redis answers, however long
that takes; once Redis has been silent for the whole silence bound it is gone. The reader is
stuck only when it applies nothing at all, never because it is working through a storm.
"""

from __future__ import annotations

import asyncio
import threading

from easyrtc_server.cluster.heartbeat import Heartbeat
from easyrtc_server.cluster.pulse import Pulse, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_waits_as_long_as_redis_answers() -> None:
    clock = Clock()
    pulse = Pulse(6.0, 10.0, least=2.0, clock=clock)
    queued = clock.now
    for _ in range(10):  # a minute of a Redis that answers every 3 s but takes no write
        clock.now += 3.0
        assert clock.now < pulse.write_deadline(queued)
        pulse.answered()
    clock.now += 6.0
    assert clock.now == pulse.write_deadline(queued)  # six silent seconds: gone


def test_a_silent_redis_refuses_a_new_entry_after_the_least_wait_not_at_once() -> None:
    clock = Clock()
    pulse = Pulse(6.0, 10.0, least=2.0, clock=clock)
    clock.now += 60.0  # silent for a minute already
    queued = clock.now
    assert pulse.write_deadline(queued) == queued + 2.0  # a Redis just back has 2 s
    assert pulse.silent_for() == 60.0


def test_a_reader_behind_a_storm_is_waited_for_a_stuck_one_is_not() -> None:
    clock = Clock()
    pulse = Pulse(6.0, 10.0, clock=clock)
    written = clock.now
    for _ in range(30):  # 30 s of a reader applying other entries first
        clock.now += 1.0
        pulse.applied()
        assert clock.now < pulse.apply_deadline(written)
    assert pulse.apply_deadline(written) == clock.now + 10.0  # then nothing applied for 10 s
    clock.now += 10.0
    assert clock.now >= pulse.apply_deadline(written)


def test_a_reader_idle_before_the_entry_was_written_is_not_stuck() -> None:
    clock = Clock()
    pulse = Pulse(6.0, 10.0, clock=clock)
    clock.now += 300.0  # nothing to read for five minutes
    assert pulse.apply_deadline(clock.now) == clock.now + 10.0


async def test_the_wait_asks_the_deadline_again_and_leaves_the_future_alone() -> None:
    loop = asyncio.get_running_loop()
    deadlines = iter([loop.time() + 0.01, loop.time() + 0.02, loop.time()])
    future: asyncio.Future[None] = loop.create_future()
    assert not await wait_until(future, lambda: next(deadlines), loop.time)
    assert not future.cancelled()  # the writer may still send it: not cancelled here
    future.set_result(None)
    assert await wait_until(future, lambda: 0.0, loop.time)


class PausedWrites:
    """A Redis under ``CLIENT PAUSE WRITE``: every ``SET`` times out, ``PING`` answers."""

    def set(self, name: str, value: bytes, *, px: int) -> object:
        raise TimeoutError("paused")

    def ping(self) -> object:
        return True


def test_the_heartbeat_hears_a_redis_that_holds_writes_back() -> None:
    clock = Clock()
    pulse = Pulse(6.0, 10.0, clock=clock)
    heard = threading.Event()

    def answered() -> None:
        pulse.answered()
        heard.set()

    heartbeat = Heartbeat(PausedWrites, "k", lambda: b"", 0.03, answered=answered)
    clock.now += 5.0
    heartbeat.start()
    try:
        assert heard.wait(5.0)
    finally:
        heartbeat.stop()
    assert heartbeat.refreshes == 0  # the alive key was not written
    assert pulse.silent_for() == 0.0  # but Redis answered: not gone
