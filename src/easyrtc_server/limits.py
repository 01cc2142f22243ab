"""Connection limits: who may open a socket, how long it may stay anonymous, how fast it may talk.

``Guard`` is the server's doorman. It owns, per open socket, a token bucket on messages and a
login deadline, and, per remote address, a count of open sockets. It is called at three points
of the transport seam (``EasyRtcServer.open``, ``receive``, ``close``) and answers with values:
an EasyRTC error code to refuse a socket, an ``Outcome`` to refuse a message. It knows nothing
of rooms, applications or the wire format beyond the error messages it sends.

A refused socket is accepted at the socket.io level, gets an ``easyrtcCmd`` error push
(``easyrtc.js`` shows its text; it ignores a socket.io CONNECT_ERROR) and is then closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from . import logsafe
from .options import Options
from .protocol.core import Peer
from .protocol.errors import ErrorCode, error_message
from .protocol.outcome import Outcome
from .transport import Link

log = logging.getLogger("easyrtc_server.limits")

MSG_REJECT_RATE_LIMIT: Final = "MSG_REJECT_RATE_LIMIT"
"""Our error code for a message refused by the token bucket (the reference has no rate limit)."""
RATE_LIMIT_TEXT: Final = "Message rejected. Too many messages, slow down."

REFUSAL_WINDOW: Final = 10.0
"""Seconds over which a socket's refused messages are counted towards closing it."""


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; one message takes one token."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


@dataclass(slots=True, eq=False)
class _Socket:
    """What the guard keeps about one open socket."""

    peer: Peer
    address: str | None
    bucket: TokenBucket | None
    login_seen: bool = False
    timer: asyncio.TimerHandle | None = None
    refusals: int = 0
    """Messages refused in the current window (from ``window_start``)."""
    window_start: float = 0.0
    refused_total: int = 0
    closing: bool = False


