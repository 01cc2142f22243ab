"""A socket.io test client that speaks EasyRTC, with a queue per pushed event name."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

TIMEOUT = 10


class Client:
    """A socket.io client speaking EasyRTC, with a queue per pushed event name."""

    def __init__(self, transport: str = "websocket") -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.transport = transport
        self.cmds: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.msgs: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.easyrtcid = ""
        self.sio.on("easyrtcCmd", self.cmds.put_nowait)
        self.sio.on("easyrtcMsg", self.msgs.put_nowait)
        self.sio.on("disconnect", self.disconnected.set)

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, transports=[self.transport], wait_timeout=TIMEOUT)

    async def call(self, event: str, payload: Any) -> Any:
        return await self.sio.call(event, payload, timeout=TIMEOUT)

    async def login(self, **msg_data: Any) -> dict[str, Any]:
        token = await self.call(
            "easyrtcAuth",
            {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta", **msg_data}},
        )
        assert token["msgType"] == "token", token
        self.easyrtcid = token["msgData"]["easyrtcid"]
        return token  # type: ignore[no-any-return]

    async def cmd(self, msg_type: str, **fields: Any) -> Any:
        return await self.call("easyrtcCmd", {"msgType": msg_type, **fields})

    async def next_cmd(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.cmds.get(), TIMEOUT)

    async def next_msg(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.msgs.get(), TIMEOUT)
