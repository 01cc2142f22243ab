"""The aiohttp driver of the Engine.IO protocol (``engineio_protocol``): sockets, HTTP, timers.

Written for throughput: one reader loop per websocket that hands each message to the handler
inline (so a socket's messages are handled in arrival order, one at a time), the heartbeats of
every session on one timer wheel, and sends that never wait for the network.

Sending
    ``EngineSocket.send_packet`` queues the packet in the session; a websocket's frames queued
    during one pass of the event loop go out in one write straight into the asyncio transport
    (no writer task, no ``drain``); a long-polling session's outbox is taken by the next GET.
    Nothing awaits, so a handler pushing to many sockets is never held up by one slow reader.

Slow consumers
    A websocket whose kernel-side backlog (data written earlier and still not taken by the peer)
    exceeds ``max_send_buffer`` bytes when more is to be written, or a polling outbox beyond that
    size (each packet counted with its overhead), is closed at once with reason ``"slow
    consumer"``: its connection is aborted and the handler's ``on_close`` runs. One large frame
    just queued is not a backlog.

Leaving
    A long-polling client whose pending GET's connection closes (a closed tab), or whose POST
    breaks off mid-body, ends its session at once, as the reference does ("poll connection closed
    prematurely"); one that merely pauses between polls keeps the heartbeat rules. A POST body
    must arrive within ``read_timeout`` seconds.

CORS and origins
    Long-polling responses carry ``Access-Control-Allow-Origin`` (the request's origin, with
    credentials allowed) only for origins listed in ``cors_origins``; ``"*"`` answers a literal
    ``*`` without credentials. ``OPTIONS`` preflights are answered. With a list (and no ``*``),
    websocket handshakes from a browser page of another origin are refused (403); pages of the
    server's own host are always allowed. Session ids are unpredictable, so a cross-site page can
    neither read nor write another page's session.

Not supported: JSONP polling (``j`` parameter), cookies, sending binary to clients, compression
(deliberately off: permessage-deflate costs more CPU than it saves on small signaling messages).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import orjson
from aiohttp import ClientError, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from .engineio_protocol import (
    Closed,
    EngineSession,
    Event,
    Message,
    SendResult,
    SessionLimits,
    State,
    TransportKind,
    ws_frame,
)
from .timer_wheel import TimerWheel

__all__ = [
    "EngineHandler",
    "EngineIOServer",
    "EngineSocket",
    "PreparedPacket",
    "ws_frame",
]

log = logging.getLogger("easyrtc_server.transport.engineio")

# -- errors as Engine.IO reports them -------------------------------------------------------------

UNKNOWN_TRANSPORT: Final = 0
UNKNOWN_SID: Final = 1
BAD_HANDSHAKE_METHOD: Final = 2
BAD_REQUEST: Final = 3
FORBIDDEN: Final = 4
UNSUPPORTED_PROTOCOL_VERSION: Final = 5

ERROR_MESSAGES: Final = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}

_CLOSE_GRACE: Final = 2.0
"""Seconds a gracefully closed websocket may take to flush before its connection is aborted."""
_POLL_WATCH_PERIOD: Final = 0.25

GOODBYE_CODES: Final = frozenset((1000, 1001))
"""Websocket close codes of a client that leaves on purpose (normal closure, going away)."""
_NO_QUERY: Final[Mapping[str, str]] = {}
"""Seconds between checks of pending GETs for a closed connection (a closed tab)."""
_NETWORK_ERRORS: Final = (OSError, ClientError, HttpProcessingError, asyncio.IncompleteReadError)
"""What reading a request body raises when the client goes away or sends a broken body."""
# hot-path constants: an enum member looked up on its class costs some 70 ns in Python 3.11
_CLOSED: Final = State.CLOSED
_OVERFLOW: Final = SendResult.OVERFLOW
_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_PACKETS_PER_YIELD: Final = 64
"""A POST's packets are handled in runs of this many, letting other sockets in between."""


class PreparedPacket:
    """An Engine.IO text packet encoded once, to be sent to many sockets.

    ``packet`` is the packet text (type digit first, e.g. ``b'42["ev",1]'``); the websocket
    frame is built on first use and then shared.
    """

    __slots__ = ("_frame", "packet")

    def __init__(self, packet: bytes) -> None:
        self.packet = packet
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        frame = self._frame
        if frame is None:
            frame = self._frame = ws_frame(self.packet)
        return frame


