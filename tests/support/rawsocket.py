"""A raw Engine.IO 4 websocket connected to "/", for tests that send hand-made packets."""

from __future__ import annotations

import aiohttp

from .client import TIMEOUT


async def connected_socket(
    session: aiohttp.ClientSession, url: str
) -> aiohttp.ClientWebSocketResponse:
    """A websocket to ``url`` past the Engine.IO open and the Socket.IO connect to "/"."""
    ws = await session.ws_connect(
        url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    )
    assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
    await ws.send_str("40")
    assert (await ws.receive_str(timeout=TIMEOUT)).startswith("40")
    return ws
