"""Issue 13: a long-polling client that goes away leaves at once; one that pauses does not.

Closing a tab aborts its pending GET (or a POST mid-body). The reference's Engine.IO ends the
session there ("poll connection closed prematurely"); so does ours: the others see
``removeClient`` within a second. A client that merely waits between polls keeps the heartbeat
rules (it is dropped only once the heartbeat timeout has passed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from support.client import TIMEOUT, Client
from support.ours import running_server
from support.polling import PollingClient


@asynccontextmanager
async def watched(eio: int, **options: Any) -> AsyncIterator[tuple[Client, PollingClient, str]]:
    """A server, a websocket watcher and a polling client, both logged in to one room."""
    async with (
        running_server(options) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
    ):
        watcher = Client()
        await watcher.connect(url)
        await watcher.login()
        leaver = PollingClient(session, url, eio)
        await leaver.login()
        joined = await watcher.next_cmd()
        assert (
            leaver.easyrtcid
            in joined["msgData"]["roomData"]["default"]["clientListDelta"]["updateClient"]
        )
        try:
            yield watcher, leaver, url
        finally:
            await watcher.sio.disconnect()


async def seconds_until_removed(watcher: Client, easyrtcid: str) -> float:
    start = time.monotonic()
    while True:
        push = await watcher.next_cmd()
        delta = push["msgData"]["roomData"]["default"].get("clientListDelta", {})
        if easyrtcid in delta.get("removeClient", {}):
            return time.monotonic() - start


async def assert_held(reader: asyncio.StreamReader) -> None:
    """The server holds the request: no answer comes back for a while."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)


@pytest.mark.parametrize("eio", [4, 3])
async def test_aborted_pending_get_leaves_at_once(eio: int) -> None:
    async with watched(eio) as (watcher, leaver, url):
        host, port = urlsplit(url).netloc.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(leaver.raw_request("GET"))
        await assert_held(reader)
        writer.close()  # the tab is closed
        assert await seconds_until_removed(watcher, leaver.easyrtcid) < 1.0
        rooms = (await watcher.cmd("getRoomList"))["msgData"]["roomList"]
        assert rooms["default"]["numberClients"] == 1


@pytest.mark.parametrize("eio", [4, 3])
async def test_post_dropped_mid_body_leaves_at_once(eio: int) -> None:
    async with watched(eio) as (watcher, leaver, url):
        host, port = urlsplit(url).netloc.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(leaver.raw_request("POST", content_length=1000) + b"42")
        await assert_held(reader)
        writer.close()
        assert await seconds_until_removed(watcher, leaver.easyrtcid) < 1.0


@pytest.mark.parametrize("eio", [4, 3])
async def test_pausing_client_keeps_heartbeat_rules(eio: int) -> None:
    # heartbeat timeout: 1 + 1.5 s after the last ping (4) or the last packet (3)
    async with watched(eio, ping_interval=1, ping_timeout=1.5) as (watcher, leaver, _url):
        # a client that pauses between polls (answered GET, no new GET for a while) stays
        paused = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watcher.next_cmd(), 2.0)
        # back, and answering heartbeats: still there
        if eio == 4:
            assert "2" in await leaver.get()
            await leaver.post("3")
        else:
            await leaver.post("2")
            assert "3" in await leaver.get()
        assert (await watcher.cmd("getRoomList"))["msgData"]["roomList"]["default"][
            "numberClients"
        ] == 2
        # silent for good: dropped by the heartbeat, not before
        paused = time.monotonic()
        gone = await seconds_until_removed(watcher, leaver.easyrtcid)
        assert 1.5 <= time.monotonic() - paused <= 4.5, gone
