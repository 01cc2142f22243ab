"""Graceful shutdown: refuse newcomers, say goodbye to every client, run the hooks, within a time.

On SIGTERM/SIGINT aiohttp stops listening and runs the application's ``on_shutdown`` handlers;
``drain`` is the first of them (``hosting.py``), before the transport closes whatever is left.
Under ASGI, ``drain_on_signal`` starts it at the signal (see there). A drain marks the server
as draining (``EasyRtcServer.draining``, which new sockets are refused with ``SERVER_SHUTDOWN``
by and ``/readyz`` reads), then takes the clients one at a time: the
client gets a ``SERVER_SHUTDOWN`` error push, the server forgets it exactly as on a disconnect
(its peers get ``removeClient``, the ``room_left`` and ``disconnect`` hooks run) and its socket
is closed. One at a time, so that every remaining client hears of each leaving one. What is not
done within ``shutdown_drain_time`` is left to the transport's shutdown, which closes all at once.
A client that gave a resume key is not told (with a ``resume_secret`` set): its socket is dropped
without a goodbye, and it takes its easyrtcid back from the next process (``hold``).

``exit_on_second_signal`` (the command line installs it) makes a second signal end the process
at once. Knows the server's seam (``links``, ``deliver``, ``close``), not the transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

from aiohttp import web

from .protocol.errors import ErrorCode, error_message
from .protocol.outcome import Outcome
from .server import EasyRtcServer

log = logging.getLogger("easyrtc_server.shutdown")

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


async def drain(server: EasyRtcServer, drain_time: float) -> int:
    """Close every client as described above; return how many were closed in time."""
    server.draining = True  # /readyz answers 503
    server.guard.draining = True  # new sockets get SERVER_SHUTDOWN
    clients = len(server.links)
    log.info("shutting down: closing %d sockets within %g s", clients, drain_time)
    closed = 0
    try:
        async with asyncio.timeout(drain_time):
            for easyrtcid in list(server.links):
                if await _close_one(server, easyrtcid):
                    closed += 1
    except TimeoutError:
        log.warning(
            "drain time of %g s over: %d of %d sockets left to close at once",
            drain_time,
            clients - closed,
            clients,
        )
    return closed


async def _close_one(server: EasyRtcServer, easyrtcid: str) -> bool:
    link = server.links.get(easyrtcid)
    peer = server.core.peers.get(easyrtcid)
    if link is None or peer is None:  # left meanwhile
        return False
    if server.hold_for_restart(peer):  # keyed: it resumes on the next process
        return True
    goodbye = Outcome()
    goodbye.push(
        easyrtcid, "easyrtcCmd", error_message(ErrorCode.SERVER_SHUTDOWN, server.core.now())
    )
    try:  # delivered as any push: the member-list changes it was not told yet come first
        await server.deliver(None, goodbye, None)
    except Exception:  # its socket is already broken: it is forgotten all the same
        log.debug("could not tell %s of the shutdown", easyrtcid, exc_info=True)
    # forgotten now, as on a disconnect; the transport's own close() call later finds nothing
    await server.close(peer)
    await link.close()
    return True


def drain_on_signal(server: EasyRtcServer) -> None:
    """Under an ASGI server: on SIGTERM/SIGINT, drain first, then let the server's handler run.

    uvicorn closes every websocket (code 1012) as soon as it is signalled and sends the lifespan
    shutdown only once they are gone: a drain then would find nobody to say goodbye to. So the
    Python-level handlers the ASGI server installed are wrapped: the first signal drains (within
    ``shutdown_drain_time``) and then calls the server's handler, which stops the server; a
    second signal calls it at once. Handlers that are not Python functions are left alone (the
    lifespan shutdown still drains whatever is left).
    """
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only: the lifespan shutdown drains
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        previous = signal.getsignal(signum)
        if callable(previous):
            signal.signal(signum, _DrainFirst(server, loop, previous))


class _DrainFirst:
    """One signal's handler: drain, then pass the signal on to the ASGI server's handler."""

    def __init__(
        self,
        server: EasyRtcServer,
        loop: asyncio.AbstractEventLoop,
        previous: Callable[[int, FrameType | None], Any],
    ) -> None:
        self.server = server
        self.loop = loop
        self.previous = previous
        self.task: asyncio.Task[None] | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.server.draining:  # a second signal, or the server is stopping anyway
            self.previous(signum, frame)
            return
        self.server.draining = True
        self.loop.call_soon_threadsafe(self._start, signum)

    def _start(self, signum: int) -> None:
        self.task = self.loop.create_task(self._drain_then_stop(signum))

    async def _drain_then_stop(self, signum: int) -> None:
        try:
            await drain(self.server, self.server.options.shutdown_drain_time)
        finally:
            self.previous(signum, None)


async def exit_on_second_signal(_app: web.Application) -> None:
    """An ``on_shutdown`` handler: from now on SIGINT/SIGTERM end the process at once."""
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        loop.add_signal_handler(signum, _exit_now, signum)


def _exit_now(signum: int) -> None:
    log.warning("second signal (%s): exiting without finishing the shutdown", signum)
    logging.shutdown()
    os._exit(128 + signum)
