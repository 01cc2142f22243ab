"""A lean Engine.IO server (protocol revisions 4 and 3) on ``aiohttp.web``.

Written for throughput: one reader loop per websocket that hands each message to the handler
inline (so a socket's messages are handled in arrival order, one at a time), heartbeat timers per
socket rather than per message, and sends that never wait for the network.

Sending
    ``EngineSocket.send_packet`` writes the websocket frame straight into the socket's asyncio
    transport (no queue, no writer task, no ``drain``), or appends the packet to the long-polling
    outbox that the next GET takes. Nothing awaits, so a handler pushing to many sockets is never
    held up by one slow reader.

Slow consumers
    A socket whose unsent data grows beyond ``max_send_buffer`` bytes (the transport's write
    buffer for a websocket, the outbox for long-polling) is closed at once with reason
    ``"slow consumer"``: its connection is aborted and the handler's ``on_close`` runs. Data a
    peer does not read is never kept without bound.

Revisions
    The ``EIO`` query parameter selects the revision (missing means 3). In revision 4 the server
    pings every ``ping_interval`` and closes a socket that does not pong within ``ping_timeout``;
    in revision 3 the client pings, the server pongs and closes a socket that sent nothing for
    ``ping_interval + ping_timeout``. Long-polling payloads are ``\\x1e``-separated (4) or
    length-prefixed (3, lengths in UTF-16 code units as JavaScript counts them; the binary
    ``application/octet-stream`` payload and ``b``-prefixed base64 packets are decoded when a
    client sends them). The server itself only ever sends text.

CORS
    Long-polling responses carry ``Access-Control-Allow-Origin`` (the request's origin, with
    credentials allowed) only for origins listed in ``cors_origins`` (``"*"`` allows any), and
    ``OPTIONS`` preflights are answered. With no list, browsers keep polling same-origin. Session
    ids are unpredictable, so a cross-site page can neither read nor write another page's session.
    Websocket upgrades are accepted from any origin, as the reference deployment does.

Not supported: JSONP polling (``j`` parameter), cookies, sending binary to clients, compression
(deliberately off: permessage-deflate costs more CPU than it saves on small signaling messages).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
import secrets
import struct
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, Final, Protocol

import orjson
from aiohttp import ClientError, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

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

# -- websocket framing ----------------------------------------------------------------------------

_H16 = struct.Struct("!BBH").pack
_H64 = struct.Struct("!BBQ").pack
_WS_CLOSE_NORMAL: Final = b"\x88\x02\x03\xe8"  # close frame, code 1000
_RECORD_SEPARATOR: Final = b"\x1e"
_MAX_PACKETS_PER_POLL: Final = 16
"""At most this many packets in one long-polling response (python-engineio refuses more)."""
_CLOSE_GRACE: Final = 2.0
"""Seconds a gracefully closed websocket may take to flush before its connection is aborted."""


_POLL_WATCH_PERIOD: Final = 0.25
"""Seconds between checks of pending GETs for a closed connection (a closed tab)."""
_NETWORK_ERRORS: Final = (OSError, ClientError, HttpProcessingError, asyncio.IncompleteReadError)
"""What reading a request body raises when the client goes away or sends a broken body."""

_SHORT_HEADERS: Final = tuple(bytes((0x81, n)) for n in range(126))


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, final websocket text frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return _SHORT_HEADERS[n] + payload
    if n < 65536:
        return _H16(0x81, 126, n) + payload
    return _H64(0x81, 127, n) + payload


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
    """One Engine.IO session, on long-polling or websocket."""

    __slots__ = (
        "_close_queued",
        "_closed_notified",
        "_dispatching",
        "_forget_handle",
        "_frames",
        "_last_seen",
        "_loop",
        "_outbox",
        "_outbox_bytes",
        "_ping_handle",
        "_poll_waiter",
        "_post_lock",
        "_probe",
        "_server",
        "_timeout_handle",
        "_upgrading",
        "_wt",
        "close_reason",
        "closed",
        "eio",
        "remote_address",
        "sid",
        "transport_name",
        "user",
    )

    def __init__(
        self, server: EngineIOServer, sid: str, eio: int, transport_name: str, remote: str | None
    ) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self.sid = sid
        self.eio = eio
        self.transport_name = transport_name
        self.remote_address = remote
        self.user: Any = None
        """Free for the handler's per-session state."""
        self.closed = False
        self.close_reason = ""
        self._closed_notified = False
        self._close_queued = False
        self._dispatching = False
        self._wt: asyncio.Transport | None = None
        self._frames: list[bytes] = []
        self._probe: asyncio.Transport | None = None
        self._upgrading = False
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._poll_waiter: asyncio.Future[None] | None = None
        self._post_lock = asyncio.Lock()
        self._ping_handle: asyncio.TimerHandle | None = None
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._forget_handle: asyncio.TimerHandle | None = None
        self._last_seen = self._loop.time()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.transport_name
        return f"<EngineSocket {self.sid} EIO{self.eio} {state}>"

    # -- sending -------------------------------------------------------------------------------

    def send_packet(self, packet: bytes) -> None:
        """Queue one text packet (type digit first). Never waits; dropped once closed."""
        if self.closed:
            return
        if self._wt is not None:
            self._queue_frame(ws_frame(packet))
            return
        self._outbox.append(packet)
        self._outbox_bytes += len(packet)
        if self._outbox_bytes > self._server.max_send_buffer:
            self.close("slow consumer", graceful=False)
            return
        waiter = self._poll_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send_prepared(self, prepared: PreparedPacket) -> None:
        """Like ``send_packet``, reusing a frame encoded once for many sockets."""
        if self.closed:
            return
        if self._wt is not None:
            self._queue_frame(prepared.frame)
        else:
            self.send_packet(prepared.packet)

    def _queue_frame(self, frame: bytes) -> None:
        # Frames queued during one pass of the event loop go out in one write (one syscall):
        # a reader handling a burst of messages answers them all at once.
        frames = self._frames
        frames.append(frame)
        if len(frames) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        frames = self._frames
        if not frames:
            return
        self._frames = []
        wt = self._wt
        if (self.closed and not self._close_queued) or wt is None or wt.is_closing():
            return
        wt.write(frames[0] if len(frames) == 1 else b"".join(frames))
        if wt.get_write_buffer_size() > self._server.max_send_buffer and not self.closed:
            self.close("slow consumer", graceful=False)

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this socket and not yet handed to the kernel."""
        wt = self._wt
        if wt is not None:
            return wt.get_write_buffer_size() + sum(map(len, self._frames))
        return self._outbox_bytes

    # -- closing -------------------------------------------------------------------------------

    def close(self, reason: str = "forced close", *, graceful: bool = True) -> None:
        """End the session. ``graceful`` lets queued data (and a close frame/packet) go out first.

        The handler's ``on_close`` follows once (after a running ``on_message``).
        """
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for handle in (self._ping_handle, self._timeout_handle):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._timeout_handle = None
        probe = self._probe
        if probe is not None:
            self._probe = None
            probe.abort()
        wt = self._wt
        if wt is not None:
            self._server._forget(self)
            if not wt.is_closing():
                if graceful:
                    self._close_queued = True
                    self._frames.append(_WS_CLOSE_NORMAL)
                    self._flush()
                    wt.close()
                    self._loop.call_later(_CLOSE_GRACE, wt.abort)
                else:
                    self._frames = []
                    wt.abort()
        else:
            # Long-polling: queued packets go out first, then (in a later response, so that the
            # client handles them before it sees the close) the close packet. The session stays
            # findable by its sid until the close packet is taken, or for a little while.
            if not graceful or not self._outbox:
                self._outbox.append(b"1")
                self._close_queued = True
            if graceful:
                self._forget_handle = self._loop.call_later(
                    self._server.ping_timeout, self._server._forget, self
                )
            else:
                self._server._forget(self)
            waiter = self._poll_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if not self._dispatching:
            self._closed_notified = True
            self._server._spawn(self._server.handler.on_close(self, reason))

    async def _notify_closed(self) -> None:
        if not self._closed_notified:
            self._closed_notified = True
            await self._server.handler.on_close(self, self.close_reason)

    # -- heartbeats ----------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        server = self._server
        if self.eio >= 4:
            self._ping_handle = self._loop.call_later(server.ping_interval, self._ping)
        else:
            self._timeout_handle = self._loop.call_later(
                server.ping_interval + server.ping_timeout, self._check_alive
            )

    def _ping(self) -> None:
        self._ping_handle = None
        if self.closed:
            return
        self.send_packet(b"2")
        if not self.closed:
            self._timeout_handle = self._loop.call_later(
                self._server.ping_timeout, self._ping_timed_out
            )

    def _pong(self) -> None:
        handle = self._timeout_handle
        if handle is None or self.eio < 4:
            return
        handle.cancel()
        self._timeout_handle = None
        self._ping_handle = self._loop.call_later(self._server.ping_interval, self._ping)

    def _ping_timed_out(self) -> None:
        self._timeout_handle = None
        self.close("ping timeout", graceful=False)

    def _check_alive(self) -> None:
        """Revision 3: the client must send something every pingInterval + pingTimeout."""
        self._timeout_handle = None
        if self.closed:
            return
        server = self._server
        deadline = self._last_seen + server.ping_interval + server.ping_timeout
        if self._loop.time() >= deadline:
            self.close("ping timeout", graceful=False)
        else:
            self._timeout_handle = self._loop.call_at(deadline, self._check_alive)

    # -- receiving -----------------------------------------------------------------------------

    async def _on_packet(self, data: bytes, binary: bool) -> None:
        """One packet from the client (not the probe phase of an upgrade)."""
        if self.eio < 4:
            self._last_seen = self._loop.time()
        if binary:
            await self._server.handler.on_message(self, data, True)
            return
        kind = data[:1]
        if kind == b"4":
            await self._server.handler.on_message(self, data[1:], False)
        elif kind == b"3":
            self._pong()
        elif kind == b"2":
            if self.eio < 4:
                self.send_packet(b"3" + data[1:])
        elif kind == b"1":
            self.close("transport close", graceful=False)
        elif kind in (b"6", b"5", b"0"):
            pass  # noop; stray upgrade or open packets are ignored, as the reference does
        elif kind == b"b":
            # binary sent as base64 text by clients told to (forceBase64 / b64=1)
            try:
                if self.eio < 4 and data[1:2] != b"4":
                    raise ValueError("not a message")
                decoded = _b64(data[1:] if self.eio >= 4 else data[2:])
            except ValueError:
                self.close("parse error", graceful=False)
                return
            await self._server.handler.on_message(self, decoded, True)
        else:
            self.close("parse error", graceful=False)

    def _wake_poll_with_noop(self) -> None:
        waiter = self._poll_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# -- the server -----------------------------------------------------------------------------------


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


class EngineIOServer:
    """Engine.IO sessions for one ``aiohttp`` application.

    Times are in seconds. ``max_send_buffer`` is the slow-consumer limit in bytes (see the module
    documentation); ``max_http_buffer_size`` bounds one received message (websocket) or one POST
    body (long-polling): a bigger one closes the socket.
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
    ) -> None:
        if ping_interval <= 0 or ping_timeout <= 0 or upgrade_timeout <= 0:
            raise ValueError("ping_interval, ping_timeout and upgrade_timeout must be > 0")
        if max_http_buffer_size <= 0 or max_send_buffer <= 0:
            raise ValueError("max_http_buffer_size and max_send_buffer must be > 0")
        self.handler = handler
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.upgrade_timeout = float(upgrade_timeout)
        self.max_http_buffer_size = int(max_http_buffer_size)
        self.max_send_buffer = int(max_send_buffer)
        self.allow_eio3 = allow_eio3
        origins = tuple(cors_origins)
        self._cors_any = "*" in origins
        self._cors_origins = frozenset(o.rstrip("/") for o in origins)
        self.sockets: dict[str, EngineSocket] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws_kwargs = _ws_response_kwargs(self.max_http_buffer_size)
        self._waiting_polls: dict[EngineSocket, asyncio.BaseTransport] = {}
        self._poll_watch: asyncio.TimerHandle | None = None

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

    def _new_sid(self) -> str:
        while True:
            sid = secrets.token_urlsafe(15)
            if sid not in self.sockets:
                return sid

    def _open_packet(self, sock: EngineSocket, upgrades: list[str]) -> bytes:
        info: dict[str, Any] = {
            "sid": sock.sid,
            "upgrades": upgrades,
            "pingInterval": round(self.ping_interval * 1000),
            "pingTimeout": round(self.ping_timeout * 1000),
        }
        if sock.eio >= 4:
            info["maxPayload"] = self.max_http_buffer_size
        return b"0" + orjson.dumps(info)

    # -- HTTP ----------------------------------------------------------------------------------

    def _cors_headers(self, request: web.BaseRequest) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None or not (self._cors_any or origin.rstrip("/") in self._cors_origins):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def _error(self, request: web.BaseRequest, code: int, status: int = 400) -> web.Response:
        body = orjson.dumps({"code": code, "message": ERROR_MESSAGES[code]})
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
            if sid is None:
                return await self._ws_handshake(request, eio)
            sock = self.sockets.get(sid)
            if sock is None or sock.closed:
                return self._error(request, UNKNOWN_SID)
            return await self._ws_upgrade(request, sock)
        if sid is None:
            if method != "GET":
                return self._error(request, BAD_HANDSHAKE_METHOD)
            return await self._poll_handshake(request, eio)
        sock = self.sockets.get(sid)
        if sock is None:
            return self._error(request, UNKNOWN_SID)
        if sock.transport_name != "polling":
            return self._error(request, BAD_REQUEST)
        if method == "GET":
            return await self._poll(request, sock)
        if method == "POST":
            return await self._post(request, sock)
        return self._error(request, BAD_REQUEST)

    # -- long-polling --------------------------------------------------------------------------

    async def _poll_handshake(self, request: web.Request, eio: int) -> web.Response:
        sock = EngineSocket(self, self._new_sid(), eio, "polling", request.remote)
        self.sockets[sock.sid] = sock
        sock._outbox.append(self._open_packet(sock, ["websocket"]))
        sock._start_heartbeat()
        await self._open(sock)
        return self._poll_response(request, sock, self._take_outbox(sock))

    async def _open(self, sock: EngineSocket) -> None:
        sock._dispatching = True
        try:
            await self.handler.on_open(sock)
        finally:
            sock._dispatching = False
        if sock.closed:
            await sock._notify_closed()

    def _take_outbox(self, sock: EngineSocket) -> list[bytes]:
        packets = sock._outbox
        if len(packets) > _MAX_PACKETS_PER_POLL:
            sock._outbox = packets[_MAX_PACKETS_PER_POLL:]
            packets = packets[:_MAX_PACKETS_PER_POLL]
            sock._outbox_bytes -= sum(map(len, packets))
            return packets
        if packets:
            sock._outbox = []
            sock._outbox_bytes = 0
        elif sock.closed:
            packets = [b"1"]
            sock._close_queued = True
        else:
            return [b"6"]
        if sock._close_queued:
            self._forget(sock)
        return packets

    def _poll_response(
        self, request: web.BaseRequest, sock: EngineSocket, packets: list[bytes]
    ) -> web.Response:
        v4 = sock.eio >= 4
        body = _RECORD_SEPARATOR.join(packets) if v4 else encode_payload_v3(packets)
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
        if not sock._outbox and not sock.closed and not sock._upgrading:
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
        return self._poll_response(request, sock, self._take_outbox(sock))

    async def _post(self, request: web.Request, sock: EngineSocket) -> web.Response:
        headers = self._cors_headers(request)
        if sock._post_lock.locked():
            sock.close("transport error", graceful=False)
            return self._error(request, BAD_REQUEST)
        async with sock._post_lock:
            try:
                body = await _read_limited(request, self.max_http_buffer_size)
            except _NETWORK_ERRORS as exc:
                # The connection dropped mid-body: the client is gone (as the reference's "data
                # request connection closed prematurely"). Expected: no traceback.
                log.debug("POST of %r aborted: %r", sock, exc)
                sock.close("transport close", graceful=False)
                return web.Response(status=400, headers=headers)
            if body is None:
                sock.close("payload too large", graceful=False)
                return web.Response(status=413, headers=headers)
            if sock.closed:  # e.g. the client's close packet after ours
                return web.Response(text="ok", content_type="text/html", headers=headers)
            try:
                if sock.eio >= 4:
                    packets = decode_payload_v4(body)
                elif request.content_type == "application/octet-stream":
                    packets = decode_binary_payload_v3(body)
                else:
                    packets = decode_payload_v3(body)
            except ValueError:
                sock.close("parse error", graceful=False)
                return self._error(request, BAD_REQUEST)
            sock._dispatching = True
            try:
                for data, binary in packets:
                    if sock.closed:
                        break
                    await sock._on_packet(data, binary)
            finally:
                sock._dispatching = False
            if sock.closed:
                await sock._notify_closed()
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
        sock = EngineSocket(self, self._new_sid(), eio, "websocket", request.remote)
        sock._wt = wt
        self.sockets[sock.sid] = sock
        sock.send_packet(self._open_packet(sock, []))
        sock._start_heartbeat()
        await self._open(sock)
        if not sock.closed:
            await self._ws_loop(sock, ws)
        return ws

    async def _ws_upgrade(self, request: web.Request, sock: EngineSocket) -> web.StreamResponse:
        if sock.transport_name != "polling" or sock._probe is not None:
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
        upgraded = False
        try:
            while True:
                msg = await ws.receive()
                if sock.closed or sock._probe is not wt:
                    break
                if msg.type is not WSMsgType.TEXT:
                    break
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                if data == b"2probe":
                    wt.write(ws_frame(b"3probe"))
                    sock._upgrading = True
                    sock._wake_poll_with_noop()
                elif data == b"5" and sock._upgrading:
                    # Let a POST being handled finish, so messages stay in order.
                    async with sock._post_lock:
                        if sock.closed:
                            break
                        timer.cancel()
                        sock._probe = None
                        sock._upgrading = False
                        sock.transport_name = "websocket"
                        sock._wt = wt
                        for packet in sock._outbox:
                            wt.write(ws_frame(packet))
                        sock._outbox = []
                        sock._outbox_bytes = 0
                        sock._wake_poll_with_noop()
                        upgraded = True
                    break
                else:
                    break
        finally:
            timer.cancel()
            if not upgraded and sock._probe is wt:
                sock._probe = None
                sock._upgrading = False
                wt.abort()
        if upgraded:
            await self._ws_loop(sock, ws)
        return ws

    async def _ws_loop(self, sock: EngineSocket, ws: web.WebSocketResponse) -> None:
        """Read one websocket until it ends; hand messages over inline, in order."""
        on_message = self.handler.on_message
        eio4 = sock.eio >= 4
        loop = sock._loop
        reason = "transport close"
        try:
            while True:
                msg = await ws.receive()
                if sock.closed:
                    break
                kind = msg.type
                if kind is WSMsgType.TEXT:
                    data = msg.data
                    if type(data) is not bytes:
                        data = data.encode()
                    if data[:1] == b"4":
                        # The hot path: a message.
                        if not eio4:
                            sock._last_seen = loop.time()
                        sock._dispatching = True
                        try:
                            await on_message(sock, data[1:], False)
                        finally:
                            sock._dispatching = False
                    else:
                        sock._dispatching = True
                        try:
                            await sock._on_packet(data, False)
                        finally:
                            sock._dispatching = False
                    if sock.closed:
                        break
                elif kind is WSMsgType.BINARY:
                    data = msg.data
                    if not eio4:
                        if data[:1] != b"\x04":
                            sock.close("parse error", graceful=False)
                            break
                        data = data[1:]
                    sock._dispatching = True
                    try:
                        await sock._on_packet(data, True)
                    finally:
                        sock._dispatching = False
                    if sock.closed:
                        break
                else:
                    if kind is WSMsgType.ERROR:
                        reason = "transport error"
                        if ws.close_code == 1009:
                            reason = "payload too large"
                    break
        finally:
            if not sock.closed:
                sock._dispatching = True  # we notify below, inline
                sock.close(reason, graceful=False)
                sock._dispatching = False
            await sock._notify_closed()


