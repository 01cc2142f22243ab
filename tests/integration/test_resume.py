"""Keeping a client's easyrtcid across a dropped socket (``hold``), with real Node clients:
socket.io-client 4 gives its resume key in the CONNECT auth, 2.x (Engine.IO 3, no CONNECT auth)
in the query. A peer (python-socketio) watches what the room sees.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from easyrtc_server.options import Options
from easyrtc_server.shutdown import drain
from support.client import TIMEOUT, Client
from support.ours import WatchedServer, serving
from transport.harness import NodeClient, node_client

ROOM = {"r": {"roomName": "r"}}
AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta", "roomJoin": ROOM}}
ACK = {"msgType": "ack"}


def keyed(version: str, key: str, transport: str) -> dict[str, Any]:
    where = "auth" if version == "4" else "query"
    return {"transports": [transport], where: {"easyrtcResumeKey": key}}


@asynccontextmanager
async def world(**options: Any) -> AsyncIterator[tuple[WatchedServer, str, Client]]:
    """Our server and a peer logged in to room r."""
    server = WatchedServer(Options.from_mapping(options))
    async with serving(server) as url:
        peer = Client()
        await peer.connect(url)
        await peer.login(roomJoin=ROOM)
        try:
            yield server, url, peer
        finally:
            await peer.sio.disconnect()


async def login(client: NodeClient) -> str:
    await client.expect("connect")
    token = await client.call("easyrtcAuth", AUTH)
    assert token["msgType"] == "token", token
    resume = await client.expect("message", event="easyrtcResume")
    assert resume["data"]["resumeToken"]
    easyrtcid: str = token["msgData"]["easyrtcid"]
    return easyrtcid


def removed(cmd: dict[str, Any]) -> set[str]:
    delta = cmd["msgData"]["roomData"]["r"].get("clientListDelta", {})
    return set(delta.get("removeClient", {}))


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize("version", ["4", "2"])
async def test_a_dropped_client_resumes_its_easyrtcid_and_gets_what_was_sent(
    version: str, transport: str
) -> None:
    key = secrets.token_urlsafe(32)
    # a killed polling client may have no request pending: the heartbeat finds it gone
    async with world(ping_interval=0.5, ping_timeout=1) as (server, url, peer):
        async with node_client(version, url, keyed(version, key, transport)) as a:
            easyrtcid = await login(a)
            joined = (await peer.next_cmd())["msgData"]["roomData"]["r"]["clientListDelta"]
            assert easyrtcid in joined["updateClient"]
            a.proc.kill()  # no goodbye: the socket just drops
            await server.until(lambda: server.core.state.holds.is_held(easyrtcid))
        for n in range(3):
            reply = await peer.call(
                "easyrtcMsg", {"msgType": "chat", "targetEasyrtcid": easyrtcid, "msgData": n}
            )
            assert reply == ACK
        async with node_client(version, url, keyed(version, key, transport)) as again:
            assert await login(again) == easyrtcid
            got = [await again.expect("message", event="easyrtcMsg") for _ in range(3)]
            assert [m["data"]["msgData"] for m in got] == [0, 1, 2]
            assert await peer.cmd("getRoomList") is not None  # a round trip: all pushes are in
            assert peer.cmds.empty()  # the room saw neither a leave nor a join
            await again.send({"cmd": "disconnect"})  # a goodbye: it leaves at once
            assert removed(await peer.next_cmd()) == {easyrtcid}
        assert not server.core.state.holds.held
        async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
            metrics = await response.text()
        assert "easyrtc_holds_total 1.0" in metrics
        assert "easyrtc_resumes_total 1.0" in metrics
        assert "easyrtc_held_messages_queued_total 3.0" in metrics
        assert "easyrtc_held_connections 0.0" in metrics


@pytest.mark.parametrize("version", ["4", "2"])
async def test_a_goodbye_leaves_at_once(version: str) -> None:
    key = secrets.token_urlsafe(32)
    async with world() as (server, url, peer):
        async with node_client(version, url, keyed(version, key, "websocket")) as a:
            easyrtcid = await login(a)
            await peer.next_cmd()
            await a.send({"cmd": "disconnect"})
            assert removed(await peer.next_cmd()) == {easyrtcid}
        assert server.core.state.holds.counts.holds == 0


async def test_when_the_grace_runs_out_the_room_is_told() -> None:
    key = secrets.token_urlsafe(32)
    async with world(resume_grace=0.3) as (server, url, peer):
        async with node_client("4", url, keyed("4", key, "websocket")) as a:
            easyrtcid = await login(a)
            await peer.next_cmd()
            a.proc.kill()
            assert removed(await peer.next_cmd()) == {easyrtcid}
        assert server.core.state.holds.counts.expiries == 1
        assert not server.guard.sockets.get(easyrtcid)


async def test_server_code_disconnecting_a_held_client_ends_its_hold() -> None:
    key = secrets.token_urlsafe(32)
    async with world() as (server, url, peer):
        async with node_client("4", url, keyed("4", key, "websocket")) as a:
            easyrtcid = await login(a)
            await peer.next_cmd()
            a.proc.kill()
            await server.until(lambda: server.core.state.holds.is_held(easyrtcid))
        assert await server.disconnect(easyrtcid) is True
        assert removed(await peer.next_cmd()) == {easyrtcid}
        assert easyrtcid not in server.core.peers


async def test_a_client_without_a_key_leaves_at_once_when_it_drops() -> None:
    async with world() as (_server, url, peer):
        async with node_client("4", url, {"transports": ["websocket"]}) as a:
            await a.expect("connect")
            token = await a.call("easyrtcAuth", AUTH)
            await peer.next_cmd()
            a.proc.kill()
            assert removed(await peer.next_cmd()) == {token["msgData"]["easyrtcid"]}
        assert a.events("message") == []  # no easyrtcResume push: today's wire


async def test_held_connections_count_against_the_address_limit() -> None:
    key = secrets.token_urlsafe(32)
    async with world(max_connections_per_address=2) as (server, url, _peer):
        async with node_client("4", url, keyed("4", key, "websocket")) as a:
            easyrtcid = await login(a)
            a.proc.kill()
            await server.until(lambda: server.core.state.holds.is_held(easyrtcid))
        async with node_client("4", url, {"transports": ["websocket"]}) as third:
            await third.expect("connect")
            refused = await third.expect("message", event="easyrtcCmd")
            assert refused["data"]["msgData"]["errorCode"] == "LOGIN_NO_SOCKETS"


@pytest.mark.parametrize("secret", [True, False])
async def test_a_shutdown_drops_keyed_clients_silently_when_a_restart_can_restore_them(
    secret: bool,
) -> None:
    key = secrets.token_urlsafe(32)
    options = {"resume_secret": "s" * 32} if secret else {}
    server = WatchedServer(Options.from_mapping(options))
    async with serving(server) as url:
        async with node_client("4", url, keyed("4", key, "websocket")) as a:
            easyrtcid = await login(a)
            peer = Client()
            await peer.connect(url)
            await peer.login(roomJoin=ROOM)
            await drain(server, 5.0)
            reason = (await a.expect("disconnect"))["reason"]
            await asyncio.wait_for(peer.disconnected.wait(), TIMEOUT)  # all it was told is in
            told = [peer.cmds.get_nowait() for _ in range(peer.cmds.qsize())]
            codes = [m["msgData"].get("errorCode") for m in told if m["msgType"] == "error"]
            assert codes == ["SERVER_SHUTDOWN"]
            if secret:  # dropped as by a broken network: it comes back to the next process
                assert reason == "transport close"
                assert not [m for m in a.events("message") if m["data"].get("msgType") == "error"]
                assert not any(removed(m) for m in told if m["msgType"] == "roomData")
            else:  # told and disconnected, as any client
                assert reason == "io server disconnect"
                assert a.events("message")[-1]["data"]["msgData"]["errorCode"] == "SERVER_SHUTDOWN"
            await peer.sio.disconnect()
        assert easyrtcid


@pytest.mark.parametrize(("code", "goodbye"), [(1000, True), (1001, True), (4000, False)])
async def test_a_websocket_closed_with_1000_or_1001_is_a_goodbye(code: int, goodbye: bool) -> None:
    """A page that closes its websocket says goodbye with 1000/1001, even without a Socket.IO
    DISCONNECT; any other close is a drop."""
    key = secrets.token_urlsafe(32)
    async with world() as (server, url, peer), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        )
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
        await ws.send_str("40" + json.dumps({"easyrtcResumeKey": key}))
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("40")
        await ws.send_str("421" + json.dumps(["easyrtcAuth", AUTH]))
        token = json.loads((await ws.receive_str(timeout=TIMEOUT))[3:])[0]
        easyrtcid = token["msgData"]["easyrtcid"]
        await peer.next_cmd()
        await ws.close(code=code)
        await server.until(lambda: easyrtcid not in server.links)
        assert server.core.state.holds.is_held(easyrtcid) is not goodbye
        if goodbye:
            assert removed(await peer.next_cmd()) == {easyrtcid}


async def test_a_socket_whose_connection_was_taken_over_can_do_nothing_more() -> None:
    """The key used again while its first socket is still open: the new socket has the
    easyrtcid, the old one is closed and whatever it still sends is ignored."""
    key = secrets.token_urlsafe(32)
    async with (
        world() as (server, url, peer),
        node_client("4", url, keyed("4", key, "websocket")) as first,
    ):
        easyrtcid = await login(first)
        await peer.next_cmd()
        async with node_client("4", url, keyed("4", key, "websocket")) as second:
            assert await login(second) == easyrtcid
            await first.emit("easyrtcAuth", AUTH, ack=True)  # too late: ignored
            assert (await first.expect("disconnect"))["reason"] == "io server disconnect"
            reply = await peer.call(
                "easyrtcMsg", {"msgType": "chat", "targetEasyrtcid": easyrtcid, "msgData": 1}
            )
            assert reply == ACK
            got = await second.expect("message", event="easyrtcMsg")
            assert got["data"]["msgData"] == 1
            assert peer.cmds.empty()  # the room saw nothing
            assert server.core.state.holds.counts.resumes == 1
