"""The ASGI driver of the Engine.IO protocol: the lean stack under uvicorn, hypercorn, Starlette.

The twin of the aiohttp driver (``engineio.py``), sharing its sessions, heartbeat wheel and
handler (an `EngineIOServer`); only the I/O differs. ASGI servers frame websocket messages
themselves, so websocket sessions run unframed (`EngineSession` ``framed=False``): their packets
queue like a polling outbox (bounded the same way) and one writer task per websocket sends them.
A long-polling GET ends its session when the server reports ``http.disconnect`` while it waits
(a closed tab), as the aiohttp driver does.

``AsgiEngineIO(engine)`` answers ``/socket.io/``; anything else goes to ``other_asgi_app`` (404
without one), which also receives the lifespan events. The sessions close on lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl

from .engineio import (
    _NETWORK_ERRORS,
    BAD_HANDSHAKE_METHOD,
    BAD_REQUEST,
    FORBIDDEN,
    GOODBYE_CODES,
    UNKNOWN_SID,
    UNKNOWN_TRANSPORT,
    UNSUPPORTED_PROTOCOL_VERSION,
    EngineIOServer,
    EngineSocket,
    error_body,
)
from .engineio_protocol import EngineSession, SendResult, TransportKind, ws_frame

__all__ = ["AsgiEngineIO"]

_OVERFLOW: Final = SendResult.OVERFLOW

log = logging.getLogger("easyrtc_server.transport.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away while its request was read."""


class AsgiSocket(EngineSocket):
    """An `EngineSocket` whose websocket is an ASGI connection with a writer task."""

    __slots__ = ("_direct", "_ws_closed", "_ws_wake")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, framed=False, **kwargs)
        self._ws_wake: asyncio.Event | None = None
        """Set when packets wait for the writer; None while the session polls."""
        self._ws_closed = False
        self._direct: DirectWebSocket | None = None

    def _after_send(self, result: SendResult) -> None:
        if result is _OVERFLOW:
            self._closed_by_protocol()
        elif self._direct is not None:
            # written with every other socket's at the end of this pass, as the aiohttp driver
            self._server._flush_soon(self)
        elif self._ws_wake is not None:
            self._ws_wake.set()
        else:
            self._wake_poll()

    def _flush(self) -> None:
        """The end of a pass: write the queued packets now if the connection takes them."""
        direct, wake = self._direct, self._ws_wake
        if direct is None or wake is None:
            return
        if not direct.write_now(self.proto):
            wake.set()  # the writer task waits until the connection takes more

    def _wake_poll(self) -> None:
        # the heartbeat's ping is queued: a websocket's writer sends it, a held GET answers it
        if self._ws_wake is not None:
            self._ws_wake.set()
        super()._wake_poll()

    def _close_connection(self, graceful: bool) -> None:
        if self._ws_wake is not None:
            self._server._forget(self)
            self._ws_wake.set()  # the writer sends what is queued (if graceful), then closes
        else:
            self._close_polling(graceful)

    async def write(self, send: Send) -> None:
        """The writer task of this session's websocket."""
        wake = self._ws_wake
        assert wake is not None
        proto = self.proto
        direct = self._direct
        try:
            while True:
                await wake.wait()
                wake.clear()
                packets = proto.packets_to_send()
                if direct is not None:
                    if packets:
                        await direct.write(packets)
                else:
                    for packet in packets:
                        await send({"type": "websocket.send", "text": packet.decode()})
                if proto.closed:
                    break
            if not self._ws_closed:
                self._ws_closed = True
                await send({"type": "websocket.close", "code": 1000})
        except _NETWORK_ERRORS as exc:
            log.debug("websocket of %r: %r", self, exc)
            self._ws_closed = True
            if not self.closed:
                self.close("transport error", graceful=False)


