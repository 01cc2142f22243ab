"""The ASGI driver of the Engine.IO session layer (``engineio_sessions``): request plumbing.

The twin of the aiohttp driver (``engineio.py``): both route requests with
``EngineIOServer.route`` and leave every rule of the protocol to the session layer, so one
server's sessions can be served by both (a cluster node's internal listener is aiohttp). ASGI
servers frame websocket messages themselves, so a session's websocket here (`AsgiWebSocket`)
takes packets, not frames: they queue like a polling outbox (bounded the same way) and one writer
task per websocket sends them, or, under uvicorn's websockets-sansio implementation, the packets
of a pass are framed and written straight into its transport (`DirectWebSocket`, the raw fast
path). A long-polling GET ends its session when the server reports ``http.disconnect`` while it
waits (a closed tab), as the aiohttp driver does.

``AsgiEngineIO(engine)`` answers ``/socket.io/``; anything else goes to ``other_asgi_app`` (404
without one), which also receives the lifespan events. The sessions close on lifespan shutdown.
``forward`` is asked about a request whose sid is not here (a cluster node proxies it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

from .engineio_protocol import EngineSession, ws_frame
from .engineio_routing import Handshake, Poll, Post, Preflight, Refuse, Upgrade
from .engineio_sessions import (
    BAD_REQUEST_REPLY,
    GOODBYE_CODES,
    ClientGone,
    EngineIOServer,
    EngineSocket,
    HttpReply,
)

__all__ = ["AsgiEngineIO", "AsgiForward", "AsgiWebSocket", "DirectWebSocket"]

log = logging.getLogger("easyrtc_server.transport.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WRITER_GRACE: Final = 2.0
"""Seconds a closed websocket's writer may take to send what is left."""


