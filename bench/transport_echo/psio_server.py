"""Echo server on python-socketio 5 (AsyncServer, aiohttp, async_handlers=False). Not a test.

.venv/bin/python bench/transport_echo/psio_server.py PORT [--uvloop]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import socketio
from aiohttp import web


def main() -> None:
    port = int(sys.argv[1])
    if "--uvloop" in sys.argv:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sio = socketio.AsyncServer(
        async_mode="aiohttp", async_handlers=False, ping_interval=5, ping_timeout=10
    )

    @sio.on("echo")
    async def echo(sid: str, data: Any) -> Any:
        return data

    app = web.Application()
    sio.attach(app)
    print(f"listening {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