# -- payload codecs -------------------------------------------------------------------------------


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


def decode_payload_v4(body: bytes) -> list[tuple[bytes, bool]]:
    """Revision 4 long-polling body: packets separated by ``\\x1e``, ``b`` = base64 binary."""
    packets: list[tuple[bytes, bool]] = []
    for part in body.split(_RECORD_SEPARATOR):
        if not part:
            raise ValueError("empty packet")
        if part[:1] == b"b":
            packets.append((_b64(part[1:]), True))
        else:
            packets.append((part, False))
    return packets


def _b64(data: bytes | str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64") from exc


def _utf16_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def encode_payload_v3(packets: list[bytes]) -> bytes:
    """Revision 3 long-polling body for text packets: ``<length>:<packet>`` repeated."""
    parts: list[str] = []
    for packet in packets:
        text = packet.decode("utf-8", "surrogatepass")
        parts.append(f"{_utf16_len(text)}:{text}")
    return "".join(parts).encode("utf-8", "surrogatepass")


def decode_payload_v3(body: bytes) -> list[tuple[bytes, bool]]:
    """Revision 3 text payload; lengths count UTF-16 code units, as JavaScript does."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("payload is not UTF-8") from exc
    if text.isascii():
        data, width = body, 1
    else:
        data, width = text.encode("utf-16-le", "surrogatepass"), 2

    def unit(j: int) -> int:
        return data[j] if width == 1 else data[2 * j] | data[2 * j + 1] << 8

    def chunk(a: int, b: int) -> str:
        if width == 1:
            return data[a:b].decode("ascii")
        return data[2 * a : 2 * b].decode("utf-16-le", "surrogatepass")

    packets: list[tuple[bytes, bool]] = []
    size = len(data) // width
    i = 0
    while i < size:
        j, length = i, 0
        while True:
            if j >= size or j - i > 10:
                raise ValueError("bad length")
            code = unit(j)
            if code == 0x3A:  # ':'
                break
            if not 0x30 <= code <= 0x39:
                raise ValueError("bad length")
            length = length * 10 + code - 0x30
            j += 1
        start = j + 1
        if j == i or start + length > size:
            raise ValueError("bad length")
        packet = chunk(start, start + length)
        i = start + length
        if not packet:
            continue
        if packet[0] == "b":
            if packet[1:2] != "4":
                raise ValueError("bad binary packet")
            packets.append((_b64(packet[2:]), True))
        else:
            packets.append((packet.encode("utf-8", "surrogatepass"), False))
    if not packets:
        raise ValueError("empty payload")
    return packets


def decode_binary_payload_v3(body: bytes) -> list[tuple[bytes, bool]]:
    """Revision 3 ``application/octet-stream`` payload.

    Each packet: ``0`` (string) or ``1`` (binary), its length as one byte per decimal digit, 255,
    then the packet (a string packet's UTF-8 bytes; a binary packet's type byte and data).
    """
    packets: list[tuple[bytes, bool]] = []
    i, n = 0, len(body)
    while i < n:
        kind = body[i]
        if kind not in (0, 1):
            raise ValueError("bad binary payload")
        i += 1
        length = 0
        digits = 0
        while True:
            if i >= n or digits > 10:
                raise ValueError("bad binary payload")
            d = body[i]
            i += 1
            if d == 255:
                break
            if d > 9:
                raise ValueError("bad binary payload")
            length = length * 10 + d
            digits += 1
        if digits == 0 or i + length > n or length == 0:
            raise ValueError("bad binary payload")
        packet = body[i : i + length]
        i += length
        if kind == 0:
            packets.append((packet, False))
        else:
            if packet[0] != 4:
                raise ValueError("binary packet is not a message")
            packets.append((packet[1:], True))
    if not packets:
        raise ValueError("empty payload")
    return packets


async def _logged(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("error in Engine.IO close handler")
