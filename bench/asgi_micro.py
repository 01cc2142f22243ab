"""The ASGI driver's CPU per relayed candidate, in process: no uvicorn, no sockets.

The twin of ``relay_micro.py`` for ``transport/asgi_engineio.py``: two websocket sessions of
the lean transport's ASGI app log in through fake ASGI ``receive``/``send`` callables; then A
sends B ``candidate`` commands with acks, ``window`` of them per event-loop pass, through the
driver's read loop, the session layer, the server and the writer tasks (one ``await send()`` per
packet: uvicorn's direct write path needs uvicorn). Prints the microseconds of CPU per message.
A regression guard for the ASGI driver's own cost::

    .venv/bin/python bench/asgi_micro.py --messages 100000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

from easyrtc_server.operations import Operations
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from easyrtc_server.transport.socketio import LeanTransport

CANDIDATE = {
    "type": "candidate",
    "label": 0,
    "id": "0",
    "candidate": "candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 "
    "ufrag zOWr network-id 1 network-cost 10 raddr 0.0.0.0 rport 0 tcptype passive x",
}
SCOPE = {
    "type": "websocket",
    "path": "/socket.io/",
    "query_string": b"EIO=4&transport=websocket",
    "headers": [(b"host", b"127.0.0.1")],
    "client": ("127.0.0.1", 40000),
}


class _Client:
    """One fake websocket: what the app receives is queued here, what it sends is counted."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.drained = asyncio.Event()
        self.sent = 0
        self.acks = 0
        self.acked = asyncio.Event()
        self.inbox.put_nowait({"type": "websocket.connect"})

    async def receive(self) -> dict[str, Any]:
        if self.inbox.empty():
            self.drained.set()
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if text is not None:
            self.sent += len(text)
            if text.startswith("43"):
                self.acks += 1
                self.acked.set()

    async def acknowledged(self, count: int) -> None:
        while self.acks < count:
            self.acked.clear()
            await self.acked.wait()

    def put(self, text: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})


async def run(messages: int, window: int) -> None:
    server = EasyRtcServer(Options(message_rate=0))
    Operations(server)
    app = LeanTransport.from_options(server, server.options).asgi_app()
    a, b = _Client(), _Client()
    tasks = [asyncio.ensure_future(app(dict(SCOPE), c.receive, c.send)) for c in (a, b)]
    auth = {
        "msgType": "authenticate",
        "msgData": {
            "apiVersion": "1.1.1-beta",
            "applicationName": "bench",
            "roomJoin": {"r": {"roomName": "r"}},
        },
    }
    for client in (a, b):
        client.put("40")
        client.put("421" + orjson.dumps(["easyrtcAuth", auth]).decode())
        await client.acknowledged(1)
    target = list(server.core.peers)[1]
    frames = [
        "42"
        + str(100 + i)
        + orjson.dumps(
            [
                "easyrtcCmd",
                {
                    "msgType": "candidate",
                    "targetEasyrtcid": target,
                    "msgData": {**CANDIDATE, "id": str(i)},
                },
            ]
        ).decode()
        for i in range(window)
    ]

    async def drive(count: int) -> None:
        for _ in range(count // window):
            a.drained.clear()
            for frame in frames:
                a.put(frame)
            await a.drained.wait()

    await drive(min(messages, 20_000))  # warm up
    before = b.sent
    cpu, wall = time.process_time(), time.perf_counter()
    await drive(messages)
    await a.acknowledged(messages + 1)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert b.sent > before, "nothing reached B"
    for task in tasks:
        task.cancel()
    print(
        f"{messages} candidates, window {window}, ASGI driver: "
        f"{cpu / messages * 1e6:.2f} µs CPU per message ({messages / cpu:,.0f} msg per CPU-s, "
        f"{messages / wall:,.0f} msg/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=8, help="messages per event-loop pass")
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.window))


if __name__ == "__main__":
    main()
