"""Start our server in this process on a loopback port, for end-to-end tests.

Sites listen on port 0 and report the port the kernel gave them, so no two servers can race for
one port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from easyrtc_server.app import create_app
from easyrtc_server.hooks import Hooks
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer

from .client import TIMEOUT, Client


@asynccontextmanager
async def running_server(
    options: dict[str, Any] | None = None,
    *,
    hooks: Hooks | None = None,
    transport: str | None = None,
) -> AsyncIterator[str]:
    """Run our server with ``options`` (the reference's camelCase names or snake_case).

    Yields its base URL, ``http://127.0.0.1:PORT``.
    """
    server = EasyRtcServer(Options.from_mapping(options or {}), hooks=hooks)
    async with serving(server, transport=transport) as url:
        yield url


@asynccontextmanager
async def serving(server: EasyRtcServer, *, transport: str | None = None) -> AsyncIterator[str]:
    """Serve ``server`` on a free loopback port; yield its base URL."""
    async with serving_app(create_app(server=server, transport=transport)) as url:
        yield url


@asynccontextmanager
async def serving_app(app: web.Application) -> AsyncIterator[str]:
    """Serve any aiohttp application on a free loopback port; yield its base URL."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def clients_of(
    url: str, count: int, *, transport: str = "websocket", **connect: Any
) -> AsyncIterator[list[Client]]:
    """``count`` socket.io clients connected to ``url`` (not logged in), disconnected after."""
    made = [Client(transport) for _ in range(count)]
    try:
        for client in made:
            await client.sio.connect(url, transports=[transport], wait_timeout=TIMEOUT, **connect)
        yield made
    finally:
        await asyncio.gather(*(c.sio.disconnect() for c in made if c.sio.connected))


@asynccontextmanager
async def connected_clients(
    server: EasyRtcServer, count: int, *, transport: str = "websocket"
) -> AsyncIterator[list[Client]]:
    """Serve ``server`` and connect ``count`` socket.io clients to it (not logged in)."""
    async with serving(server) as url, clients_of(url, count, transport=transport) as made:
        yield made


UNTIL_TIMEOUT = 10.0


class WatchedServer(EasyRtcServer):
    """Our server, telling when it has handled a socket's close (held it, or let it go)."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.handled = asyncio.Condition()

    async def close(self, peer: Any) -> None:
        await super().close(peer)
        async with self.handled:
            self.handled.notify_all()

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait (at most ``UNTIL_TIMEOUT`` seconds) until ``check()`` holds after a close."""
        async with asyncio.timeout(UNTIL_TIMEOUT), self.handled:
            await self.handled.wait_for(check)
