"""What is asked of Redis in one event-loop pass, sent together once the pass ends.

A storm of logins asks for thousands of small writes (a keyed connection's will, its name in
the hold directory); gathered per pass they cost one pipeline, not one round trip each. The
owner keeps what is asked and sends it in ``flush``; a caller that must not answer its client
before its write is in Redis awaits ``sent()`` (one batched round trip).
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

    def due(self) -> None:
        """Something was asked: flushed at the end of this pass."""
        self._due.set()

    def sent(self) -> asyncio.Future[None]:
        """Done once what was asked so far was sent (written, or failed: the owner logs)."""
        if self._sent is None:
            self._sent = asyncio.get_running_loop().create_future()
        self._due.set()
        return self._sent

    def release(self) -> None:
        """Nothing more will be sent (the owner stops): whoever awaits ``sent`` goes on."""
        sent, self._sent = self._sent, None
        if sent is not None and not sent.done():
            sent.set_result(None)

    async def run(self) -> None:
        """The batch's loop (the owner runs it as a task and cancels it)."""
        while True:
            await self._due.wait()
            await asyncio.sleep(0)  # one more loop pass: what is asked in it joins the batch
            self._due.clear()
            sent, self._sent = self._sent, None
            try:
                await self._flush()
            finally:
                if sent is not None and not sent.done():
                    sent.set_result(None)
