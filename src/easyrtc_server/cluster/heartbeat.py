"""This node's alive key, kept fresh by a thread of its own: a busy event loop is not death.

The registry refreshes the alive key from the event loop (``registry``). Under a storm, or
with other processes taking the CPU, the loop can be busy for longer than the key's TTL, and
the other nodes would reap a node that is only slow (its clients leaving every list, then
coming back). So a thread refreshes the key too, on its own timer and with its own blocking
Redis client: the loop's load does not delay it (the GIL is handed over every few
milliseconds).

A thread alone would keep a wedged process alive for ever, so it refreshes only while the
loop shows signs of life: each refresh the loop makes calls ``beat``, and the thread stops
refreshing once the loop has not beaten for ``stall_limit`` seconds (then the node is reaped
as if it were dead, and if it comes back it re-registers, ``rebuild``). A frozen process
(SIGSTOP) freezes the thread too.

The thread also tells whether Redis answers at all (``answered``, each round's ``PING`` and
``SET``): a state change waits for the log while it does (``pulse``), and a busy event loop
cannot delay that news either.

Redis errors are not logged here: the registry logs a lost Redis once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

STALL_FACTOR: Final = 10
"""The loop may go ``STALL_FACTOR`` alive TTLs without a beat before the thread stops."""
JOIN_TIMEOUT: Final = 2.0


class AliveKeyWriter(Protocol):
    """What the thread needs of a blocking Redis client."""

    def set(self, name: str, value: bytes, *, px: int) -> object: ...

    def ping(self) -> object: ...


class Heartbeat:
    """Refreshes ``key`` with ``value()`` every third of ``ttl`` from a thread, while the
    event loop beats."""

    def __init__(
        self,
        connect: Callable[[], AliveKeyWriter],
        key: str,
        value: Callable[[], bytes],
        ttl: float,
        *,
        stall_limit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        answered: Callable[[], None] | None = None,
    ) -> None:
        """``answered`` is called (from the thread) each time Redis answers it."""
        self._connect = connect
        self._answered = answered
        self.key = key
        self._value = value
        self.ttl = ttl
        self.stall_limit = stall_limit if stall_limit is not None else STALL_FACTOR * ttl
        self._clock = clock
        self._beaten = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        """Refreshes that reached Redis (for tests and curiosity)."""

    def beat(self) -> None:
        """The event loop is alive (called from it)."""
        self._beaten = self._clock()

    def due(self) -> bool:
        """The thread should refresh: the loop beat within ``stall_limit``."""
        return self._clock() - self._beaten <= self.stall_limit

    def start(self) -> None:
        if self._thread is None:
            self._beaten = self._clock()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cluster-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop refreshing (before the registry deletes the key, so it stays deleted)."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(JOIN_TIMEOUT)

    def _run(self) -> None:
        client: AliveKeyWriter | None = None
        px = int(self.ttl * 1000)
        answered = self._answered
        while not self._stop.wait(self.ttl / 3):
            if client is None:  # a cluster client connects when made: retried until it does
                try:
                    client = self._connect()
                except Exception:
                    continue
            if self.due():
                with contextlib.suppress(Exception):  # Redis away or slow: the registry says so
                    client.set(self.key, self._value(), px=px)
                    self.refreshes += 1
                    if answered is not None:
                        answered()
            if answered is not None:  # a Redis that holds writes back still answers this
                with contextlib.suppress(Exception):
                    client.ping()
                    answered()
        close = getattr(client, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
