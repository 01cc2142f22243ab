"""python-socketio's AsyncClient (Socket.IO 5 over Engine.IO 4) against LeanTransport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from .harness import TIMEOUT, lean_server

TRANSPORTS: dict[str, list[str] | None] = {
    "upgrade": None,
    "websocket": ["websocket"],
    "polling": ["polling"],
}


@pytest.mark.parametrize("driver", ["aiohttp", "asgi", "asgi-direct"])
@pytest.mark.parametrize("mode", list(TRANSPORTS))
async def test_python_socketio_client(mode: str, driver: str) -> None:
    # python-engineio's polling client may drop its session without telling the server (its
    # last POST is not always sent): short heartbeats let the server notice quickly.
    # python-engineio's client refuses polls of more than 16 packets
    async with lean_server(
        ping_interval=0.5,
        ping_timeout=2.0,
        max_poll_packets=16,
        binary_events=True,
        driver=driver,
    ) as run:
        sio = socketio.AsyncClient(reconnection=False)
        pushed: asyncio.Queue[Any] = asyncio.Queue()
        gone = asyncio.Event()
        sio.on("pushed", pushed.put_nowait)
        sio.on("disconnect", gone.set)
        async with asyncio.timeout(TIMEOUT):
            await sio.connect(run.url, transports=TRANSPORTS[mode])
            for data in ({"a": [1, "ü"]}, "text", None):
                assert await sio.call("echo", data, timeout=TIMEOUT) == data
            # several in flight: acks come back, events handled in order
            replies = await asyncio.gather(
                *(sio.call("echo", i, timeout=TIMEOUT) for i in range(20))
            )
            assert replies == list(range(20))
            await sio.emit("push", {"x": 1})
            assert await pushed.get() == {"x": 1}
            await sio.emit("bin", b"\x00\x01raw")
            [peer] = run.server.peers
            await run.server.wait(lambda: peer.received[-1][0] == "bin")
            assert peer.received[-1] == ("bin", b"\x00\x01raw")
            await sio.disconnect()
            await run.server.wait(lambda: len(run.server.closed) == 1)
        assert peer.closes == 1


async def test_python_client_sees_server_close() -> None:
    async with lean_server() as run:
        sio = socketio.AsyncClient(reconnection=False)
        gone = asyncio.Event()
        sio.on("disconnect", gone.set)
        async with asyncio.timeout(TIMEOUT):
            await sio.connect(run.url, transports=["websocket"])
            await sio.emit("close")
            await gone.wait()
            await run.server.wait(lambda: len(run.server.closed) == 1)
