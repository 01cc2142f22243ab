"""Echo server on LeanTransport, for the throughput comparison (not a test).

.venv/bin/python bench/transport_echo/lean_server.py PORT [--uvloop]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiohttp import web

from easyrtc_server.transport import Ack, Link
from easyrtc_server.transport.socketio import LeanTransport


class Echo:
    async def open(self, link: Link) -> Link:
        return link

    async def receive(self, peer: Link, event: str, data: Any, ack: Ack | None) -> None:
        if ack is not None:
            await ack(data)

    async def close(self, peer: Link) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1])
    if "--uvloop" in sys.argv:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = web.Application()
    LeanTransport(Echo()).attach(app)
    print(f"listening {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
