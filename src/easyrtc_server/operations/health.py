"""``/healthz`` and ``/readyz``: the liveness and readiness probes (Kubernetes and the like).

``/healthz`` answers 200 as long as the process serves HTTP. ``/readyz`` answers 200 when the
server accepts logins and 503 with the reasons otherwise: while it drains
(``EasyRtcServer.draining``, set by the shutdown code) or when any extra readiness check fails;
a cluster adds its own check (say, "redis unreachable") with ``Readiness.add``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from .routes import OpsRequest, Route

if TYPE_CHECKING:
    from ..server import EasyRtcServer

ReadinessCheck = Callable[[], str | None]
"""Returns why the server is not ready, or None when this check is fine."""


class Readiness:
    """The reasons a server may not accept logins: draining, plus any added checks."""

    def __init__(self, server: EasyRtcServer) -> None:
        self.server = server
        self.checks: list[ReadinessCheck] = []

    def add(self, check: ReadinessCheck) -> None:
        self.checks.append(check)

    def reasons(self) -> list[str]:
        found = ["draining"] if self.server.draining else []
        for check in self.checks:
            reason = check()
            if reason:
                found.append(reason)
        return found

    async def healthz(self, _request: OpsRequest) -> web.Response:
        return web.json_response({"status": "ok"}, headers=_NO_CACHE)

    async def readyz(self, _request: OpsRequest) -> web.Response:
        reasons = self.reasons()
        if reasons:
            body = {"status": "not ready", "reasons": reasons}
            return web.json_response(body, status=503, headers=_NO_CACHE)
        return web.json_response({"status": "ready"}, headers=_NO_CACHE)

    def routes(self) -> list[Route]:
        return [Route("GET", "/healthz", self.healthz), Route("GET", "/readyz", self.readyz)]


_NO_CACHE = {"Cache-Control": "no-store"}