class AsgiForward(Protocol):
    """A cluster node's proxy: answers a request for ``sid`` (True), or leaves it (False)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send, sid: str) -> bool: ...


class AsgiWebSocket:
    """A session's websocket under ASGI: packets sent by a writer task, or written directly."""

    __slots__ = ("_send", "direct", "engine", "sent_close", "wake")

    framed = False

    def __init__(self, engine: EngineIOServer, send: Send) -> None:
        self.engine = engine
        self._send = send
        self.direct = DirectWebSocket.of(send)
        """The raw fast path, when the server is uvicorn's websockets-sansio."""
        self.wake = asyncio.Event()
        """Set when packets wait for the writer."""
        self.sent_close = False

    def flush(self, sock: EngineSocket) -> None:
        """The end of a pass: write the queued packets now if the connection takes them."""
        direct = self.direct
        if direct is None or sock.closed:
            self.wake.set()
            return
        written = direct.write_now(sock.proto)
        if written < 0:
            self.wake.set()  # the writer task waits until the connection takes more
        else:
            self.engine.bytes_sent += written

    def close(self, sock: EngineSocket, graceful: bool) -> None:
        self.wake.set()  # the writer sends what is queued (if graceful), then closes

    async def send_probe_reply(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "text": data.decode()})

    def abort(self) -> None:
        """The driver closes a failed probe's websocket itself."""

    async def write(self, sock: EngineSocket) -> None:
        """The writer task of this websocket."""
        wake = self.wake
        proto = sock.proto
        direct = self.direct
        send = self._send
        try:
            while True:
                await wake.wait()
                wake.clear()
                packets = proto.packets_to_send()
                if packets:
                    if direct is not None:
                        self.engine.bytes_sent += await direct.write(packets)
                    else:
                        self.engine.bytes_sent += sum(map(len, packets))
                        for packet in packets:
                            await send({"type": "websocket.send", "text": packet.decode()})
                if proto.closed:
                    break
            await self.send_close()
        except (OSError, ClientGone) as exc:
            log.debug("websocket of %r: %r", sock, exc)
            self.sent_close = True
            if not sock.closed:
                sock.close("transport error", graceful=False)

    async def send_close(self) -> None:
        if not self.sent_close:
            self.sent_close = True
            await self._send({"type": "websocket.close", "code": 1000})


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

    def write_now(self, proto: EngineSession) -> int:
        """Write ``proto``'s queued packets unless uvicorn holds writes back (-1 then); the
        bytes written."""
        owner = self._owner
        if self._waiting or not owner.writable.is_set():
            return -1
        try:
            self._check_open()
        except ConnectionResetError:
            return -1  # the writer task finds out and ends the session
        packets = proto.packets_to_send()
        if not packets:
            return 0
        data = b"".join([ws_frame(packet) for packet in packets])
        owner.transport.write(data)
        return len(data)

    async def write(self, packets: list[bytes]) -> int:
        """Send text packets as websocket frames in one write; raises if the connection is gone.
        The bytes written."""
        owner = self._owner
        self._waiting = True
        try:
            await owner.writable.wait()
        finally:
            self._waiting = False
        self._check_open()
        data = b"".join([ws_frame(packet) for packet in packets])
        owner.transport.write(data)
        return len(data)


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
        self.forward: AsgiForward | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        path = scope.get("path", "")
        if kind in ("http", "websocket") and path in (self.path, self.path + "/"):
            await self._engineio(kind, scope, receive, send)
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

    async def _engineio(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = kind == "websocket"
        engine = self.engine
        origin = _header(scope, b"origin")
        if websocket and (await receive())["type"] != "websocket.connect":
            return
        route = engine.route(
            "GET" if websocket else scope.get("method", "GET"),
            _query(scope),
            upgrade=websocket,
            origin=origin,
            host=_header(scope, b"host") or "",
            access_control_request_headers=_header(scope, b"access-control-request-headers"),
        )
        if websocket:
            if type(route) is Handshake and route.websocket:
                await send({"type": "websocket.accept"})
                conn = AsgiWebSocket(engine, send)
                sock = engine.open_session(route.eio, _remote(scope), conn, _query(scope))
                await self._run(sock, conn, receive, opening=True)
            elif type(route) is Upgrade:
                await self._upgrade(route.session, receive, send)
            elif type(route) is Refuse and route.missing is not None and self.forward is not None:
                if not await self.forward(scope, receive, send, route.missing):
                    await send({"type": "websocket.close", "code": 1008})
            elif type(route) is Refuse and route.status == 503 and _can_deny(scope):
                # as the aiohttp driver answers it: a balancer tries another node on a 503
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": route.status,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "websocket.http.response.body", "body": route.body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if type(route) is Poll:
            await self._reply(send, origin, await route.session.take_poll(_disconnect(receive)))
        elif type(route) is Post:
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip()
            reply = await route.session.take_post(_body_reader(receive), content_type)
            await self._reply(send, origin, reply)
        elif type(route) is Handshake and not route.websocket:
            sock = engine.open_session(route.eio, _remote(scope), query=_query(scope))
            await sock.open()
            await self._reply(send, origin, sock.poll_reply())
        elif type(route) is Preflight:
            await _respond(send, 204, _headers(route.headers), b"")
        elif type(route) is Refuse:
            forward = self.forward
            missing = route.missing
            if (
                missing is not None
                and forward is not None
                and await forward(scope, receive, send, missing)
            ):
                return
            await self._reply(send, origin, HttpReply(route.status, route.body, "application/json"))
        else:  # a websocket request over plain HTTP
            await self._reply(send, origin, BAD_REQUEST_REPLY)

    async def _reply(self, send: Send, origin: str | None, reply: HttpReply) -> None:
        headers = _headers(self.engine.cors_headers(origin))
        if reply.content_type is not None:
            headers.append((b"content-type", reply.content_type.encode()))
        await _respond(send, reply.status, headers, reply.body)

    # -- websocket -------------------------------------------------------------------------------

    async def _upgrade(self, sock: EngineSocket, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept"})
        conn = AsgiWebSocket(self.engine, send)

        async def next_text() -> bytes | None:
            message = await receive()
            if message["type"] != "websocket.receive":
                return None
            text = message.get("text")
            return None if text is None else text.encode()

        if await sock.upgrade(conn, next_text):
            await self._run(sock, conn, receive, opening=False)
        else:
            await conn.send_close()

    async def _run(
        self, sock: EngineSocket, conn: AsgiWebSocket, receive: Receive, *, opening: bool
    ) -> None:
        writer = asyncio.ensure_future(conn.write(sock))
        try:
            if opening:
                await sock.open()
            if not sock.closed:
                await self._read(sock, receive)
        finally:
            await sock.connection_lost("transport close")
            try:
                async with asyncio.timeout(_WRITER_GRACE):
                    await writer
            except TimeoutError:
                writer.cancel()

    async def _read(self, sock: EngineSocket, receive: Receive) -> None:
        """Read one websocket until it ends; hand messages over inline, in order."""
        receive_text = sock.receive_text
        limit = self.engine.limits.max_payload
        while True:
            message = await receive()
            if message["type"] != "websocket.receive" or sock.closed:
                if message.get("code") in GOODBYE_CODES and not sock.closed:
                    sock.close("client close", graceful=False)  # a goodbye (``hold``)
                return
            text = message.get("text")
            if text is not None:
                data = text.encode()
                if len(data) > limit:
                    sock.close("payload too large", graceful=False)
                    return
                await receive_text(data)
            else:
                data = message.get("bytes") or b""
                if len(data) > limit:
                    sock.close("payload too large", graceful=False)
                    return
                await sock.receive_binary(data)
            if sock.closed:
                return


def _headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


def _disconnect(receive: Receive) -> Callable[[], Awaitable[object]]:
    async def wait() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    return wait


def _body_reader(receive: Receive) -> Callable[[int], Awaitable[bytes | None]]:
    async def read(limit: int) -> bytes | None:
        """The request body, or None when it is longer than ``limit`` bytes."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone("http.disconnect")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    return read


def _can_deny(scope: Scope) -> bool:
    """The ASGI server can answer a websocket handshake with an HTTP response (the websocket
    denial response extension; else a refusal is a close, which the server answers 403)."""
    extensions = scope.get("extensions") or {}
    return "websocket.http.response" in extensions


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