Forward = Callable[[web.Request, str], Awaitable[web.StreamResponse | None]]
"""``(request, sid) -> response``, or None when the request is not forwarded."""


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


# -- one session ----------------------------------------------------------------------------------


class EngineSocket:
    """One Engine.IO session as the driver runs it: the protocol state plus its connections."""

    __slots__ = (
        "_closed_notified",
        "_dispatching",
        "_forget_handle",
        "_loop",
        "_poll_waiter",
        "_post_lock",
        "_probe",
        "_server",
        "_wt",
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
        *,
        framed: bool = True,
    ) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
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
        self._wt: asyncio.Transport | None = None
        self._probe: asyncio.Transport | None = None
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

    # -- sending -------------------------------------------------------------------------------

    def send_packet(self, packet: bytes) -> None:
        """Queue one text packet (type digit first). Never waits; dropped once closed."""
        if self._wt is not None:  # a websocket: frame it here, as ``send_prepared`` does
            result = self.proto.send_frame(ws_frame(packet))
        else:
            result = self.proto.send(packet)
        if result:
            self._after_send(result)

    def send_prepared(self, prepared: PreparedPacket) -> None:
        """Like ``send_packet``, reusing a frame encoded once for many sockets."""
        if self._wt is not None:
            result = self.proto.send_frame(prepared.frame)
        else:
            result = self.proto.send(prepared.packet)
        if result:
            self._after_send(result)

    def _after_send(self, result: SendResult) -> None:
        if result is _OVERFLOW:
            self._closed_by_protocol()
        elif self._wt is not None:
            # Frames queued during one pass of the event loop go out in one write (one
            # syscall): a reader handling a burst of messages answers them all at once.
            self._server._flush_soon(self)
        else:
            self._wake_poll()

    def _flush(self) -> None:
        wt = self._wt
        if wt is None or wt.is_closing():
            self.proto.data_to_send()  # nobody to take it
            return
        backlog = wt.get_write_buffer_size()
        data = self.proto.data_to_send()
        if not data:
            return
        if backlog > self._server.limits.max_send_buffer and not self.closed:
            self.close("slow consumer", graceful=False)
            return
        self._server.bytes_sent += len(data)
        wt.write(data)

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
        server._wheel.cancel(self)
        self._close_connection(graceful)
        if not self._dispatching:
            self._closed_notified = True
            server._spawn(server.handler.on_close(self, self.close_reason))

    def _close_connection(self, graceful: bool) -> None:
        """Let the connection(s) go: flushed and closed, or aborted."""
        server = self._server
        probe = self._probe
        if probe is not None:
            self._probe = None
            probe.abort()
        wt = self._wt
        if wt is not None:
            server._forget(self)
            if not wt.is_closing():
                if graceful:
                    data = self.proto.data_to_send()
                    if data:
                        server.bytes_sent += len(data)
                        wt.write(data)
                    wt.close()
                    self._loop.call_later(_CLOSE_GRACE, wt.abort)
                else:
                    wt.abort()
        else:
            self._close_polling(graceful)

    def _close_polling(self, graceful: bool) -> None:
        server = self._server
        if graceful:
            # findable by its sid until the close packet is taken, or for a little while
            self._forget_handle = self._loop.call_later(
                server.limits.ping_timeout, server._forget, self
            )
        else:
            server._forget(self)
        self._wake_poll()

    async def _notify_closed(self) -> None:
        if not self._closed_notified:
            self._closed_notified = True
            await self._server.handler.on_close(self, self.close_reason)

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
            self._server._wheel.schedule(self, self.proto.next_deadline())
            if data[:1] == b"2":
                self._after_send(SendResult.WAKE)

    async def receive_payload(self, body: bytes, content_type: str) -> bool:
        """Handle a POST body's packets in order; False (session closed) if it is malformed."""
        packets = self.proto.receive_payload(body, content_type)
        if packets is None:
            self._closed_by_protocol()
            return False
        self._dispatching = True
        try:
            for n, (data, binary) in enumerate(packets, 1):
                if self.closed:
                    break
                await self._on_packet(data, binary)
                if n % _PACKETS_PER_YIELD == 0:
                    await asyncio.sleep(0)  # one huge POST must not stall everyone
        finally:
            self._dispatching = False
        if self.closed:
            await self._notify_closed()
        return True

    def _heartbeat(self, now: float) -> None:
        """The timer wheel's call: the session's deadline came."""
        proto = self.proto
        events = proto.handle_timeout(now)
        if events:
            self._closed_by_protocol()
            return
        if proto.closed:
            return
        # a ping may be queued: write it now (a timer callback, no handler is running)
        if self._wt is not None:
            self._flush()
        else:
            self._wake_poll()
        self._server._wheel.schedule(self, proto.next_deadline())


