"""The python-socketio binding: Engine.IO 4 / Socket.IO 5 on aiohttp or ASGI, polling and
websocket.

python-socketio hands event handlers their arguments but not whether the client asked for an
acknowledgement, which EasyRTC needs (a message without one is ignored). So the server class
takes over ``_handle_event``, the one place where the packet's ack id is known. Handlers run
inline (``async_handlers=False``), so one socket's events are handled in arrival order.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import orjson
import socketio
from aiohttp import web
from socketio import packet

from ..options import Options
from . import Ack, SharedEvent


class _Json:
    """orjson for python-socketio, with the standard library for what orjson cannot encode."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except orjson.JSONEncodeError:
            return json.dumps(obj, separators=(",", ":"))

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


class _Link:
    __slots__ = ("remote_address", "sid", "sio")

    def __init__(self, sio: socketio.AsyncServer, sid: str, remote_address: str | None) -> None:
        self.sio = sio
        self.sid = sid
        self.remote_address = remote_address

    transport = "python-socketio"
    close_reason = ""

    async def send(self, event: str, data: Any) -> None:
        await self.sio.emit(event, data, to=self.sid)

    async def send_shared(self, event: SharedEvent, value: Any) -> None:
        """Encoded per socket: python-socketio encodes each ``emit`` itself."""
        await self.sio.emit(event.event, event.data_for(value), to=self.sid)

    async def close(self) -> None:
        await self.sio.disconnect(self.sid)


class _AckingServer(socketio.AsyncServer):
    """Passes every event, with its ack (or None), to the EasyRTC server."""

    binding: PythonSocketIOTransport

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        peer = self.binding.peers.get(sid) if sid is not None else None
        if peer is None or not data or not isinstance(data[0], str):
            return
        ack: Ack | None = None
        if id is not None:

            async def ack(reply: Any) -> None:
                await self._send_packet(
                    eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=id, data=[reply])
                )

        payload = data[1] if len(data) > 1 else None
        await self.binding.server.receive(peer, data[0], payload, ack)


class PythonSocketIOTransport:
    """Serves EasyRTC over python-socketio: ``attach`` it to an aiohttp application, or, built
    with ``async_mode="asgi"``, wrap ``sio`` in ``socketio.ASGIApp`` (see ``asgi.py``)."""

    def __init__(
        self,
        server: Any,
        options: Options,
        *,
        async_mode: Literal["aiohttp", "asgi"] = "aiohttp",
    ) -> None:
        self.server = server
        self.peers: dict[str, Any] = {}  # the server's peers, opaque here
        origins = options.cors_origins
        cors: str | list[str] | None = None
        if "*" in origins:
            cors = "*"
        elif origins:
            cors = list(origins)
        self.sio = _AckingServer(
            async_mode=async_mode,
            async_handlers=False,
            cors_allowed_origins=cors,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            max_http_buffer_size=options.max_http_buffer_size,
            http_compression=False,
            cookie=None,
            json=_Json,
        )
        self.sio.binding = self
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path="socket.io")

    async def _on_connect(self, sid: str, environ: dict[str, Any], *_: Any) -> None:
        peer = await self.server.open(_Link(self.sio, sid, _remote_address(environ)))
        if peer is None:
            raise socketio.exceptions.ConnectionRefusedError("refused")
        self.peers[sid] = peer

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        peer = self.peers.pop(sid, None)
        if peer is not None:
            await self.server.close(peer)


def _remote_address(environ: dict[str, Any]) -> str | None:
    request = environ.get("aiohttp.request")
    if request is not None:
        remote: str | None = request.remote
        return remote
    client = environ.get("asgi.scope", {}).get("client")  # (host, port), or None
    return str(client[0]) if client else None
