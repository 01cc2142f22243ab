"""Coalesced room updates with the real easyrtc.js: a page's lists converge under a join storm."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from browserkit import Demos
from playwright.async_api import expect

from support.client import Client

STORM = 40
APP = "easyrtc.demo.chat"


@pytest.fixture(params=[pytest.param("ours", id="ours")])
def server_kind(request: pytest.FixtureRequest) -> str:
    """Only ours: ``room_update_tick`` is this server's option (the reference sends each delta)."""
    return str(request.param)


@pytest.fixture
def server_options() -> dict[str, Any]:
    return {"room_update_tick": 0.005, "room_max_connection": 0}


async def test_occupant_list_converges_under_a_join_and_leave_storm(
    demos: Demos, server: str
) -> None:
    watcher = await demos.open("chat.html", name="watcher")
    await watcher.my_id()
    people = watcher.page.locator("#people li[data-easyrtcid]")
    clients = [Client() for _ in range(STORM)]
    await asyncio.gather(*(c.connect(server) for c in clients))
    logins = (c.login(applicationName=APP, username=f"user{i}") for i, c in enumerate(clients))
    await asyncio.gather(*logins)
    await expect(people).to_have_count(STORM)
    for client in clients[:3]:
        await expect(watcher.peer(client.easyrtcid, within="#people")).to_be_visible()

    # half leave at once, the other half change presence at the same time
    leaving, staying = clients[: STORM // 2], clients[STORM // 2 :]
    presence = {"msgData": {"setPresence": {"show": "away", "status": "busy"}}}
    await asyncio.gather(
        *(c.sio.disconnect() for c in leaving),
        *(c.cmd("setPresence", **presence) for c in staying),
    )
    await expect(people).to_have_count(STORM - STORM // 2)
    for client in staying:
        entry = watcher.peer(client.easyrtcid, within="#people")
        await expect(entry).to_have_attribute("data-show", "away")
    for client in leaving:
        await expect(watcher.peer(client.easyrtcid, within="#people")).to_have_count(0)
    await asyncio.gather(*(c.sio.disconnect() for c in staying))
    await expect(people).to_have_count(0)
    assert demos.errors() == {}
