"""Start our server in this process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from easyrtc_server.app import create_app
from easyrtc_server.hooks import Hooks
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer

from .client import Client
from .ports import free_port


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
    port = free_port()
    runner = web.AppRunner(create_app(server=server, transport=transport), handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def connected_clients(
    server: EasyRtcServer, count: int, *, transport: str = "websocket"
) -> AsyncIterator[list[Client]]:
    """Serve ``server`` and connect ``count`` socket.io clients to it (not logged in)."""
    async with serving(server) as url:
        made = [Client(transport) for _ in range(count)]
        for client in made:
            await client.connect(url)
        try:
            yield made
        finally:
            await asyncio.gather(*(c.sio.disconnect() for c in made if c.sio.connected))
