"""The Engine.IO session layer both drivers share: sessions, their registry, timers, sends.

`EngineIOServer` holds the sessions (`EngineSocket`, each the sans-I/O `EngineSession` plus its
connections), their heartbeats on one timer wheel, the end-of-pass flush of websocket frames,
sid generation, CORS and request routing (``engineio_routing``). Everything a long-polling GET
or POST, an upgrade probe or a websocket message does to a session is here, once; a driver
(``engineio.py`` for aiohttp, ``asgi_engineio.py`` for ASGI) only moves bytes: it routes a
request, reads bodies and messages, writes the `HttpReply` it is handed, and gives a session its
websocket as a `WebSocketChannel`.

Sending
    ``EngineSocket.send_packet`` queues the packet in the session; a websocket's frames queued
    during one pass of the event loop go out together at the end of the pass (one write per
    socket, one callback for all sockets); a long-polling session's outbox is taken by the next
    GET. Nothing awaits, so a handler pushing to many sockets is never held up by one slow reader.

Slow consumers
    A queue beyond ``max_send_buffer`` bytes (a polling outbox, each packet counted with its
    overhead; a websocket whose connection has that much unsent) closes the session at once with
    reason ``"slow consumer"``: its connection is aborted and the handler's ``on_close`` runs.

Leaving
    A long-polling client whose pending GET's connection closes (a closed tab), or whose POST
    breaks off mid-body, ends its session at once, as the reference does ("poll connection closed
    prematurely"); one that merely pauses between polls keeps the heartbeat rules. A POST body
    must arrive within ``read_timeout`` seconds.

Not supported: JSONP polling (``j`` parameter), cookies, sending binary to clients, compression
(deliberately off: permessage-deflate costs more CPU than it saves on small signaling messages).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .engineio_protocol import (
    ENGINEIO_DEFAULTS,
    READ_TIMEOUT,
    UPGRADE_TIMEOUT,
    Closed,
    EngineSession,
    Event,
    Message,
    SendResult,
    SessionLimits,
    SessionState,
    SplitPacket,
    TransportKind,
    ws_frame,
)
from .engineio_routing import (
    BAD_REQUEST,
    SHUTTING_DOWN,
    CorsPolicy,
    Handshake,
    Refuse,
    Route,
    error_body,
    route_request,
)
from .timer_wheel import TimerWheel

__all__ = [
    "ClientGone",
    "EngineHandler",
    "EngineIOServer",
    "EngineSocket",
    "HttpReply",
    "WebSocketChannel",
]

log = logging.getLogger("easyrtc_server.transport.engineio")

# hot-path constants: an enum member looked up on its class costs some 70 ns in Python 3.11
_CLOSED: Final = SessionState.CLOSED
_OVERFLOW: Final = SendResult.OVERFLOW
_WAKE: Final = SendResult.WAKE
_NO_QUERY: Final[Mapping[str, str]] = {}

GOODBYE_CODES: Final = frozenset((1000, 1001))
"""Websocket close codes of a client that leaves on purpose (normal closure, going away): the
session ends as ``client close``, a goodbye, not a drop (a held resume key is released)."""
_PACKETS_PER_YIELD: Final = 64
"""A POST's packets are handled in runs of this many, letting other sockets in between."""


class ClientGone(Exception):
    """Raised by a driver's body reader: the client went away, or sent a broken body."""


@dataclass(frozen=True, slots=True)
class HttpReply:
    """An HTTP response for a driver to write (it adds the CORS headers)."""

    status: int
    body: bytes = b""
    content_type: str | None = None

    @classmethod
    def error(cls, code: int, status: int = 400) -> HttpReply:
        return cls(status, error_body(code), "application/json")


OK: Final = HttpReply(200, b"ok", "text/html; charset=utf-8")
BAD_REQUEST_REPLY: Final = HttpReply.error(BAD_REQUEST)
POLL_CONTENT_TYPE: Final = "text/plain; charset=UTF-8"


class EngineHandler(Protocol):
    """What sits on top of Engine.IO (the Socket.IO layer)."""

    async def on_open(self, sock: EngineSocket) -> None:
        """A session opened; the open packet is already queued. May send.

        Awaited before the handshake response goes out (long-polling) or the first message is
        read (websocket).
        """

    async def on_message(self, sock: EngineSocket, data: bytes, binary: bool) -> None:
        """One message (text as UTF-8 bytes). Awaited inline, one at a time per socket.

        Must not raise: a handler that finds garbage closes the socket.
        """

    async def on_close(self, sock: EngineSocket, reason: str) -> None:
        """The session is over; called once, never while ``on_message`` runs for it."""


