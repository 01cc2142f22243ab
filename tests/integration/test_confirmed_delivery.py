"""Messages relayed to a keyed client that were written to its socket just before the socket
dropped, and never reached it (they were in the network, or in TCP buffers): a client that
confirms (``easyrtcResumeAcks``, ``delivery``) gets them after its resume, each once, in
order; one that does not gets today's messages and wire (those are lost).

The network is a proxy between client and server that first swallows everything (the
server's writes are taken by the TCP stack and never arrive), then closes both sides.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import socketio

from easyrtc_server.options import Options
from easyrtc_server.protocol.delivery import STAMP, Seen, stamp_of
from support.client import TIMEOUT, Client
from support.ours import WatchedServer, serving
from support.tcpproxy import TcpProxy
from transport.harness import NodeClient, node_client

ROOM = {"r": {"roomName": "r"}}
AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta", "roomJoin": ROOM}}
ACK = {"msgType": "ack"}


@asynccontextmanager
async def world() -> AsyncIterator[tuple[WatchedServer, str, Client]]:
    """Our server and a peer logged in to room r."""
    server = WatchedServer(Options())
    async with serving(server) as url:
        peer = Client()
        await peer.connect(url)
        await peer.login(roomJoin=ROOM)
        try:
            yield server, url, peer
        finally:
            await peer.sio.disconnect()


class Receiver:
    """One client app across its sockets: the messages it keeps (each stamp once)."""

    def __init__(self, key: str, *, confirms: bool) -> None:
        self.auth: dict[str, Any] = {"easyrtcResumeKey": key}
        if confirms:
            self.auth["easyrtcResumeAcks"] = True
        self.seen = Seen()
        self.got: list[Any] = []
        self.copies = 0
        self.stamped = 0
        self.changed = asyncio.Condition()
        self.sio: socketio.AsyncClient | None = None

    async def _message(self, msg: dict[str, Any]) -> dict[str, str]:
        stamp = stamp_of(msg)
        self.stamped += STAMP in msg
        if stamp is None or self.seen.first_time(stamp):
            self.got.append(msg["msgData"])
        else:
            self.copies += 1
        async with self.changed:
            self.changed.notify_all()
        return ACK  # its acknowledgement, when the server asked for one

    async def login(self, url: str) -> str:
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("easyrtcMsg", self._message)
        await sio.connect(url, transports=["websocket"], auth=self.auth, wait_timeout=TIMEOUT)
        self.sio = sio
        token = await sio.call("easyrtcAuth", AUTH, timeout=TIMEOUT)
        assert token["msgType"] == "token", token
        easyrtcid: str = token["msgData"]["easyrtcid"]
        return easyrtcid

    async def until_got(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT), self.changed:
            await self.changed.wait_for(lambda: len(self.got) >= count)


@asynccontextmanager
async def proxied(url: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(int(url.rsplit(":", 1)[1]))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.mark.parametrize("target", ["peer", "room"])
@pytest.mark.parametrize("confirms", [True, False])
async def test_messages_written_to_a_socket_that_drops_are_delivered_once_after_the_resume(
    confirms: bool, target: str
) -> None:
    """To the client itself, or to its room (a message encoded once for all its members, which
    a confirming member gets stamped for it alone)."""
    key = secrets.token_urlsafe(32)
    client = Receiver(key, confirms=confirms)
    async with world() as (server, url, peer), proxied(url) as proxy:

        async def send(n: int) -> None:
            to = {"targetEasyrtcid": easyrtcid} if target == "peer" else {"targetRoom": "r"}
            chat = {"msgType": "chat", **to, "msgData": n}
            assert await peer.call("easyrtcMsg", chat) == ACK

        easyrtcid = await client.login(proxy.url)
        await peer.next_cmd()  # the room heard of it
        await send(0)
        await client.until_got(1)
        proxy.swallow()  # the network goes dark: what the server writes now never arrives
        await send(1)
        await send(2)
        await proxy.cut()  # ... and then the connection is gone
        await server.until(lambda: server.core.state.holds.is_held(easyrtcid))
        await send(3)  # queued for the hold
        assert await client.login(url) == easyrtcid  # the same app, on a new socket
        await send(4)
        await client.until_got(4 if confirms else 2)
        assert client.sio is not None
        assert await client.sio.call("easyrtcCmd", {"msgType": "getRoomList"}) is not None
        if confirms:  # each once, in order; a copy of 0 (its ack in flight) may come again
            assert client.got == [0, 1, 2, 3, 4]
            assert client.stamped == len(client.got) + client.copies
            assert server.engine.ledger.pending(easyrtcid) == []  # all confirmed
            async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
                metrics = await response.text()
            assert "easyrtc_unconfirmed_messages 0.0" in metrics
            confirmed = next(
                line for line in metrics.splitlines()
                if line.startswith("easyrtc_confirmed_messages_total")
            )  # fmt: skip
            assert float(confirmed.split()[1]) >= 4
        else:  # the wire of before: no stamp; what was in the network is lost
            assert client.got == [0, 3, 4]
            assert client.stamped == 0
        assert peer.cmds.empty()  # the room saw neither a leave nor a join
        await client.sio.disconnect()


async def test_a_connection_taken_over_while_its_socket_seems_alive_gets_what_it_missed() -> None:
    """The client is back on a new socket before the server saw the old one drop (a half-open
    TCP connection): the new socket takes the connection over; what the old one never
    delivered is sent again after the token."""
    key = secrets.token_urlsafe(32)
    client = Receiver(key, confirms=True)
    async with world() as (_server, url, peer), proxied(url) as proxy:
        easyrtcid = await client.login(proxy.url)
        await peer.next_cmd()
        proxy.swallow()  # half-open: the server's socket stays open, nothing arrives
        for n in range(3):
            chat = {"msgType": "chat", "targetEasyrtcid": easyrtcid, "msgData": n}
            assert await peer.call("easyrtcMsg", chat) == ACK
        old = client.sio
        assert await client.login(url) == easyrtcid
        await client.until_got(3)
        assert client.sio is not None
        assert await client.sio.call("easyrtcCmd", {"msgType": "getRoomList"}) is not None
        assert client.got == [0, 1, 2]
        assert peer.cmds.empty()
        await client.sio.disconnect()
        assert old is not None
        await old.disconnect()


@pytest.mark.parametrize("version", ["4", "2"])
async def test_node_clients_confirm_with_the_key_in_the_auth_or_the_query(version: str) -> None:
    """socket.io-client 4 asks in the CONNECT auth, 2.x (Engine.IO 3) in the query."""
    key = secrets.token_urlsafe(32)
    given = {"easyrtcResumeKey": key, "easyrtcResumeAcks": "1"}
    options = {"transports": ["websocket"], "auth" if version == "4" else "query": given}
    seen = Seen()

    async def login(client: NodeClient) -> str:
        await client.expect("connect")
        token = await client.call("easyrtcAuth", AUTH)
        assert token["msgType"] == "token", token
        easyrtcid: str = token["msgData"]["easyrtcid"]
        return easyrtcid

    async def new_ones(client: NodeClient, count: int) -> list[Any]:
        got: list[Any] = []
        while len(got) < count:
            msg = (await client.expect("message", event="easyrtcMsg"))["data"]
            stamp = stamp_of(msg)
            assert stamp is not None
            if seen.first_time(stamp):
                got.append(msg["msgData"])
        return got

    async with (
        world() as (server, url, peer),
        proxied(url) as proxy,
        node_client(version, proxy.url, options) as first,
    ):
        easyrtcid = await login(first)
        await peer.next_cmd()

        async def send(n: int) -> None:
            chat = {"msgType": "chat", "targetEasyrtcid": easyrtcid, "msgData": n}
            assert await peer.call("easyrtcMsg", chat) == ACK

        await send(0)
        assert await new_ones(first, 1) == [0]
        proxy.swallow()
        await send(1)
        await send(2)
        await proxy.cut()
        await server.until(lambda: server.core.state.holds.is_held(easyrtcid))
        first.proc.kill()
        await send(3)
        async with node_client(version, url, options) as again:
            assert await login(again) == easyrtcid
            assert await new_ones(again, 3) == [1, 2, 3]
            assert peer.cmds.empty()