class DirectWebSocket:
    """The websocket of uvicorn's ``websockets-sansio`` implementation, written to directly.

    Under ASGI every packet is one ``await send()``, and uvicorn writes each to the socket at
    once: a system call, a websockets frame serialization and a writer task step per packet,
    which made the ASGI driver half as fast as the aiohttp one per CPU-second. When ``send`` is
    that implementation's (uvicorn's default when the ``websockets`` package is installed), the
    packets queued in one pass of the event loop are framed here and handed to the transport in
    one write, from the same end-of-pass callback as the aiohttp driver's, honouring uvicorn's
    flow control (``writable``, uvicorn 0.52.1 and later; while it is clear the writer task
    waits) and its connection state. Only without compression (a negotiated extension would
    have to see every frame); anything else, and the websocket's close, go through ``send``.
    """

    __slots__ = ("_conn", "_open", "_owner", "_waiting")

    def __init__(self, owner: Any, open_state: Any) -> None:
        self._owner = owner
        self._conn = owner.conn
        self._open = open_state
        """websockets' ``State.OPEN``."""
        self._waiting = False
        """The writer task holds packets until uvicorn takes writes again: newer ones wait."""

    @classmethod
    def of(cls, send: Send) -> DirectWebSocket | None:
        """The direct writer of ``send``'s connection, or None to go through ``send``."""
        owner = getattr(send, "__self__", None)
        if owner is None or type(owner).__name__ != "WebSocketsSansIOProtocol":
            return None
        try:  # optional dependencies: imported once uvicorn is seen serving
            from uvicorn.protocols.websockets.websockets_sansio_impl import (
                WebSocketsSansIOProtocol,
            )
            from websockets.protocol import State as WsState
        except ImportError:
            return None
        if type(owner) is not WebSocketsSansIOProtocol:
            return None
        conn = getattr(owner, "conn", None)
        needed = ("transport", "writable", "disconnected", "close_sent")
        if conn is None or not all(hasattr(owner, name) for name in needed):
            return None
        attributes = ("expect_continuation_frame", "extensions", "state")
        if not all(hasattr(conn, name) for name in attributes):
            return None
        if conn.extensions or conn.state is not WsState.OPEN:
            return None
        return cls(owner, WsState.OPEN)

    def _check_open(self) -> None:
        owner, conn = self._owner, self._conn
        if owner.disconnected or owner.close_sent or owner.transport.is_closing():
            raise ConnectionResetError("websocket closed")
        if conn.expect_continuation_frame or conn.state is not self._open:
            raise ConnectionResetError("websocket closing")

    def write_now(self, proto: EngineSession) -> bool:
        """Write ``proto``'s queued packets unless uvicorn holds writes back (False then)."""
        owner = self._owner
        if self._waiting or not owner.writable.is_set():
            return False
        try:
            self._check_open()
        except ConnectionResetError:
            return False  # the writer task finds out and ends the session
        packets = proto.packets_to_send()
        if packets:
            owner.transport.write(b"".join([ws_frame(packet) for packet in packets]))
        return True

    async def write(self, packets: list[bytes]) -> None:
        """Send text packets as websocket frames in one write; raises if the connection is gone."""
        owner = self._owner
        self._waiting = True
        try:
            await owner.writable.wait()
        finally:
            self._waiting = False
        self._check_open()
        owner.transport.write(b"".join([ws_frame(packet) for packet in packets]))


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _remote(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class AsgiEngineIO:
    """An ASGI application serving `EngineIOServer`'s sessions at ``path``."""

    def __init__(
        self,
        engine: EngineIOServer,
        other_asgi_app: ASGIApp | None = None,
        path: str = "/socket.io/",
    ) -> None:
        self.engine = engine
        self.other_asgi_app = other_asgi_app
        self.path = "/" + path.strip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        path = scope.get("path", "")
        if kind in ("http", "websocket") and path in (self.path, self.path + "/"):
            if kind == "http":
                await self._http(scope, receive, send)
            else:
                await self._websocket(scope, receive, send)
            return
        if self.other_asgi_app is not None:
            await self.other_asgi_app(scope, receive, send)
        elif kind == "http":
            await _respond(send, 404, [(b"content-type", b"text/plain")], b"Not Found")
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_and_close() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.engine.shutdown()
            return message

        if self.other_asgi_app is not None:
            await self.other_asgi_app(scope, receive_and_close, send)
            return
        while True:
            message = await receive_and_close()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP (long-polling) ---------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        engine = self.engine
        method = scope.get("method", "GET")
        cors = engine.cors_headers(_header(scope, b"origin"))
        headers = [(k.lower().encode(), v.encode()) for k, v in cors.items()]
        if method == "OPTIONS":
            if cors:
                headers.append((b"access-control-allow-methods", b"GET, POST, OPTIONS"))
                wanted = _header(scope, b"access-control-request-headers")
                if wanted:
                    headers.append((b"access-control-allow-headers", wanted.encode()))
            await _respond(send, 204, headers, b"")
            return
        query = _query(scope)
        eio = self._eio(query)
        if eio is None:
            await self._error(send, headers, UNSUPPORTED_PROTOCOL_VERSION)
            return
        transport = query.get("transport")
        if transport != "polling" or "j" in query:
            code = UNKNOWN_TRANSPORT if transport not in ("polling", "websocket") else BAD_REQUEST
            await self._error(send, headers, code)
            return
        sid = query.get("sid")
        if sid is None:
            if method != "GET":
                await self._error(send, headers, BAD_HANDSHAKE_METHOD)
                return
            sock = AsgiSocket(engine, engine.new_sid(), eio, TransportKind.POLLING, _remote(scope))
            engine.add_socket(sock, query)
            await engine.open_socket(sock)
            await self._poll_response(send, headers, sock)
            return
        found = engine.sockets.get(sid)
        if not isinstance(found, AsgiSocket):
            await self._error(send, headers, UNKNOWN_SID)
            return
        if found._ws_wake is not None:
            await self._error(send, headers, BAD_REQUEST)
        elif method == "GET":
            await self._poll(receive, send, headers, found)
        elif method == "POST":
            await self._post(scope, receive, send, headers, found)
        else:
            await self._error(send, headers, BAD_REQUEST)

    def _eio(self, query: dict[str, str]) -> int | None:
        text = query.get("EIO", "3")
        if text == "4":
            return 4
        if text == "3" and self.engine.allow_eio3:
            return 3
        return None

    async def _error(self, send: Send, headers: list[tuple[bytes, bytes]], code: int) -> None:
        status = 403 if code == FORBIDDEN else 400
        headers = [*headers, (b"content-type", b"application/json")]
        await _respond(send, status, headers, error_body(code))

    async def _poll_response(
        self, send: Send, headers: list[tuple[bytes, bytes]], sock: AsgiSocket
    ) -> None:
        body = sock.proto.poll_body()
        if sock.proto.finished:
            self.engine._forget(sock)
        await _respond(send, 200, [*headers, (b"content-type", b"text/plain; charset=UTF-8")], body)

    async def _poll(
        self, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]], sock: AsgiSocket
    ) -> None:
        if sock._poll_waiter is not None:
            sock.close("transport error", graceful=False)
            await self._error(send, headers, BAD_REQUEST)
            return
        if sock.proto.poll_should_wait():
            waiter: asyncio.Future[None] = sock._loop.create_future()
            sock._poll_waiter = waiter
            gone = asyncio.ensure_future(_wait_disconnect(receive))
            try:
                await asyncio.wait((waiter, gone), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sock._poll_waiter = None
                gone.cancel()
            if gone.done() and not gone.cancelled():
                # The client went away while its poll was pending (a closed tab).
                sock.close("transport close", graceful=False)
                return
        await self._poll_response(send, headers, sock)

    async def _post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        sock: AsgiSocket,
    ) -> None:
        engine = self.engine
        ok = [*headers, (b"content-type", b"text/html")]
        if sock._post_lock.locked():
            sock.close("transport error", graceful=False)
            await self._error(send, headers, BAD_REQUEST)
            return
        async with sock._post_lock:
            try:
                async with asyncio.timeout(engine.read_timeout):
                    body = await _read_body(receive, engine.limits.max_payload)
            except TimeoutError:
                log.info("closing %r: POST body not received within %ss", sock, engine.read_timeout)
                sock.close("read timeout", graceful=False)
                await _respond(send, 408, headers, b"")
                return
            except _Disconnected:
                log.debug("POST of %r aborted", sock)
                sock.close("transport close", graceful=False)
                return
            if body is None:
                sock.close("payload too large", graceful=False)
                await _respond(send, 413, headers, b"")
                return
            if not sock.closed:
                content_type = (_header(scope, b"content-type") or "").split(";")[0].strip()
                if not await sock.receive_payload(body, content_type):
                    await self._error(send, headers, BAD_REQUEST)
                    return
        await _respond(send, 200, ok, b"ok")

    # -- websocket -------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        engine = self.engine
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        query = _query(scope)
        eio = self._eio(query)
        host = _header(scope, b"host") or ""
        if (
            eio is None
            or query.get("transport") != "websocket"
            or not engine.origin_allowed(_header(scope, b"origin"), host)
        ):
            await send({"type": "websocket.close", "code": 1008})
            return
        sid = query.get("sid")
        if sid is None:
            sock = AsgiSocket(
                engine, engine.new_sid(), eio, TransportKind.WEBSOCKET, _remote(scope)
            )
            await send({"type": "websocket.accept"})
            sock._ws_wake = asyncio.Event()
            sock._ws_wake.set()  # the open packet
            engine.add_socket(sock, query)
            await self._run(sock, receive, send, opening=True)
            return
        found = engine.sockets.get(sid)
        if not isinstance(found, AsgiSocket) or found.closed or found._ws_wake is not None:
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        if await self._probe(found, receive, send):
            await self._run(found, receive, send, opening=False)
        else:
            await send({"type": "websocket.close", "code": 1000})

    async def _probe(self, sock: AsgiSocket, receive: Receive, send: Send) -> bool:
        """The upgrade's probe exchange on the new websocket; True once upgraded."""
        proto = sock.proto
        try:
            async with asyncio.timeout(self.engine.upgrade_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "websocket.receive" or sock.closed:
                        break
                    text = message.get("text")
                    if text is None:
                        break
                    data = text.encode()
                    if data == b"5":
                        async with sock._post_lock:  # a POST being handled finishes first
                            if sock.closed or proto.receive_probe(data) is not None:
                                break
                            if proto.transport is not TransportKind.WEBSOCKET:
                                break
                            sock._ws_wake = asyncio.Event()
                            sock._ws_wake.set()  # what the outbox held
                            sock._wake_poll()
                            return True
                    reply = proto.receive_probe(data)
                    if reply is None:
                        break
                    await send({"type": "websocket.send", "text": reply.decode()})
                    sock._wake_poll()  # a held GET is answered with a noop
        except TimeoutError:
            pass
        proto.abort_upgrade()
        return False

    async def _run(self, sock: AsgiSocket, receive: Receive, send: Send, *, opening: bool) -> None:
        sock._direct = DirectWebSocket.of(send)
        writer = asyncio.ensure_future(sock.write(send))
        try:
            if opening:
                await self.engine.open_socket(sock)
            if not sock.closed:
                await self._read(sock, receive)
        finally:
            if not sock.closed:
                sock._dispatching = True
                sock.close("transport close", graceful=False)
                sock._dispatching = False
            await sock._notify_closed()
            try:
                async with asyncio.timeout(2.0):
                    await writer
            except TimeoutError:
                writer.cancel()

    async def _read(self, sock: AsgiSocket, receive: Receive) -> None:
        """Read one websocket until it ends; hand messages over inline, in order."""
        on_message = self.engine.handler.on_message
        proto = sock.proto
        eio4 = proto.eio >= 4
        loop = sock._loop
        limit = self.engine.limits.max_payload
        while True:
            message = await receive()
            if message["type"] != "websocket.receive" or sock.closed:
                if message.get("code") in GOODBYE_CODES and not sock.closed:
                    sock.close("client close", graceful=False)  # a goodbye (``hold``)
                return
            text = message.get("text")
            data: bytes = text.encode() if text is not None else message.get("bytes") or b""
            if len(data) > limit:
                sock.close("payload too large", graceful=False)
                return
            sock._dispatching = True
            try:
                if text is None:
                    await sock._dispatch(proto.receive_binary_frame(data, loop.time()))
                elif data[:1] == b"4":
                    if not eio4:
                        proto.last_seen = loop.time()
                    await on_message(sock, data[1:], False)
                else:
                    await sock._on_packet(data, False)
            finally:
                sock._dispatching = False
            if sock.closed:
                return


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