class WebSocketChannel(Protocol):
    """A session's websocket, as a driver writes to it."""

    @property
    def framed(self) -> bool:
        """Takes websocket frames (`EngineSession.data_to_send`), else packets
        (``packets_to_send``: the server frames them)."""

    def flush(self, sock: EngineSocket) -> None:
        """Write (or start writing) what ``sock`` has queued: the end of an event-loop pass."""

    def close(self, sock: EngineSocket, graceful: bool) -> None:
        """The session closed: send what is queued then close (graceful), or abort."""

    async def send_probe_reply(self, data: bytes) -> None:
        """Send ``3probe`` during an upgrade (a frame when ``framed``, else the packet)."""

    def abort(self) -> None:
        """A probe that did not complete its upgrade: drop the connection."""


# -- one session ----------------------------------------------------------------------------------


class EngineSocket:
    """One Engine.IO session as the drivers run it: the protocol state plus its connections."""

    __slots__ = (
        "_closed_notified",
        "_conn",
        "_dispatching",
        "_forget_handle",
        "_frames",
        "_loop",
        "_poll_waiter",
        "_post_lock",
        "_probe",
        "_server",
        "proto",
        "query",
        "remote_address",
        "user",
    )

    def __init__(
        self,
        server: EngineIOServer,
        sid: str,
        eio: int,
        transport: TransportKind,
        remote: str | None,
        connection: WebSocketChannel | None = None,
    ) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        framed = connection.framed if connection is not None else True
        self.proto = EngineSession(
            sid, eio, transport, server.limits, self._loop.time(), framed=framed
        )
        self.remote_address = remote
        self.query: Mapping[str, str] = _NO_QUERY
        """The handshake's query parameters the server keeps (``kept_query``)."""
        self.user: Any = None
        """Free for the handler's per-session state."""
        self._closed_notified = False
        self._dispatching = False
        self._conn = connection
        self._frames = connection is not None and framed
        """Sends go to the websocket as frames (else to the session's packet queue)."""
        self._probe: WebSocketChannel | None = None
        self._poll_waiter: asyncio.Future[None] | None = None
        self._post_lock = asyncio.Lock()
        self._forget_handle: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        proto = self.proto
        state = "closed" if proto.closed else proto.transport.value
        return f"<EngineSocket {proto.sid} EIO{proto.eio} {state}>"

    @property
    def sid(self) -> str:
        return self.proto.sid

    @property
    def eio(self) -> int:
        return self.proto.eio

    @property
    def closed(self) -> bool:
        return self.proto.state is _CLOSED

    @property
    def close_reason(self) -> str:
        return self.proto.close_reason

    @property
    def transport_name(self) -> str:
        return self.proto.transport.value

    @property
    def connection(self) -> WebSocketChannel | None:
        """The websocket (None while long-polling)."""
        return self._conn

    @property
    def on_websocket(self) -> bool:
        return self._conn is not None

    @property
    def probing(self) -> bool:
        return self._probe is not None

    # -- sending -------------------------------------------------------------------------------

    def send_packet(self, packet: bytes) -> None:
        """Queue one text packet (type digit first). Never waits; dropped once closed."""
        if self._frames:  # a websocket taking frames: frame it here
            result = self.proto.send_frame(ws_frame(packet))
        else:
            result = self.proto.send(packet)
        if result:
            self._after_send(result)

    def send_split(self, packet: SplitPacket, middle: bytes) -> None:
        """Queue ``packet`` with this session's ``middle`` (see `SplitPacket`): what
        ``send_packet(packet.packet(middle))`` queues, without framing it here."""
        if self._frames:
            result = self.proto.send_frame(packet.frame(middle))
        else:
            result = self.proto.send(packet.packet(middle))
        if result:
            self._after_send(result)

    def _after_send(self, result: SendResult) -> None:
        if result is _OVERFLOW:
            self._closed_by_protocol()
        elif self._conn is not None:
            # Frames queued during one pass of the event loop go out in one write (one
            # syscall): a reader handling a burst of messages answers them all at once.
            self._server.flush_soon(self)
        else:
            self._wake_poll()

    def flush(self) -> None:
        """Write what is queued to the websocket now (nothing while long-polling)."""
        conn = self._conn
        if conn is not None:
            conn.flush(self)

    def _wake_poll(self) -> None:
        waiter = self._poll_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- closing -------------------------------------------------------------------------------

    def close(self, reason: str = "forced close", *, graceful: bool = True) -> None:
        """End the session. ``graceful`` lets queued data (and a close frame/packet) go out first.

        The handler's ``on_close`` follows once (after a running ``on_message``).
        """
        if self.closed:
            return
        self.proto.close(reason, graceful=graceful)
        self._finish_close(graceful)

    def _closed_by_protocol(self) -> None:
        self._finish_close(graceful=False)

    def _finish_close(self, graceful: bool) -> None:
        server = self._server
        server.wheel.cancel(self)
        probe = self._probe
        if probe is not None:
            self._probe = None
            probe.abort()
        conn = self._conn
        if conn is not None:
            server.forget(self)
            conn.close(self, graceful)
        elif graceful:
            # findable by its sid until the close packet is taken, or for a little while
            self._forget_handle = self._loop.call_later(
                server.limits.ping_timeout, server.forget, self
            )
            self._wake_poll()
        else:
            server.forget(self)
            self._wake_poll()
        if not self._dispatching:
            self._closed_notified = True
            server.spawn(server.handler.on_close(self, self.close_reason))

    def forgotten(self) -> None:
        """The server has dropped this socket from its registry: no delayed forget is due."""
        handle = self._forget_handle
        if handle is not None:
            self._forget_handle = None
            handle.cancel()

    async def _notify_closed(self) -> None:
        if not self._closed_notified:
            self._closed_notified = True
            await self._server.handler.on_close(self, self.close_reason)

    # -- opening -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Tell the handler the session opened (awaited before its first response/message)."""
        self._dispatching = True
        try:
            await self._server.handler.on_open(self)
        finally:
            self._dispatching = False
        if self.closed:
            await self._notify_closed()

    # -- receiving -----------------------------------------------------------------------------

    async def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is Message:
                await self._server.handler.on_message(self, event.data, event.binary)
            elif type(event) is Closed:
                self._closed_by_protocol()

    async def _on_packet(self, data: bytes, binary: bool) -> None:
        """One packet from the client (not the probe phase of an upgrade)."""
        events = self.proto.receive_packet(data, binary, self._loop.time())
        if events:
            await self._dispatch(events)
        if not binary and data[:1] in (b"2", b"3") and not self.closed:
            # a pong moves the next ping; a revision 3 ping queued a pong
            self._server.wheel.schedule(self, self.proto.next_deadline())
            if data[:1] == b"2":
                self._after_send(_WAKE)

    async def receive_text(self, data: bytes) -> None:
        """One text message from the websocket (UTF-8 bytes): the read loops' hot path."""
        server = self._server
        server.bytes_received += len(data)
        proto = self.proto
        self._dispatching = True
        try:
            if data[:1] == b"4":  # a message
                if proto.eio < 4:
                    proto.last_seen = self._loop.time()
                await server.on_message(self, data[1:], False)
            elif data == b"3" and proto.eio >= 4:
                # a pong, from every socket every ping interval: no coroutine
                proto.receive_packet(data, False, self._loop.time())
                server.wheel.schedule(self, proto.next_deadline())
            else:
                await self._on_packet(data, False)
        finally:
            self._dispatching = False

    async def receive_binary(self, data: bytes) -> None:
        """One binary message from the websocket."""
        self._server.bytes_received += len(data)
        self._dispatching = True
        try:
            await self._dispatch(self.proto.receive_binary_frame(data, self._loop.time()))
        finally:
            self._dispatching = False

    async def connection_lost(self, reason: str) -> None:
        """The websocket's reader ends: close (if still open) and notify the handler, inline."""
        if not self.closed:
            self._dispatching = True  # we notify below, inline
            self.close(reason, graceful=False)
            self._dispatching = False
        await self._notify_closed()

    async def receive_payload(self, body: bytes, content_type: str) -> bool:
        """Handle a POST body's packets in order, decoding each as it comes (see
        `EngineSession.receive_payload`); False (session closed) at a malformed one."""
        packets = self.proto.receive_payload(body, content_type)
        malformed = False
        n = 0
        self._dispatching = True
        try:
            while not self.closed:
                try:
                    data, binary = next(packets)
                except StopIteration:
                    break
                except ValueError:
                    malformed = True
                    self._closed_by_protocol()
                    break
                await self._on_packet(data, binary)
                n += 1
                if n % _PACKETS_PER_YIELD == 0:
                    await asyncio.sleep(0)  # one huge POST must not stall everyone
        finally:
            self._dispatching = False
        if self.closed:
            await self._notify_closed()
        return not malformed

    def heartbeat(self, now: float) -> None:
        """The timer wheel's call: the session's deadline came."""
        proto = self.proto
        events = proto.handle_timeout(now)
        if events:
            self._closed_by_protocol()
            return
        if proto.closed:
            return
        # a ping may be queued: write it now (a timer callback, no handler is running)
        if self._conn is not None:
            self._conn.flush(self)
        else:
            self._wake_poll()
        self._server.wheel.schedule(self, proto.next_deadline())

    # -- long-polling --------------------------------------------------------------------------

    def poll_reply(self) -> HttpReply:
        """The response to a GET now: what is queued (or the close packet, or a noop)."""
        body = self.proto.poll_body()
        self._server.bytes_sent += len(body)
        if self.proto.finished:
            self._server.forget(self)
        return HttpReply(200, body, POLL_CONTENT_TYPE)

    async def take_poll(
        self,
        client_gone: Callable[[], Awaitable[object]],
        connected: Callable[[], bool] | None = None,
    ) -> HttpReply:
        """A GET: held until something is queued; ``client_gone()`` (awaited only while held)
        ends when the client leaves, which ends the session (a closed tab), as does a held GET
        whose ``connected()`` is false once it is woken."""
        if self._poll_waiter is not None:
            self.close("transport error", graceful=False)
            return BAD_REQUEST_REPLY
        if self.proto.poll_should_wait():
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._poll_waiter = waiter
            gone = asyncio.ensure_future(client_gone())
            try:
                await asyncio.wait((waiter, gone), return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._poll_waiter = None
                gone.cancel()
            if (gone.done() and not gone.cancelled()) or (
                connected is not None and not connected()
            ):
                # The client went away while its poll was pending (a closed tab): the session
                # is over, as the reference's "poll connection closed prematurely".
                self.close("transport close", graceful=False)
                return HttpReply(400)
        return self.poll_reply()

    async def take_post(
        self, read_body: Callable[[int], Awaitable[bytes | None]], content_type: str
    ) -> HttpReply:
        """A POST: ``read_body(limit)`` returns the body, None when longer than ``limit``, or
        raises `ClientGone`. Its packets are handled in order, one POST at a time."""
        server = self._server
        if self._post_lock.locked():
            self.close("transport error", graceful=False)
            return BAD_REQUEST_REPLY
        async with self._post_lock:
            try:
                async with asyncio.timeout(server.read_timeout):
                    body = await read_body(server.limits.max_payload)
            except TimeoutError:
                log.info("closing %r: POST body not received within %ss", self, server.read_timeout)
                self.close("read timeout", graceful=False)
                return HttpReply(408)
            except ClientGone as exc:
                # The connection dropped mid-body: the client is gone (as the reference's "data
                # request connection closed prematurely"). Expected: no traceback.
                log.debug("POST of %r aborted: %r", self, exc.__cause__ or exc)
                self.close("transport close", graceful=False)
                return HttpReply(400)
            if body is None:
                self.close("payload too large", graceful=False)
                return HttpReply(413)
            server.bytes_received += len(body)
            if self.closed:  # e.g. the client's close packet after ours
                return OK
            if not await self.receive_payload(body, content_type):
                return BAD_REQUEST_REPLY
        return OK

    # -- upgrading -----------------------------------------------------------------------------

    async def upgrade(
        self, probe: WebSocketChannel, next_text: Callable[[], Awaitable[bytes | None]]
    ) -> bool:
        """Run an upgrade's probe exchange on the new websocket ``probe``; True once the
        session is on it. ``next_text()`` is the websocket's next text message (None: anything
        else, or the end). A probe that fails is aborted."""
        proto = self.proto
        if self.closed or self._probe is not None or self._conn is not None:
            probe.abort()
            return False
        self._probe = probe
        proto.framed = probe.framed  # the outbox becomes what this connection takes
        upgraded = False
        try:
            async with asyncio.timeout(self._server.upgrade_timeout) as deadline:
                while True:
                    data = await next_text()
                    if data is None or self.closed or self._probe is not probe:
                        break
                    if data == b"5":
                        upgraded = await self._switch_to(probe)
                        break
                    reply = proto.receive_probe(data)
                    if reply is None:
                        break
                    await probe.send_probe_reply(reply)
                    # The client, told ``3probe``, pauses polling and then sends ``5``: from
                    # now on it neither polls nor posts until the upgrade completes, so aborting
                    # the probe would leave it deaf and mute until its ping timeout (engine.io-
                    # client does not resume a paused transport after a failed probe). The
                    # session's heartbeat bounds the wait instead: a client that never sends
                    # ``5`` never answers a ping either, and the session's close aborts the probe.
                    deadline.reschedule(None)
                    self._wake_poll()  # a held GET is answered with a noop
        except TimeoutError:
            pass
        finally:
            if not upgraded and self._probe is probe:
                self._probe = None
                proto.abort_upgrade()
                probe.abort()
        if upgraded:
            probe.flush(self)  # what the outbox held
            self._wake_poll()
        return upgraded

    async def _switch_to(self, probe: WebSocketChannel) -> bool:
        """The upgrade packet came on ``probe``: the session moves to it (True), unless it
        closed meanwhile. A POST being handled finishes first, so messages stay in order."""
        async with self._post_lock:
            proto = self.proto
            if self.closed or proto.receive_probe(b"5") is not None:
                return False
            if proto.transport is not TransportKind.WEBSOCKET:
                return False
            self._probe = None
            self._conn = probe
            self._frames = probe.framed
            return True


# -- the registry ---------------------------------------------------------------------------------

SHUTTING_DOWN_REFUSAL: Final = Refuse(SHUTTING_DOWN)


def _wheel_resolution(limits: SessionLimits) -> float:
    return max(0.005, min(0.25, limits.ping_interval / 10, limits.ping_timeout / 10))


class EngineIOServer:
    """The Engine.IO sessions of one server, whichever driver serves their requests.

    Times are in seconds. ``max_send_buffer`` is the slow-consumer limit in bytes (see the module
    documentation); ``max_http_buffer_size`` bounds one received message (websocket) or one POST
    body (long-polling): a bigger one closes the socket. ``read_timeout`` bounds the time a POST
    body may take to arrive. ``max_poll_packets`` caps the packets of one poll response (0: no
    cap, as Node's engine.io; python-engineio's client refuses more than 16).
    """

    def __init__(
        self,
        handler: EngineHandler,
        *,
        ping_interval: float = ENGINEIO_DEFAULTS.ping_interval,
        ping_timeout: float = ENGINEIO_DEFAULTS.ping_timeout,
        upgrade_timeout: float = UPGRADE_TIMEOUT,
        max_http_buffer_size: int = ENGINEIO_DEFAULTS.max_payload,
        cors_origins: Iterable[str] = (),
        max_send_buffer: int = ENGINEIO_DEFAULTS.max_send_buffer,
        allow_eio3: bool = True,
        read_timeout: float = READ_TIMEOUT,
        max_poll_packets: int = ENGINEIO_DEFAULTS.max_poll_packets,
        kept_query: Iterable[str] = (),
        accepting: Callable[[], bool] = lambda: True,
    ) -> None:
        if ping_interval <= 0 or ping_timeout <= 0 or upgrade_timeout <= 0 or read_timeout <= 0:
            raise ValueError(
                "ping_interval, ping_timeout, upgrade_timeout and read_timeout must be > 0"
            )
        if max_http_buffer_size <= 0 or max_send_buffer <= 0 or max_poll_packets < 0:
            raise ValueError(
                "max_http_buffer_size and max_send_buffer must be > 0, max_poll_packets >= 0"
            )
        self.handler = handler
        self.on_message = handler.on_message
        """The handler's ``on_message``, bound once (the hot path)."""
        self.limits = SessionLimits(
            ping_interval=float(ping_interval),
            ping_timeout=float(ping_timeout),
            max_payload=int(max_http_buffer_size),
            max_send_buffer=int(max_send_buffer),
            max_poll_packets=int(max_poll_packets),
        )
        self.upgrade_timeout = float(upgrade_timeout)
        self.read_timeout = float(read_timeout)
        self.allow_eio3 = allow_eio3
        self.kept_query = tuple(kept_query)
        """Handshake query parameters kept on the session (``EngineSocket.query``)."""
        self.accepting = accepting
        """False while the server drains: a handshake is refused (``SHUTTING_DOWN``, 503) so
        that its client goes to another node at once instead of being closed after it
        connected; the sessions already open go on."""
        self.cors = CorsPolicy(cors_origins)
        self.sockets: dict[str, EngineSocket] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty: list[EngineSocket] = []
        """Websocket sessions with frames queued in this pass of the loop (see `flush_soon`)."""
        self.bytes_received = 0
        """Bytes of Engine.IO payload read from clients (websocket messages, POST bodies)."""
        self.bytes_sent = 0
        """Bytes written to clients (websocket frames or messages, poll bodies)."""
        self.sid_prefix = ""
        """Starts every new sid: a cluster node's id and a dot, so any node can tell the owner."""
        self.wheel: TimerWheel[EngineSocket] = TimerWheel(
            _wheel_resolution(self.limits), EngineSocket.heartbeat
        )

    @property
    def ping_interval(self) -> float:
        return self.limits.ping_interval

    @property
    def ping_timeout(self) -> float:
        return self.limits.ping_timeout

    @property
    def max_http_buffer_size(self) -> int:
        return self.limits.max_payload

    @property
    def max_send_buffer(self) -> int:
        return self.limits.max_send_buffer

    # -- requests ------------------------------------------------------------------------------

    def route(
        self,
        method: str,
        query: Mapping[str, str],
        *,
        upgrade: bool,
        origin: str | None,
        host: str,
        access_control_request_headers: str | None = None,
    ) -> Route[EngineSocket]:
        """What to do with a request (`route_request` against these sessions and options); a
        handshake is refused while the server does not accept new sessions (``accepting``)."""
        route = route_request(
            method,
            query,
            upgrade=upgrade,
            origin=origin,
            host=host,
            sessions=self.sockets,
            cors=self.cors,
            allow_eio3=self.allow_eio3,
            access_control_request_headers=access_control_request_headers,
        )
        if type(route) is Handshake and not self.accepting():
            return SHUTTING_DOWN_REFUSAL
        return route

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of a response to a page of ``origin``."""
        return self.cors.headers(origin)

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """May a websocket be opened from a page of ``origin``?"""
        return self.cors.websocket_allowed(origin, host)

    def new_sid(self) -> str:
        while True:
            sid = self.sid_prefix + secrets.token_urlsafe(15)
            if sid not in self.sockets:
                return sid

    def open_session(
        self,
        eio: int,
        remote: str | None,
        connection: WebSocketChannel | None = None,
        query: Mapping[str, str] | None = None,
    ) -> EngineSocket:
        """A new registered session: long-polling, or on ``connection`` (a websocket, whose
        open packet goes out at the end of this pass). Then ``await sock.open()``. ``query``:
        the handshake's, of which the ``kept_query`` parameters are kept on the session."""
        kind = TransportKind.POLLING if connection is None else TransportKind.WEBSOCKET
        sock = EngineSocket(self, self.new_sid(), eio, kind, remote, connection)
        if query and self.kept_query:
            kept = {name: query[name] for name in self.kept_query if name in query}
            if kept:
                sock.query = kept
        self.sockets[sock.sid] = sock
        self.wheel.schedule(sock, sock.proto.next_deadline())
        if connection is not None:
            self.flush_soon(sock)
        return sock

    # -- bookkeeping ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background; its errors are logged; shutdown waits for it."""
        task = asyncio.ensure_future(_logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, sock: EngineSocket) -> None:
        """Drop ``sock`` from the registry (its sid is unknown from now on)."""
        if self.sockets.get(sock.sid) is sock:
            del self.sockets[sock.sid]
        sock.forgotten()

    def flush_soon(self, sock: EngineSocket) -> None:
        """Write ``sock``'s frames at the end of this pass of the event loop, with those of every
        other socket written to in it: one callback per pass, not one per socket."""
        dirty = self._dirty
        if not dirty:
            asyncio.get_running_loop().call_soon(self._flush_dirty)
        dirty.append(sock)

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        for sock in dirty:
            try:
                sock.flush()
            except Exception:  # one socket's failure must not hold back the others' frames
                log.exception("could not write to %r", sock)

    async def shutdown(self) -> None:
        """Close every session and wait (briefly) for the close handlers."""
        for sock in list(self.sockets.values()):
            sock.close("server shutting down", graceful=True)
        self.wheel.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


async def _logged(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("error in Engine.IO close handler")
