"""The aiohttp driver of the Engine.IO session layer (``engineio_sessions``): request plumbing.

Routes each request with ``EngineIOServer.route``, reads bodies and websocket messages, writes
the replies it is handed, and gives a session its websocket as an `AiohttpWebSocket`: the raw
fast path, where a pass's frames go in one write straight into the asyncio transport (no writer
task, no ``drain``). A websocket whose kernel-side backlog (data written earlier and still not
taken by the peer) exceeds ``max_send_buffer`` bytes when more is to be written is a slow
consumer; one large frame just queued is not a backlog. aiohttp does not tell a handler that
its client left, so pending GETs' connections are checked every `_POLL_WATCH_PERIOD`.

The sessions, their timers and every rule of the protocol live in ``engineio_sessions``; this
module's old names (`EngineIOServer`, `EngineSocket`, ...) are re-exported.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Final

from aiohttp import ClientError, web
from aiohttp.http_exceptions import HttpProcessingError

from .engineio_protocol import ws_frame
from .engineio_routing import (
    BAD_HANDSHAKE_METHOD,
    BAD_REQUEST,
    FORBIDDEN,
    UNKNOWN_SID,
    UNKNOWN_TRANSPORT,
    UNSUPPORTED_PROTOCOL_VERSION,
    Handshake,
    Poll,
    Post,
    Preflight,
    Refuse,
    Upgrade,
    error_body,
)
from .engineio_sessions import (
    BAD_REQUEST_REPLY,
    GOODBYE_CODES,
    ClientGone,
    EngineHandler,
    EngineIOServer,
    EngineSocket,
    HttpReply,
)
from .websocket_frames import (
    BINARY,
    FAILED,
    MESSAGE_TOO_BIG,
    PING,
    PONG,
    TEXT,
    FrameReader,
    close_code,
    close_frame,
    control_frame,
)

__all__ = [
    "BAD_HANDSHAKE_METHOD",
    "BAD_REQUEST",
    "FORBIDDEN",
    "UNKNOWN_SID",
    "UNKNOWN_TRANSPORT",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "AiohttpEngineIO",
    "AiohttpWebSocket",
    "EngineHandler",
    "EngineIOServer",
    "EngineSocket",
    "error_body",
    "ws_frame",
]

log = logging.getLogger("easyrtc_server.transport.engineio")

CLOSE_GRACE: Final = 2.0
"""Seconds a gracefully closed websocket may take to flush before its connection is aborted."""
_POLL_WATCH_PERIOD: Final = 0.25
"""Seconds between checks of pending GETs for a closed connection (a closed tab)."""
NETWORK_ERRORS: Final = (OSError, ClientError, HttpProcessingError, asyncio.IncompleteReadError)
"""What reading a request body raises when the client goes away or sends a broken body."""

Forward = Callable[[web.Request, str], Awaitable[web.StreamResponse | None]]
"""``(request, sid) -> response``, or None when the request is not forwarded."""


class AiohttpWebSocket(asyncio.Protocol):
    """A session's websocket on aiohttp, after the handshake: the asyncio protocol of its
    connection (aiohttp's is set aside, told only of the connection's loss) and its channel.

    Bytes read go through a `FrameReader` and each message to the session inline, in order,
    within the read's callback: no queue, no task per read. A message whose handling suspends
    (a hook that awaits) gets a task; reading pauses and the messages after it wait their
    turn. Frames are written straight into the transport (no writer task, no ``drain``).
    Messages read before `serve` (an upgrade's probe exchange, the open) wait in an inbox.
    """

    __slots__ = (
        "_done",
        "_http",
        "_inbox",
        "_reader",
        "_reason",
        "_running",
        "_waiter",
        "engine",
        "sock",
        "transport",
    )

    framed = True

    def __init__(
        self,
        engine: EngineIOServer,
        transport: asyncio.Transport,
        http: asyncio.BaseProtocol | None = None,
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.sock: EngineSocket | None = None
        self._http = http
        """aiohttp's protocol of this connection, told of its loss and of write pauses."""
        self._reader = FrameReader(engine.limits.max_payload)
        self._inbox: deque[tuple[int, bytes]] = deque()
        """Messages not handled yet: read before `serve`, or after one that suspended."""
        self._running: asyncio.Future[None] | None = None
        """The task finishing a message whose handling suspended."""
        self._waiter: asyncio.Future[None] | None = None
        """`next_text`'s wait for a message."""
        self._reason: str | None = None
        """Why the websocket ended (None: it has not)."""
        self._done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        """`_reason`, once no message is being handled."""

    @classmethod
    def take_over(cls, engine: EngineIOServer, request: web.BaseRequest) -> AiohttpWebSocket | None:
        """Become the protocol of ``request``'s connection (before the handshake's reply, so
        that no frame reaches aiohttp's reader); None if the connection is gone."""
        transport = request.transport
        if transport is None or transport.is_closing():
            return None
        channel = cls(engine, transport, transport.get_protocol())
        transport.set_protocol(channel)
        return channel

    # -- writing (the session's channel) -------------------------------------------------------

    def flush(self, sock: EngineSocket) -> None:
        wt = self.transport
        proto = sock.proto
        if wt.is_closing():
            proto.data_to_send()  # nobody to take it
            return
        backlog = wt.get_write_buffer_size()
        data = proto.data_to_send()
        if not data:
            return
        if backlog > self.engine.limits.max_send_buffer and not sock.closed:
            sock.close("slow consumer", graceful=False)
            return
        self.engine.bytes_sent += len(data)
        wt.write(data)

    def close(self, sock: EngineSocket, graceful: bool) -> None:
        wt = self.transport
        if wt.is_closing():
            return
        if graceful:
            data = sock.proto.data_to_send()
            if data:
                self.engine.bytes_sent += len(data)
                wt.write(data)
            wt.close()
            asyncio.get_running_loop().call_later(CLOSE_GRACE, wt.abort)
        else:
            wt.abort()

    async def send_probe_reply(self, data: bytes) -> None:
        self.transport.write(data)

    def abort(self) -> None:
        self.transport.abort()

    # -- reading -------------------------------------------------------------------------------

    async def next_text(self) -> bytes | None:
        """The next text message read before `serve` (None: anything else, or the end)."""
        while not self._inbox:
            if self._reason is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            self.transport.resume_reading()
            try:
                await self._waiter
            finally:
                self._waiter = None
        opcode, payload = self._inbox.popleft()
        return payload if opcode == TEXT else None

    async def serve(self, sock: EngineSocket) -> str:
        """Hand ``sock`` every message from now on (those in the inbox first); the reason the
        websocket ended for it, once no message of it is being handled."""
        self.sock = sock
        self._handle_inbox()
        return await asyncio.shield(self._done)

    def data_received(self, data: bytes) -> None:
        if self._reason is not None:
            return
        messages = self._reader.feed(data)
        sock = self.sock
        if sock is None or self._running is not None:
            self._inbox.extend(messages)
            self._wait()
            return
        for i, (opcode, payload) in enumerate(messages):
            if opcode == TEXT:
                if not self._handle(sock.receive_text(payload)):
                    self._inbox.extend(messages[i + 1 :])
                    return
            elif not self._other(opcode, payload, sock):
                self._inbox.extend(messages[i + 1 :])
                return

    def _wait(self) -> None:
        """Messages wait: read no more until they are handled (the memory of one read)."""
        if self._inbox:
            self.transport.pause_reading()
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _handle_inbox(self) -> None:
        sock = self.sock
        assert sock is not None
        inbox = self._inbox
        while inbox and self._reason is None:
            opcode, payload = inbox.popleft()
            if opcode == TEXT:
                if not self._handle(sock.receive_text(payload)):
                    return
            elif not self._other(opcode, payload, sock):
                return
        if self._reason is None:
            self.transport.resume_reading()

    def _other(self, opcode: int, payload: bytes, sock: EngineSocket) -> bool:
        """Any message but text; False when reading stops (the end, or a suspended one)."""
        if opcode == BINARY:
            return self._handle(sock.receive_binary(payload))
        if opcode == PING:
            if not self.transport.is_closing():
                self.transport.write(control_frame(PONG, payload))
            return True
        if opcode == PONG:
            return True
        if opcode == FAILED:
            self._fail(int.from_bytes(payload, "big"))
            return False
        # CLOSE: answered, and the connection closed (as aiohttp's autoclose does)
        code = close_code(payload)
        self._reply_close(1000)
        self._end("client close" if code in GOODBYE_CODES else "transport close")
        return False

    def _handle(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Run one message's handling inline; False when reading stops (the session closed,
        or the handling suspended: a task finishes it, the inbox waits)."""
        try:
            yielded = coro.send(None)
        except StopIteration:
            if self.sock is not None and self.sock.closed:
                self._end("transport close")
                return False
            return True
        except Exception:
            log.exception("error handling a websocket message")
            self._end("transport close")
            self.transport.abort()
            return False
        self.transport.pause_reading()
        running = asyncio.ensure_future(_finish(coro, yielded))
        running.add_done_callback(self._finished)
        self._running = running
        return False

    def _finished(self, running: asyncio.Future[None]) -> None:
        self._running = None
        exc = None if running.cancelled() else running.exception()
        if exc is not None:
            log.error("error handling a websocket message", exc_info=exc)
            self._end("transport close")
            self.transport.abort()
        elif self.sock is not None and self.sock.closed:
            self._end("transport close")
        if self._reason is not None:
            if not self._done.done():
                self._done.set_result(self._reason)
            return
        self._handle_inbox()

    def _fail(self, code: int) -> None:
        """A protocol violation: a close frame with ``code``, then the connection closes."""
        self._reply_close(code)
        self._end("payload too large" if code == MESSAGE_TOO_BIG else "transport error")

    def _reply_close(self, code: int) -> None:
        """A close frame after what is queued, then the connection closes."""
        wt = self.transport
        if self.sock is not None:
            self.sock.flush()
        if not wt.is_closing():
            wt.write(close_frame(code))
            wt.close()
            asyncio.get_running_loop().call_later(CLOSE_GRACE, wt.abort)

    def _end(self, reason: str) -> None:
        """The websocket is over for its session: told once no message is being handled."""
        self._inbox.clear()
        if self._reason is not None:
            return
        self._reason = reason
        if self._running is None:
            self._done.set_result(reason)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the connection ------------------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self._end("transport close")
        if self._http is not None:
            self._http.connection_lost(exc)  # aiohttp ends its request

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        if self._http is not None:
            self._http.pause_writing()

    def resume_writing(self) -> None:
        if self._http is not None:
            self._http.resume_writing()


class _Resumed:
    """Awaiting it continues a coroutine that already ran up to its first suspension
    (``yielded``: what it yielded there), so a task can finish what began inline."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self.coro
        yielded = self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # thrown into the task (a cancellation)
                try:
                    yielded = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration:
                    return


async def _finish(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    await _Resumed(coro, yielded)


def _ws_response_kwargs(max_msg_size: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "compress": False,
        "autoping": True,
        "max_msg_size": max_msg_size,
        "timeout": CLOSE_GRACE,
    }
    if "decode_text" in inspect.signature(web.WebSocketResponse.__init__).parameters:
        kwargs["decode_text"] = False
    return kwargs


class AiohttpEngineIO:
    """Serves an `EngineIOServer`'s sessions to an aiohttp application.

    ``forward`` is asked about a request whose sid is not here (a cluster node proxies it to the
    sid's owner); its None answers "Session ID unknown".
    """

    def __init__(self, engine: EngineIOServer) -> None:
        self.engine = engine
        self.forward: Forward | None = None
        self._ws_kwargs = _ws_response_kwargs(engine.limits.max_payload)
        self._waiting_polls: dict[asyncio.Future[None], asyncio.BaseTransport] = {}
        self._poll_watch: asyncio.TimerHandle | None = None

    def attach(self, app: web.Application, path: str = "/socket.io/") -> None:
        """Serve Engine.IO at exactly ``path`` (and the same path without its trailing slash);
        the sessions close when ``app`` shuts down."""
        path = "/" + path.strip("/")
        app.router.add_route("*", path + "/", self.handle_request)
        if path != "/":
            app.router.add_route("*", path, self.handle_request)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.engine.shutdown()

    # -- requests ------------------------------------------------------------------------------

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler for the Engine.IO path."""
        headers = request.headers
        origin = headers.get("Origin")
        route = self.engine.route(
            request.method,
            request.query,
            upgrade=headers.get("Upgrade", "").lower() == "websocket",
            origin=origin,
            host=request.host,
            access_control_request_headers=headers.get("Access-Control-Request-Headers"),
        )
        if type(route) is Poll:
            reply = await route.session.take_poll(self._gone(request), _connected(request))
            return self._reply(request, reply)
        if type(route) is Post:
            reply = await route.session.take_post(_body_reader(request), request.content_type)
            return self._reply(request, reply)
        if type(route) is Upgrade:
            return await self._ws_upgrade(request, route.session)
        if type(route) is Handshake:
            if route.websocket:
                return await self._ws_handshake(request, route.eio)
            sock = self.engine.open_session(route.eio, request.remote, query=request.query)
            await sock.open()
            return self._reply(request, sock.poll_reply())
        if type(route) is Preflight:
            return web.Response(status=204, headers=route.headers)
        assert type(route) is Refuse
        if route.missing is not None and self.forward is not None:
            forwarded = await self.forward(request, route.missing)
            if forwarded is not None:
                return forwarded
        return self._reply(request, HttpReply(route.status, route.body, "application/json"))

    def _reply(self, request: web.BaseRequest, reply: HttpReply) -> web.Response:
        headers = self.engine.cors_headers(request.headers.get("Origin"))
        if reply.content_type is not None:
            headers["Content-Type"] = reply.content_type
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    # -- long-polling --------------------------------------------------------------------------

    def _gone(self, request: web.BaseRequest) -> Callable[[], Awaitable[object]]:
        """``take_poll``'s watch: ends when the pending GET's connection closes."""

        async def gone() -> None:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting_polls[future] = transport
            if self._poll_watch is None:
                loop = asyncio.get_running_loop()
                self._poll_watch = loop.call_later(_POLL_WATCH_PERIOD, self._check_polls)
            try:
                await future
            finally:
                self._waiting_polls.pop(future, None)

        return gone

    def _check_polls(self) -> None:
        self._poll_watch = None
        for future, transport in list(self._waiting_polls.items()):
            if transport.is_closing():
                del self._waiting_polls[future]
                if not future.done():
                    future.set_result(None)
        if self._waiting_polls:
            loop = asyncio.get_running_loop()
            self._poll_watch = loop.call_later(_POLL_WATCH_PERIOD, self._check_polls)

    # -- websocket -----------------------------------------------------------------------------

    async def _ws_handshake(self, request: web.Request, eio: int) -> web.StreamResponse:
        ws = web.WebSocketResponse(**self._ws_kwargs)
        if not ws.can_prepare(request).ok:
            return self._reply(request, BAD_REQUEST_REPLY)
        channel = AiohttpWebSocket.take_over(self.engine, request)
        await ws.prepare(request)
        if channel is None or channel.transport.is_closing():
            return ws
        sock = self.engine.open_session(eio, request.remote, channel, request.query)
        await sock.open()
        reason = "transport close"
        try:
            if not sock.closed:
                reason = await channel.serve(sock)
        finally:
            await sock.connection_lost(reason)
        return ws

    async def _ws_upgrade(self, request: web.Request, sock: EngineSocket) -> web.StreamResponse:
        ws = web.WebSocketResponse(**self._ws_kwargs)
        if not ws.can_prepare(request).ok:
            return self._reply(request, BAD_REQUEST_REPLY)
        channel = AiohttpWebSocket.take_over(self.engine, request)
        await ws.prepare(request)
        if channel is None:
            return ws
        if channel.transport.is_closing():
            channel.abort()
            return ws
        if await sock.upgrade(channel, channel.next_text):
            reason = "transport close"
            try:
                reason = await channel.serve(sock)
            finally:
                await sock.connection_lost(reason)
        return ws


def _connected(request: web.BaseRequest) -> Callable[[], bool]:
    def connected() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return connected


def _body_reader(request: web.BaseRequest) -> Callable[[int], Awaitable[bytes | None]]:
    async def read(limit: int) -> bytes | None:
        """The request body, or None when it is longer than ``limit`` bytes."""
        length = request.content_length
        if length is not None and length > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
        except NETWORK_ERRORS as exc:
            raise ClientGone from exc
        return b"".join(chunks)

    return read
