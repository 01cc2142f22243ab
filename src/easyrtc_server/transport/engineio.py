"""The aiohttp driver of the Engine.IO session layer (``engineio_sessions``): request plumbing.

Routes each request with ``EngineIOServer.route``, reads bodies and websocket messages, writes
the replies it is handed, and gives a session its websocket as an `AiohttpWebSocket`: the raw
fast path, where a pass's frames go in one write straight into the asyncio transport (no writer
task, no ``drain``). A websocket whose kernel-side backlog (data written earlier and still not
taken by the peer) exceeds ``max_send_buffer`` bytes when more is to be written is a slow
consumer; one large frame just queued is not a backlog. aiohttp does not tell a handler that
its client left, so pending GETs' connections are checked every `_POLL_WATCH_PERIOD`.

At shutdown, once the sessions are closed, the requests still running are let end (bounded,
`_settle`) before aiohttp's own shutdown starts: aiohttp would otherwise wait for each with a
timeout, and a request ending just as that timeout fires makes it log an ``InvalidStateError``
traceback (aiohttp's race, in ``RequestHandler.shutdown``).

The sessions, their timers and every rule of the protocol live in ``engineio_sessions``; this
module's old names (`EngineIOServer`, `EngineSocket`, ...) are re-exported.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import ClientError, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from .engineio_protocol import SessionState, ws_frame
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
_AFTER_ABORT: Final = 1.0
"""Seconds shutdown waits for the requests whose connections it aborted to return."""
_POLL_WATCH_PERIOD: Final = 0.25
"""Seconds between checks of pending GETs for a closed connection (a closed tab)."""
NETWORK_ERRORS: Final = (OSError, ClientError, HttpProcessingError, asyncio.IncompleteReadError)
"""What reading a request body raises when the client goes away or sends a broken body."""
_TEXT: Final = WSMsgType.TEXT
_CLOSED: Final = SessionState.CLOSED
_BINARY: Final = WSMsgType.BINARY

Forward = Callable[[web.Request, str], Awaitable[web.StreamResponse | None]]
"""``(request, sid) -> response``, or None when the request is not forwarded."""


class AiohttpWebSocket:
    """A session's websocket on aiohttp: frames written straight into the asyncio transport."""

    __slots__ = ("engine", "transport")

    framed = True

    def __init__(self, engine: EngineIOServer, transport: asyncio.Transport) -> None:
        self.engine = engine
        self.transport = transport

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
        self._running: dict[asyncio.Task[Any], web.BaseRequest] = {}
        """aiohttp's task of each request still being handled (and its response written)."""

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
        await self._settle()

    async def _settle(self) -> None:
        """Let the requests still running end, now that the sessions are closed, so that
        aiohttp's shutdown finds none (see the module's docstring). aiohttp reads nothing more
        from any connection by now: a websocket's handler returns once its last frames are
        flushed and its connection closed (within `CLOSE_GRACE`, the close's own bound), a poll
        has its answer, but a POST whose body is still arriving would never get the rest, so its
        connection is aborted at once (its session is closed anyway, or, forwarded, another
        node's client posts again). What still runs after `CLOSE_GRACE` has its connection
        aborted too and gets `_AFTER_ABORT` more to return: this adds at most ``CLOSE_GRACE +
        _AFTER_ABORT`` seconds (3) to a shutdown, and nothing where every client took its last
        frames."""
        current = asyncio.current_task()
        running = {t: r for t, r in self._running.items() if t is not current and not t.done()}
        if not running:
            return
        for request in running.values():
            if request.method == "POST" and not request.content.is_eof():
                _abort(request)
        _, pending = await asyncio.wait(list(running), timeout=CLOSE_GRACE)
        if not pending:
            return
        for task in pending:
            _abort(running[task])
        _, pending = await asyncio.wait(pending, timeout=_AFTER_ABORT)
        if pending:
            log.warning(
                "%d Engine.IO requests still running at shutdown: aiohttp cancels them",
                len(pending),
            )

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.pop(task, None)

    # -- requests ------------------------------------------------------------------------------

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler for the Engine.IO path."""
        task = asyncio.current_task()  # aiohttp's own task for this request, done once answered
        if task is not None:
            self._running[task] = request
            task.add_done_callback(self._finished)
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
        await ws.prepare(request)
        wt = request.transport
        if wt is None or wt.is_closing():
            return ws
        sock = self.engine.open_session(
            eio, request.remote, AiohttpWebSocket(self.engine, wt), request.query
        )
        await sock.open()
        if not sock.closed:
            await self._ws_loop(sock, ws)
        return ws

    async def _ws_upgrade(self, request: web.Request, sock: EngineSocket) -> web.StreamResponse:
        ws = web.WebSocketResponse(**self._ws_kwargs)
        if not ws.can_prepare(request).ok:
            return self._reply(request, BAD_REQUEST_REPLY)
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws
        wt: asyncio.Transport = transport
        if wt.is_closing():
            wt.abort()
            return ws

        async def next_text() -> bytes | None:
            msg = await ws.receive()
            if msg.type is not _TEXT:
                return None
            data = msg.data
            return data if isinstance(data, bytes) else data.encode()

        if await sock.upgrade(AiohttpWebSocket(self.engine, wt), next_text):
            await self._ws_loop(sock, ws)
        return ws

    async def _ws_loop(self, sock: EngineSocket, ws: web.WebSocketResponse) -> None:
        """Read one websocket until it ends; hand messages over inline, in order."""
        receive_text = sock.receive_text
        proto = sock.proto
        reason = "transport close"
        try:
            while True:
                msg = await ws.receive()
                if proto.state is _CLOSED:
                    break
                kind = msg.type
                if kind is _TEXT:
                    data = msg.data
                    await receive_text(data if type(data) is bytes else data.encode())
                elif kind is _BINARY:
                    await sock.receive_binary(msg.data)
                else:
                    if kind is WSMsgType.ERROR:
                        reason = "transport error"
                        if ws.close_code == 1009:
                            reason = "payload too large"
                    elif kind is WSMsgType.CLOSE and msg.data in GOODBYE_CODES:
                        reason = "client close"  # a goodbye (a page closed, a disconnect)
                    break
                if sock.closed:
                    break
        finally:
            await sock.connection_lost(reason)


def _abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


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