# -- the server -----------------------------------------------------------------------------------


def error_body(code: int) -> bytes:
    """An Engine.IO error response's JSON body."""
    return orjson.dumps({"code": code, "message": ERROR_MESSAGES[code]})


def _ws_response_kwargs(max_msg_size: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "compress": False,
        "autoping": True,
        "max_msg_size": max_msg_size,
        "timeout": _CLOSE_GRACE,
    }
    if "decode_text" in inspect.signature(web.WebSocketResponse.__init__).parameters:
        kwargs["decode_text"] = False
    return kwargs


def _wheel_resolution(limits: SessionLimits) -> float:
    return max(0.005, min(0.25, limits.ping_interval / 10, limits.ping_timeout / 10))


class EngineIOServer:
    """Engine.IO sessions for one ``aiohttp`` application.

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
        ping_interval: float = 5.0,
        ping_timeout: float = 10.0,
        upgrade_timeout: float = 3.0,
        max_http_buffer_size: int = 1_000_000,
        cors_origins: Iterable[str] = (),
        max_send_buffer: int = 4 * 1024 * 1024,
        allow_eio3: bool = True,
        read_timeout: float = 10.0,
        max_poll_packets: int = 0,
        kept_query: Iterable[str] = (),
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
        origins = tuple(cors_origins)
        self._cors_any = "*" in origins
        self._cors_origins = frozenset(o.rstrip("/") for o in origins)
        self.sockets: dict[str, EngineSocket] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws_kwargs = _ws_response_kwargs(self.limits.max_payload)
        self._waiting_polls: dict[EngineSocket, asyncio.BaseTransport] = {}
        self._poll_watch: asyncio.TimerHandle | None = None
        self._dirty: list[EngineSocket] = []
        self.bytes_received = 0
        """Bytes of Engine.IO payload read from clients (websocket frames, POST bodies)."""
        self.bytes_sent = 0
        """Bytes written to clients (websocket frames with their headers, poll bodies)."""
        self.sid_prefix = ""
        """Starts every new sid: a cluster node's id and a dot, so any node can tell the owner."""
        self.forward: Forward | None = None
        """Asked about a request whose sid is not here (a cluster node proxies it to the sid's
        owner); its None answers "Session ID unknown"."""
        """Websocket sessions with frames queued in this pass of the loop (see `_flush_soon`)."""
        self._wheel: TimerWheel[EngineSocket] = TimerWheel(
            _wheel_resolution(self.limits), EngineSocket._heartbeat
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

    # -- mounting ------------------------------------------------------------------------------

    def attach(self, app: web.Application, path: str = "/socket.io/") -> None:
        """Serve Engine.IO at exactly ``path`` (and the same path without its trailing slash)."""
        path = "/" + path.strip("/")
        app.router.add_route("*", path + "/", self.handle_request)
        if path != "/":
            app.router.add_route("*", path, self.handle_request)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Close every session and wait (briefly) for the close handlers."""
        for sock in list(self.sockets.values()):
            sock.close("server shutting down", graceful=True)
        self._wheel.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(_logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, sock: EngineSocket) -> None:
        if self.sockets.get(sock.sid) is sock:
            del self.sockets[sock.sid]
        handle = sock._forget_handle
        if handle is not None:
            sock._forget_handle = None
            handle.cancel()

    def _flush_soon(self, sock: EngineSocket) -> None:
        """Write ``sock``'s frames at the end of this pass of the event loop, with those of every
        other socket written to in it: one callback per pass, not one per socket."""
        dirty = self._dirty
        if not dirty:
            sock._loop.call_soon(self._flush_dirty)
        dirty.append(sock)

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, []
        for sock in dirty:
            try:
                sock._flush()
            except Exception:  # one socket's failure must not hold back the others' frames
                log.exception("could not write to %r", sock)

    def new_sid(self) -> str:
        while True:
            sid = self.sid_prefix + secrets.token_urlsafe(15)
            if sid not in self.sockets:
                return sid

    def _new_socket(self, request: web.BaseRequest, eio: int, kind: TransportKind) -> EngineSocket:
        sock = EngineSocket(self, self.new_sid(), eio, kind, request.remote)
        return self.add_socket(sock, request.query)

    def add_socket(
        self, sock: EngineSocket, query: Mapping[str, str] | None = None
    ) -> EngineSocket:
        """Register a new session (a driver's `EngineSocket`) and start its heartbeats;
        ``query``: its handshake's, of which the ``kept_query`` parameters are kept."""
        if query is not None and self.kept_query:
            kept = {name: query[name] for name in self.kept_query if name in query}
            if kept:
                sock.query = kept
        self.sockets[sock.sid] = sock
        self._wheel.schedule(sock, sock.proto.next_deadline())
        return sock

    def _watch_poll(self, sock: EngineSocket, transport: asyncio.BaseTransport) -> None:
        """Watch a pending GET's connection: aiohttp does not tell a handler its client left."""
        self._waiting_polls[sock] = transport
        if self._poll_watch is None:
            self._poll_watch = sock._loop.call_later(_POLL_WATCH_PERIOD, self._check_polls)

    def _check_polls(self) -> None:
        self._poll_watch = None
        for sock, transport in list(self._waiting_polls.items()):
            if transport.is_closing():
                del self._waiting_polls[sock]
                sock.close("transport close", graceful=False)
        if self._waiting_polls:
            loop = asyncio.get_running_loop()
            self._poll_watch = loop.call_later(_POLL_WATCH_PERIOD, self._check_polls)

    # -- HTTP ----------------------------------------------------------------------------------

    def _cors_headers(self, request: web.BaseRequest) -> dict[str, str]:
        return self.cors_headers(request.headers.get("Origin"))

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of a response to a page of ``origin`` (see CORS and origins)."""
        if origin is None:
            return {}
        if self._cors_any:
            return {"Access-Control-Allow-Origin": "*"}
        if origin.rstrip("/") not in self._cors_origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def _origin_allowed(self, request: web.BaseRequest) -> bool:
        return self.origin_allowed(request.headers.get("Origin"), request.host)

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """May a websocket be opened from a page of ``origin``? (See CORS and origins.)"""
        if not self._cors_origins or self._cors_any:
            return True
        if origin is None or origin.rstrip("/") in self._cors_origins:
            return True
        if urlsplit(origin).netloc == host:
            return True
        log.info("websocket refused: origin %.100r not in cors_origins", origin)
        return False

    def _error(self, request: web.BaseRequest, code: int, status: int = 400) -> web.Response:
        body = error_body(code)
        return web.Response(
            status=status,
            body=body,
            content_type="application/json",
            headers=self._cors_headers(request),
        )

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler for the Engine.IO path."""
        query = request.query
        method = request.method
        if method == "OPTIONS":
            headers = self._cors_headers(request)
            if headers:
                headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                wanted = request.headers.get("Access-Control-Request-Headers")
                if wanted:
                    headers["Access-Control-Allow-Headers"] = wanted
            return web.Response(status=204, headers=headers)
        eio_text = query.get("EIO", "3")
        if eio_text == "4":
            eio = 4
        elif eio_text == "3" and self.allow_eio3:
            eio = 3
        else:
            return self._error(request, UNSUPPORTED_PROTOCOL_VERSION)
        transport = query.get("transport")
        if transport not in ("polling", "websocket"):
            return self._error(request, UNKNOWN_TRANSPORT)
        if "j" in query:  # JSONP polling is not offered
            return self._error(request, BAD_REQUEST)
        sid = query.get("sid")
        if transport == "websocket":
            if method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
                return self._error(request, BAD_REQUEST)
            if not self._origin_allowed(request):
                return self._error(request, FORBIDDEN, status=403)
            if sid is None:
                return await self._ws_handshake(request, eio)
            sock = self.sockets.get(sid)
            if sock is None and self.forward is not None:
                forwarded = await self.forward(request, sid)
                if forwarded is not None:
                    return forwarded
            if sock is None or sock.closed:
                return self._error(request, UNKNOWN_SID)
            return await self._ws_upgrade(request, sock)
        if sid is None:
            if method != "GET":
                return self._error(request, BAD_HANDSHAKE_METHOD)
            return await self._poll_handshake(request, eio)
        sock = self.sockets.get(sid)
        if sock is None:
            if self.forward is not None:
                forwarded = await self.forward(request, sid)
                if forwarded is not None:
                    return forwarded
            return self._error(request, UNKNOWN_SID)
        if sock._wt is not None:
            return self._error(request, BAD_REQUEST)
        if method == "GET":
            return await self._poll(request, sock)
        if method == "POST":
            return await self._post(request, sock)
        return self._error(request, BAD_REQUEST)

    # -- long-polling --------------------------------------------------------------------------

    async def _poll_handshake(self, request: web.Request, eio: int) -> web.Response:
        sock = self._new_socket(request, eio, TransportKind.POLLING)
        await self.open_socket(sock)
        return self._poll_response(request, sock)

    async def open_socket(self, sock: EngineSocket) -> None:
        """Tell the handler a session opened (awaited before its first response/message)."""
        sock._dispatching = True
        try:
            await self.handler.on_open(sock)
        finally:
            sock._dispatching = False
        if sock.closed:
            await sock._notify_closed()

    def _poll_response(self, request: web.BaseRequest, sock: EngineSocket) -> web.Response:
        body = sock.proto.poll_body()
        self.bytes_sent += len(body)
        if sock.proto.finished:
            self._forget(sock)
        return web.Response(
            body=body,
            content_type="text/plain",
            charset="UTF-8",
            headers=self._cors_headers(request),
        )

    async def _poll(self, request: web.Request, sock: EngineSocket) -> web.Response:
        if sock._poll_waiter is not None:
            sock.close("transport error", graceful=False)
            return self._error(request, BAD_REQUEST)
        if sock.proto.poll_should_wait():
            waiter: asyncio.Future[None] = sock._loop.create_future()
            sock._poll_waiter = waiter
            transport = request.transport
            if transport is not None:
                self._watch_poll(sock, transport)
            try:
                await waiter
            finally:
                sock._poll_waiter = None
                self._waiting_polls.pop(sock, None)
            transport = request.transport
            if transport is None or transport.is_closing():
                # The client went away while its poll was pending (a closed tab): the session
                # is over, as the reference's "poll connection closed prematurely".
                sock.close("transport close", graceful=False)
                return web.Response(status=400)
        return self._poll_response(request, sock)

    async def _post(self, request: web.Request, sock: EngineSocket) -> web.Response:
        headers = self._cors_headers(request)
        if sock._post_lock.locked():
            sock.close("transport error", graceful=False)
            return self._error(request, BAD_REQUEST)
        async with sock._post_lock:
            try:
                async with asyncio.timeout(self.read_timeout):
                    body = await _read_limited(request, self.limits.max_payload)
            except TimeoutError:
                log.info("closing %r: POST body not received within %ss", sock, self.read_timeout)
                sock.close("read timeout", graceful=False)
                return web.Response(status=408, headers=headers)
            except _NETWORK_ERRORS as exc:
                # The connection dropped mid-body: the client is gone (as the reference's "data
                # request connection closed prematurely"). Expected: no traceback.
                log.debug("POST of %r aborted: %r", sock, exc)
                sock.close("transport close", graceful=False)
                return web.Response(status=400, headers=headers)
            if body is None:
                sock.close("payload too large", graceful=False)
                return web.Response(status=413, headers=headers)
            self.bytes_received += len(body)
            if sock.closed:  # e.g. the client's close packet after ours
                return web.Response(text="ok", content_type="text/html", headers=headers)
            if not await sock.receive_payload(body, request.content_type):
                return self._error(request, BAD_REQUEST)
        return web.Response(text="ok", content_type="text/html", headers=headers)

    # -- websocket -----------------------------------------------------------------------------

    async def _ws_handshake(self, request: web.Request, eio: int) -> web.StreamResponse:
        ws = web.WebSocketResponse(**self._ws_kwargs)
        if not ws.can_prepare(request).ok:
            return self._error(request, BAD_REQUEST)
        await ws.prepare(request)
        wt = request.transport
        if wt is None or wt.is_closing():
            return ws
        sock = self._new_socket(request, eio, TransportKind.WEBSOCKET)
        sock._wt = wt
        sock._loop.call_soon(sock._flush)  # the open packet
        await self.open_socket(sock)
        if not sock.closed:
            await self._ws_loop(sock, ws)
        return ws

    async def _ws_upgrade(self, request: web.Request, sock: EngineSocket) -> web.StreamResponse:
        if sock._wt is not None or sock._probe is not None:
            return self._error(request, BAD_REQUEST)
        ws = web.WebSocketResponse(**self._ws_kwargs)
        if not ws.can_prepare(request).ok:
            return self._error(request, BAD_REQUEST)
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws
        wt: asyncio.Transport = transport
        if wt.is_closing() or sock.closed or sock._probe is not None:
            wt.abort()
            return ws
        sock._probe = wt
        timer = sock._loop.call_later(self.upgrade_timeout, wt.abort)
        proto = sock.proto
        upgraded = False
        try:
            while True:
                msg = await ws.receive()
                if sock.closed or sock._probe is not wt or msg.type is not WSMsgType.TEXT:
                    break
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                if data == b"5":
                    # Let a POST being handled finish, so messages stay in order.
                    async with sock._post_lock:
                        if sock.closed or proto.receive_probe(data) is not None:
                            break
                        if proto.transport is not TransportKind.WEBSOCKET:
                            break
                        timer.cancel()
                        sock._probe = None
                        sock._wt = wt
                        sock._flush()
                        sock._wake_poll()
                        upgraded = True
                    break
                reply = proto.receive_probe(data)
                if reply is None:
                    break
                wt.write(reply)
                sock._wake_poll()  # a held GET is answered with a noop
        finally:
            timer.cancel()
            if not upgraded and sock._probe is wt:
                sock._probe = None
                proto.abort_upgrade()
                wt.abort()
        if upgraded:
            await self._ws_loop(sock, ws)
        return ws

    async def _ws_loop(self, sock: EngineSocket, ws: web.WebSocketResponse) -> None:
        """Read one websocket until it ends; hand messages over inline, in order."""
        on_message = self.handler.on_message
        proto = sock.proto
        eio4 = proto.eio >= 4
        loop = sock._loop
        reason = "transport close"
        try:
            while True:
                msg = await ws.receive()
                if proto.state is _CLOSED:
                    break
                kind = msg.type
                if kind is _TEXT:
                    data = msg.data
                    if type(data) is not bytes:
                        data = data.encode()
                    self.bytes_received += len(data)
                    sock._dispatching = True
                    try:
                        if data[:1] == b"4":
                            # The hot path: a message.
                            if not eio4:
                                proto.last_seen = loop.time()
                            await on_message(sock, data[1:], False)
                        elif data == b"3" and eio4:
                            # a pong, from every socket every ping interval: no coroutine
                            proto.receive_packet(data, False, loop.time())
                            self._wheel.schedule(sock, proto.next_deadline())
                        else:
                            await sock._on_packet(data, False)
                    finally:
                        sock._dispatching = False
                    if sock.closed:
                        break
                elif kind is _BINARY:
                    self.bytes_received += len(msg.data)
                    sock._dispatching = True
                    try:
                        events = proto.receive_binary_frame(msg.data, loop.time())
                        await sock._dispatch(events)
                    finally:
                        sock._dispatching = False
                    if sock.closed:
                        break
                else:
                    if kind is WSMsgType.ERROR:
                        reason = "transport error"
                        if ws.close_code == 1009:
                            reason = "payload too large"
                    elif kind is WSMsgType.CLOSE and msg.data in GOODBYE_CODES:
                        reason = "client close"  # a goodbye (a page closed, a disconnect)
                    break
        finally:
            if not sock.closed:
                sock._dispatching = True  # we notify below, inline
                sock.close(reason, graceful=False)
                sock._dispatching = False
            await sock._notify_closed()


async def _read_limited(request: web.BaseRequest, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _logged(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("error in Engine.IO close handler")
