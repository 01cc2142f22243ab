"""Everything an operator uses, attached to the aiohttp application in one call.

Health probes always; Prometheus metrics unless ``metrics_enable`` is off (on the signaling
port, or on ``metrics_port``); the admin API and dashboard when ``admin_token`` is set;
webhooks when ``webhook_urls`` is set. Background work (the event-loop lag probe, the webhook
senders, a separate metrics listener) starts and stops with the application.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .admin import AdminApi
from .health import Readiness
from .metrics import Metrics
from .server import EasyRtcServer
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

    def attach(self, app: web.Application) -> None:
        self.readiness.attach(app)
        if self.metrics is not None and not self.server.options.metrics_port:
            app.router.add_get("/metrics", self.metrics.handle)
        if self.admin is not None:
            self.admin.attach(app)
        app.cleanup_ctx.append(self._background)

    async def _background(self, _app: web.Application) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        metrics_runner: web.AppRunner | None = None
        if self.metrics is not None:
            tasks.append(asyncio.create_task(self.metrics.watch_event_loop()))
            port = self.server.options.metrics_port
            if port:
                metrics_app = web.Application()
                metrics_app.router.add_get("/metrics", self.metrics.handle)
                metrics_runner = web.AppRunner(metrics_app, access_log=None)
                await metrics_runner.setup()
                await web.TCPSite(metrics_runner, self.server.options.host, port).start()
        if self.webhooks is not None:
            await self.webhooks.start()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.webhooks is not None:
                await self.webhooks.stop()
            if metrics_runner is not None:
                await metrics_runner.cleanup()


OPERATIONS_KEY = web.AppKey("easyrtc_operations", Operations)
