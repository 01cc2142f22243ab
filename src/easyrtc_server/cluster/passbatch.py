"""What is asked of Redis in one event-loop pass, sent together once the pass ends.

A storm of logins asks for thousands of small writes (a keyed connection's will, its name in
the hold directory); gathered per pass they cost one pipeline, not one round trip each. The
owner keeps what is asked and sends it in ``flush``; a caller that must not answer its client
before its write is in Redis awaits ``sent()`` (one batched round trip); one that must only wait
for what others asked before it, asking nothing, awaits ``pending()`` (nothing when all was sent).
Once the owner stops (``release``) nothing is waited for any more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class PassBatch:
    """Runs ``flush`` once per event-loop pass in which something was asked (``due``)."""

    def __init__(self, flush: Callable[[], Awaitable[None]]) -> None:
        self._flush = flush
        self._due = asyncio.Event()
        self._sent: asyncio.Future[None] | None = None
        """Done once the next flush ended (made when asked for)."""
        self._flushing = False
        self._in_flight: asyncio.Future[None] | None = None
        """Done once the flush under way ended (made when asked for)."""
        self._released = False

    def due(self) -> None:
        """Something was asked: flushed at the end of this pass."""
        self._due.set()

    def sent(self) -> asyncio.Future[None]:
        """Done once what was asked so far was sent (written, or failed: the owner logs); done
        at once after ``release``."""
        if self._released:
            return _done()
        if self._sent is None:
            self._sent = asyncio.get_running_loop().create_future()
        self._due.set()
        return self._sent

    def pending(self) -> asyncio.Future[None] | None:
        """Done once what was asked so far was sent, asking no flush of its own; None if none
        is due or under way (or after ``release``)."""
        if self._released:
            return None
        if self._due.is_set():
            return self.sent()
        if not self._flushing:
            return None
        if self._in_flight is None:
            self._in_flight = asyncio.get_running_loop().create_future()
        return self._in_flight

    def release(self) -> None:
        """Nothing more will be sent (the owner stops): whoever awaits ``sent`` goes on, and
        ``sent`` and ``pending`` wait for nothing from now on."""
        self._released = True
        sent, self._sent = self._sent, None
        if sent is not None and not sent.done():
            sent.set_result(None)

    async def run(self) -> None:
        """The batch's loop (the owner runs it as a task and cancels it)."""
        while True:
            await self._due.wait()
            await asyncio.sleep(0)  # one more loop pass: what is asked in it joins the batch
            self._due.clear()
            self._in_flight, self._sent = self._sent, None
            self._flushing = True
            try:
                await self._flush()
            finally:
                self._flushing = False
                sent, self._in_flight = self._in_flight, None
                if sent is not None and not sent.done():
                    sent.set_result(None)


def _done() -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done
