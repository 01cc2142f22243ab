"""/healthz and /readyz."""

from __future__ import annotations

import aiohttp

from easyrtc_server.app import create_app
from easyrtc_server.operations import OPERATIONS_KEY

from .opskit import served


async def test_ready_until_draining_then_not_with_the_reason() -> None:
    async with served() as (server, url), aiohttp.ClientSession() as http:
        async with http.get(url + "/healthz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
        async with http.get(url + "/readyz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ready"})
        server.draining = True
        async with http.get(url + "/readyz") as response:
            assert response.status == 503
            assert await response.json() == {"status": "not ready", "reasons": ["draining"]}
        async with http.get(url + "/healthz") as response:
            assert response.status == 200


def test_extra_readiness_checks_add_their_reasons() -> None:
    app = create_app()
    readiness = app[OPERATIONS_KEY].readiness
    assert readiness.reasons() == []
    readiness.add(lambda: "redis unreachable")
    readiness.add(lambda: None)
    assert readiness.reasons() == ["redis unreachable"]
