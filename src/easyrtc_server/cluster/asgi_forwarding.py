"""Forwarding under ASGI: a request for another node's session, proxied from an ASGI scope.

The ASGI driver's ``forward`` hook (``transport.asgi_engineio.AsgiForward``), built on the
`Forwarder` of the node (``forwarding.py``: where the owner is, the headers it sees, the
connection pool, the counts). Polls and posts go as one HTTP request each, a held poll is
dropped when its client leaves (``http.disconnect``), a websocket is accepted and bridged frame
by frame to one opened to the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from aiohttp import ClientError, ClientWebSocketResponse, WSMsgType, WSServerHandshakeError
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from ..transport.asgi_engineio import Message, Receive, Scope, Send
from .forwarding import KEPT_RESPONSE_HEADERS, Destination, Forwarder, upstream_close_code

log = logging.getLogger("easyrtc_server.cluster.forwarding")

_NETWORK_ERRORS: Final = (OSError, ClientError, HttpProcessingError, asyncio.IncompleteReadError)


class _Gone(Exception):
    """The client went away while its request was read."""


class AsgiForwarder:
    """Proxies ASGI requests for sessions of other nodes, through ``forwarder``."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    async def __call__(self, scope: Scope, receive: Receive, send: Send, sid: str) -> bool:
        """Answer a request for ``sid`` from its owner (True), or leave it (False: the driver
        answers "Session ID unknown")."""
        headers: CIMultiDict[str] = CIMultiDict(
            (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
            for k, v in scope.get("headers", ())
        )
        target = scope.get("raw_path") or scope.get("path", "").encode()
        query = scope.get("query_string", b"")
        path = bytes(target).decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        client = scope.get("client")
        remote = str(client[0]) if client else None
        method = "GET" if scope["type"] == "websocket" else scope.get("method", "GET")
        to = await self.forwarder.destination(method, sid, path, headers, remote)
        if to is None:
            return False
        if scope["type"] == "websocket":
            return await self._websocket(receive, send, to)
        return await self._http(scope, receive, send, to)

    async def _http(self, scope: Scope, receive: Receive, send: Send, to: Destination) -> bool:
        forwarder = self.forwarder
        engine = forwarder.engine
        method = scope.get("method", "GET")
        body: bytes | None = None
        if method == "POST":
            try:
                async with asyncio.timeout(engine.read_timeout):
                    body = await _read_upto(receive, engine.max_http_buffer_size + 1)
            except TimeoutError:
                await _respond(send, 408, [], b"")
                return True
            except _Gone:
                return True
        session = forwarder.session

        async def exchange() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            async with session.request(
                method, to.url, headers=to.headers, data=body, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                kept = [
                    (name.lower().encode(), upstream.headers[name].encode())
                    for name in KEPT_RESPONSE_HEADERS
                    if name in upstream.headers
                ]
                return upstream.status, kept, payload

        task = asyncio.ensure_future(exchange())
        gone = asyncio.ensure_future(_disconnected(receive)) if body is None else None
        try:
            waited = {task} if gone is None else {task, gone}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                # The client left during a held poll: drop the forwarded one too, so the owner
                # sees its poll connection close, as if the client were its own.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_NETWORK_ERRORS):
                    await task
                return True
            status, headers, payload = task.result()
        except _NETWORK_ERRORS as exc:
            forwarder.unreachable(to.owner, to.url, exc)
            return False
        finally:
            if gone is not None:
                gone.cancel()
            if not task.done():
                task.cancel()
        forwarder.reached(to.owner)
        await _respond(send, status, headers, payload)
        return True

    async def _websocket(self, receive: Receive, send: Send, to: Destination) -> bool:
        forwarder = self.forwarder
        limit = forwarder.engine.max_http_buffer_size
        try:
            upstream = await forwarder.session.ws_connect(
                to.url, headers=to.headers, max_msg_size=limit, compress=0, autoping=True
            )
        except WSServerHandshakeError as exc:
            forwarder.note(
                None, logging.INFO,
                "node %s refused the upgrade of a forwarded session: %s", to.owner, exc.status,
            )  # fmt: skip
            return False
        except _NETWORK_ERRORS as exc:
            forwarder.unreachable(to.owner, to.url, exc)
            return False
        forwarder.reached(to.owner)
        closed: list[int] = []
        try:
            await send({"type": "websocket.accept"})
            await _bridge(receive, send, upstream, limit, closed)
        finally:
            await upstream.close(code=upstream_close_code(closed[0] if closed else None))
        return True


async def _bridge(
    receive: Receive,
    send: Send,
    upstream: ClientWebSocketResponse,
    limit: int,
    closed: list[int],
) -> None:
    """Copy messages both ways until either side ends; the close code the client sent, if
    it closed, is appended to ``closed``."""

    async def from_client() -> None:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                if message["type"] == "websocket.disconnect":
                    closed.append(int(message.get("code", 1005)))
                return
            text = message.get("text")
            if text is not None:
                if len(text) > limit:
                    return
                await upstream.send_str(text)
            else:
                data = message.get("bytes") or b""
                if len(data) > limit:
                    return
                await upstream.send_bytes(data)

    async def to_client() -> None:
        async for msg in upstream:
            if msg.type is WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": msg.data})
            elif msg.type is WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": msg.data})
            else:
                return

    tasks = [asyncio.ensure_future(from_client()), asyncio.ensure_future(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(*_NETWORK_ERRORS, RuntimeError):
            await send({"type": "websocket.close", "code": 1000})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_upto(receive: Receive, limit: int) -> bytes:
    """The request body, cut after ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)[:limit]


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
