"""Start our server in this process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from easyrtc_server.app import create_app
from easyrtc_server.options import Options

from .ports import free_port


@asynccontextmanager
async def running_server(options: dict[str, Any] | None = None) -> AsyncIterator[str]:
    """Run our server with ``options`` (the reference's camelCase names or snake_case).

    Yields its base URL, ``http://127.0.0.1:PORT``.
    """
    port = free_port()
    opts = Options.from_mapping({"host": "127.0.0.1", "port": port, **(options or {})})
    runner = web.AppRunner(create_app(opts), handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
