"""Everything an operator uses, for the aiohttp and the ASGI app alike.

Health probes always; Prometheus metrics unless ``metrics_enable`` is off (on the signaling
port, or on ``metrics_port``); the admin API and dashboard when ``admin_token`` is set;
webhooks when ``webhook_urls`` is set. ``routes`` are what the application serves (see
``routes.py``); ``start`` and ``stop`` run the background work (the event-loop lag probe, the
webhook senders, a separate metrics listener) with the application.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..server import EasyRtcServer
from . import routes
from .admin import AdminApi
from .health import Readiness
from .metrics import Metrics
from .routes import OpsRequest, Route, StaticRoute
from .webhooks import Webhooks


class Operations:
    """The operating side of one server: readiness, metrics, admin API, webhooks."""

    def __init__(self, server: EasyRtcServer) -> None:
        options = server.options
        self.server = server
        self.readiness = Readiness(server)
        self.metrics: Metrics | None = None
        self.admin: AdminApi | None = None
        self.webhooks: Webhooks | None = None
        if options.metrics_enable:
            self.metrics = Metrics(server)
            server.events.add(self.metrics)  # hook calls are timed where the server makes them
        if options.admin_token:
            self.admin = AdminApi(server, options.admin_token)
        if options.webhook_urls:
            registry = self.metrics.registry if self.metrics is not None else None
            self.webhooks = Webhooks(options, registry)
            server.events.add(self.webhooks)
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_runner: web.AppRunner | None = None

    def routes(self) -> list[Route | StaticRoute]:
        """What the application serves: the probes, ``/metrics`` (unless on its own port), the
        admin API and dashboard."""
        found: list[Route | StaticRoute] = [*self.readiness.routes()]
        if self.metrics is not None and not self.server.options.metrics_port:
            found.append(Route("GET", "/metrics", self.metrics_page))
        if self.admin is not None:
            found += self.admin.routes()
        return found

    async def metrics_page(self, _request: OpsRequest) -> web.Response:
        """``GET /metrics``: the Prometheus text format."""
        assert self.metrics is not None
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def attach(self, app: web.Application) -> None:
        """Serve the routes on an aiohttp application; start and stop with it."""
        routes.attach(app, self.routes())
        app.cleanup_ctx.append(self._background)

    async def _background(self, _app: web.Application) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        if self.metrics is not None:
            self._tasks.append(asyncio.create_task(self.metrics.watch_event_loop()))
            port = self.server.options.metrics_port
            if port:
                metrics_app = web.Application()
                metrics_app.router.add_get("/metrics", self.metrics_page)
                self._metrics_runner = web.AppRunner(metrics_app, access_log=None)
                await self._metrics_runner.setup()
                await web.TCPSite(self._metrics_runner, self.server.options.host, port).start()
        if self.webhooks is not None:
            await self.webhooks.start()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.webhooks is not None:
            await self.webhooks.stop()
        runner, self._metrics_runner = self._metrics_runner, None
        if runner is not None:
            await runner.cleanup()


OPERATIONS_KEY = web.AppKey("easyrtc_operations", Operations)
