"""Calibration baseline (not a test): the least an aiohttp websocket server can do per event.

Speaks just enough Engine.IO 4 / Socket.IO 5 for loadgen.js over websocket (open packet,
CONNECT, EVENT with ack -> ACK), with orjson and one ``send_str`` per reply; no heartbeats, no
polling, no checks. It bounds what a Python transport on aiohttp can reach.

    .venv/bin/python bench/transport_echo/baseline_server.py PORT [--uvloop]
"""

from __future__ import annotations

import asyncio
import sys

import orjson
from aiohttp import WSMsgType, web


async def handle(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    await ws.send_str(
        '0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
    )
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            break
        data: str = msg.data
        if data.startswith("40"):
            await ws.send_str('40{"sid":"y"}')
        elif data.startswith("42"):
            start = data.index("[")
            args = orjson.loads(data[start:])
            await ws.send_str("43" + data[2:start] + orjson.dumps([args[1]]).decode())
    return ws


def main() -> None:
    port = int(sys.argv[1])
    if "--uvloop" in sys.argv:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = web.Application()
    app.router.add_get("/socket.io/", handle)
    print(f"listening {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
