"""Issue 13: a long-polling client that goes away leaves at once; one that pauses does not.

Closing a tab aborts its pending GET (or a POST mid-body). The reference's Engine.IO ends the
session there ("poll connection closed prematurely"); so does ours: the others see
``removeClient`` within a second. A client that merely waits between polls keeps the heartbeat
rules (it is dropped only once the heartbeat timeout has passed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from support.client import TIMEOUT, Client
from support.ours import running_server

AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
PATH = "/socket.io/"


def v3_payload(*packets: str) -> bytes:
    return "".join(f"{len(p.encode('utf-16-le')) // 2}:{p}" for p in packets).encode()


def v3_packets(body: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(body):  # ASCII bodies only in these tests
        colon = body.index(":", i)
        n = int(body[i:colon])
        out.append(body[colon + 1 : colon + 1 + n])
        i = colon + 1 + n
    return out


class PollingClient:
    """A raw Engine.IO long-polling client (revision 4 or 3) logged in to EasyRTC."""

    def __init__(self, session: aiohttp.ClientSession, url: str, eio: int) -> None:
        self.session = session
        self.url = url
        self.eio = eio
        self.sid = ""
        self.easyrtcid = ""

    def params(self) -> dict[str, str]:
        return {"EIO": str(self.eio), "transport": "polling", "sid": self.sid}

    def split(self, body: str) -> list[str]:
        return body.split("\x1e") if self.eio == 4 else v3_packets(body)

    async def get(self) -> list[str]:
        async with self.session.get(self.url + PATH, params=self.params()) as r:
            assert r.status == 200, await r.text()
            return self.split(await r.text())

    async def post(self, *packets: str) -> None:
        body = "\x1e".join(packets).encode() if self.eio == 4 else v3_payload(*packets)
        headers = {"Content-Type": "text/plain;charset=UTF-8"}
        url = self.url + PATH
        async with self.session.post(url, params=self.params(), data=body, headers=headers) as r:
            assert r.status == 200, await r.text()

    async def login(self) -> None:
        params = {"EIO": str(self.eio), "transport": "polling"}
        async with self.session.get(self.url + PATH, params=params) as r:
            packets = self.split(await r.text())
        self.sid = json.loads(packets[0][1:])["sid"]
        if self.eio == 4:
            await self.post("40")
            assert (await self.get())[0].startswith("40")
        await self.post("421" + json.dumps(["easyrtcAuth", AUTH]))
        while True:
            for packet in await self.get():
                if packet.startswith("431"):
                    self.easyrtcid = json.loads(packet[3:])[0]["msgData"]["easyrtcid"]
                    return

    def raw_request(self, method: str, content_length: int | None = None) -> bytes:
        query = "&".join(f"{k}={v}" for k, v in self.params().items())
        lines = [f"{method} {PATH}?{query} HTTP/1.1", f"Host: {urlsplit(self.url).netloc}"]
        if content_length is not None:
            lines += ["Content-Type: text/plain;charset=UTF-8", f"Content-Length: {content_length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


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
