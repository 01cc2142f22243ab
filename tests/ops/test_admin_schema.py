"""The admin API conforms to its OpenAPI document (schemathesis drives it with Hypothesis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from easyrtc_server.operations.admin import OPENAPI
from support.client import Client

from .opskit import served

TOKEN = "schema-token-0123456789"


@pytest.fixture(scope="module")
def live_api() -> Iterator[str]:
    """A server with two logged-in clients, run by its own event loop in a thread."""
    started: list[str] = []
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        async with served(admin_token=TOKEN) as (_, url):
            made = [Client() for _ in range(2)]
            for n, client in enumerate(made):
                await client.connect(url)
                await client.login(username=f"user{n}", roomJoin={"lobby": {"roomName": "lobby"}})
            stop.append(asyncio.Event())
            started.append(url)
            ready.set()
            await stop[0].wait()
            for client in made:
                await client.sio.disconnect()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start"
    try:
        yield started[0] + "/admin/api"
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(30)
        loop.close()


schema = schemathesis.openapi.from_dict(OPENAPI)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms_to_its_openapi_document(case: Any, live_api: str) -> None:
    case.call_and_validate(base_url=live_api, headers={"Authorization": f"Bearer {TOKEN}"})