@dataclass(slots=True, eq=False)
class Guard:
    """Connection counting, login timeouts and per-socket message rate limits.

    ``clock`` is a monotonic clock in seconds (injected in tests); ``now_ms`` is the core's
    clock for the ``serverTime`` of error messages.
    """

    options: Options
    now_ms: Callable[[], int]
    clock: Callable[[], float] = time.monotonic
    sockets: dict[str, _Socket] = field(default_factory=dict)
    per_address: dict[str, int] = field(default_factory=dict)
    draining: bool = False
    """Set when the server shuts down: new sockets are refused with ``SERVER_SHUTDOWN``."""
    _tasks: set[asyncio.Future[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        logsafe.install()

    def is_authenticated(self, easyrtcid: str) -> bool:
        state = self.sockets.get(easyrtcid)
        return state is not None and state.peer.connection is not None

    # -- open --------------------------------------------------------------------------------

    def admit(self, peer: Peer, link: Link) -> ErrorCode | None:
        """Count a new socket in, or say why it is refused (it is then counted in all the same,
        until ``close``): too many sockets in total or from its address, or shutting down."""
        options = self.options
        address = link.remote_address
        refusal: ErrorCode | None = None
        if self.draining:
            refusal = ErrorCode.SERVER_SHUTDOWN
        elif (options.max_connections and len(self.sockets) >= options.max_connections) or (
            address is not None
            and options.max_connections_per_address
            and self.per_address.get(address, 0) >= options.max_connections_per_address
        ):
            refusal = ErrorCode.LOGIN_NO_SOCKETS
        bucket = None
        if options.message_rate > 0:
            bucket = TokenBucket(options.message_rate, options.message_burst, self.clock())
        state = _Socket(peer, address, bucket, closing=refusal is not None)
        self.sockets[peer.easyrtcid] = state
        if address is not None:
            self.per_address[address] = self.per_address.get(address, 0) + 1
        if refusal is None and options.login_timeout > 0:
            loop = asyncio.get_running_loop()
            state.timer = loop.call_later(options.login_timeout, self._login_deadline, peer, link)
        return refusal

    async def refused(self, peer: Peer, link: Link) -> bool:
        """``admit``, and if the socket is refused: push the error, close, log, say True."""
        code = self.admit(peer, link)
        if code is None:
            return False
        # keyed by address: each refused socket is a new easyrtcid
        logsafe.refusals.note(
            link.remote_address or peer.easyrtcid,
            True,
            "refused socket %s from %s: %s",
            peer.easyrtcid,
            link.remote_address,
            code.value,
        )
        await link.send("easyrtcCmd", error_message(code, self.now_ms()))
        # closed once ``open`` has returned: a transport may not close a socket it is opening
        self._spawn(link.close())
        return True

    # -- receive -----------------------------------------------------------------------------

    def check(self, peer: Peer, event: str, has_ack: bool) -> Outcome | None:
        """None if the message may be handled; else the refusal to deliver instead.

        A refusal is an ``MSG_REJECT_RATE_LIMIT`` error reply (nothing for a message without an
        acknowledgement); after ``message_refusals_before_close`` refusals within
        ``REFUSAL_WINDOW`` seconds the socket is closed as well.
        """
        state = self.sockets.get(peer.easyrtcid)
        if state is None:
            return None
        if state.closing or state.peer is not peer:
            # refused or timed out, or its easyrtcid resumed by another socket (``hold``):
            # its socket is on the way out
            return Outcome()
        if event == "easyrtcAuth":
            state.login_seen = True
        bucket = state.bucket
        if bucket is None:
            return None
        now = self.clock()
        if bucket.take(now):
            return None
        if now - state.window_start > REFUSAL_WINDOW:
            state.window_start = now
            state.refusals = 0
        state.refusals += 1
        state.refused_total += 1
        out = Outcome()
        if has_ack:
            out.reply(error_message(MSG_REJECT_RATE_LIMIT, self.now_ms(), RATE_LIMIT_TEXT))
        limit = self.options.message_refusals_before_close
        authenticated = peer.connection is not None
        if limit and state.refusals >= limit and not state.closing:
            state.closing = True
            out.close = True
            log.log(
                logging.INFO if authenticated else logging.DEBUG,
                "closing %s: %d messages over the rate limit within %g s",
                peer.easyrtcid,
                state.refusals,
                REFUSAL_WINDOW,
            )
        else:
            logsafe.refusals.note(
                peer.easyrtcid,
                authenticated,
                "rate-limited %s from %s: %s",
                event,
                peer.easyrtcid,
                MSG_REJECT_RATE_LIMIT,
            )
        return out

    # -- close -------------------------------------------------------------------------------

    def closed(self, peer: Peer) -> None:
        """The socket is gone: uncount it, stop its timer, log its unlogged refusals."""
        state = self.sockets.get(peer.easyrtcid)
        if state is None or state.peer is not peer:  # superseded: counted no more
            return
        del self.sockets[peer.easyrtcid]
        if state.timer is not None:
            state.timer.cancel()
        address = state.address
        if address is not None:
            left = self.per_address.get(address, 1) - 1
            if left > 0:
                self.per_address[address] = left
            else:
                self.per_address.pop(address, None)
        logsafe.refusals.forget(peer.easyrtcid)

    def moved(self, old_id: str, peer: Peer) -> None:
        """``peer``, counted as ``old_id``, resumed the easyrtcid it has now (``hold``): the
        socket that had it (held, or still open) is no longer counted; ``peer`` is, under it."""
        replaced = self.sockets.get(peer.easyrtcid)
        if replaced is not None:
            self.closed(replaced.peer)
        state = self.sockets.pop(old_id, None)
        if state is not None:
            self.sockets[peer.easyrtcid] = state

    # -- the login deadline ------------------------------------------------------------------

    def _login_deadline(self, peer: Peer, link: Link) -> None:
        state = self.sockets.get(peer.easyrtcid)
        if state is None:
            return
        state.timer = None
        if peer.connection is not None or state.login_seen or state.closing:
            return
        state.closing = True
        log.debug(
            "closing %s from %s: no login within %g s",
            peer.easyrtcid,
            link.remote_address,
            self.options.login_timeout,
        )
        self._spawn(self._time_out(link))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(_quietly(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _time_out(self, link: Link) -> None:
        await link.send("easyrtcCmd", error_message(ErrorCode.LOGIN_TIMEOUT, self.now_ms()))
        await link.close()


async def _quietly(coro: Coroutine[Any, Any, None]) -> None:
    """Run a close of ours; the socket may have gone away meanwhile."""
    try:
        await coro
    except Exception:
        log.debug("could not close a socket", exc_info=True)
