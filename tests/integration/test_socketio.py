"""Real socket.io clients against our server, over websocket and over long-polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.client import TIMEOUT, Client
from support.ours import running_server


@pytest.fixture(
    params=[
        ("lean", "websocket"),
        ("lean", "polling"),
        ("python-socketio", "websocket"),
        ("python-socketio", "polling"),
    ],
    ids=lambda p: "-".join(p),
)
async def clients(request: pytest.FixtureRequest) -> AsyncIterator[list[Client]]:
    server_transport, client_transport = request.param
    # python-socketio's server holds a polling client's last GET until a heartbeat: keep it short
    options = {"ping_interval": 1, "ping_timeout": 2}
    async with running_server(options, transport=server_transport) as url:
        made = [Client(client_transport) for _ in range(3)]
        for client in made:
            await client.connect(url)
        yield made
        await asyncio.gather(*(c.sio.disconnect() for c in made if c.sio.connected))


def _delta(push: dict[str, Any], room: str = "default") -> dict[str, Any]:
    assert push["msgType"] == "roomData", push
    return push["msgData"]["roomData"][room]  # type: ignore[no-any-return]


async def test_clients_see_each_other_and_relay_a_call(clients: list[Client]) -> None:
    alice, bob, _ = clients
    await alice.login(username="alice")
    token = await bob.login(username="bob")
    assert set(token["msgData"]["roomData"]["default"]["clientList"]) == {
        alice.easyrtcid,
        bob.easyrtcid,
    }
    joined = _delta(await alice.next_cmd())
    assert joined["clientListDelta"]["updateClient"][bob.easyrtcid]["username"] == "bob"

    offer = {"type": "offer", "sdp": "v=0\r\n"}
    assert await alice.cmd("offer", targetEasyrtcid=bob.easyrtcid, msgData=offer) == {
        "msgType": "ack"
    }
    pushed = await bob.next_cmd()
    assert pushed["msgType"] == "offer"
    assert pushed["senderEasyrtcid"] == alice.easyrtcid
    assert pushed["msgData"] == offer
    assert pushed["easyrtcid"] == bob.easyrtcid

    await bob.cmd("answer", targetEasyrtcid=alice.easyrtcid, msgData={"type": "answer"})
    assert (await alice.next_cmd())["msgType"] == "answer"
    for n in range(20):  # candidates keep their order
        await alice.cmd("candidate", targetEasyrtcid=bob.easyrtcid, msgData={"n": n})
    assert [(await bob.next_cmd())["msgData"]["n"] for _ in range(20)] == list(range(20))
    await bob.cmd("hangup", targetEasyrtcid=alice.easyrtcid)
    hangup = await alice.next_cmd()
    assert (hangup["msgType"], hangup["senderEasyrtcid"]) == ("hangup", bob.easyrtcid)


async def test_rooms_presence_and_api_fields_reach_the_right_members(
    clients: list[Client],
) -> None:
    a, b, c = clients
    await a.login()
    await b.login()
    await c.login(roomJoin={"side": {"roomName": "side"}})
    await a.next_cmd()  # b joined default

    reply = await b.cmd("roomJoin", msgData={"roomJoin": {"side": {"roomName": "side"}}})
    assert set(reply["msgData"]["roomData"]["side"]["clientList"]) == {b.easyrtcid, c.easyrtcid}
    assert b.easyrtcid in _delta(await c.next_cmd(), "side")["clientListDelta"]["updateClient"]

    reply = await b.cmd("setPresence", msgData={"setPresence": {"show": "away", "status": "brb"}})
    assert set(reply["msgData"]["roomData"]) == {"default", "side"}
    seen_by_a = _delta(await a.next_cmd())["clientListDelta"]["updateClient"][b.easyrtcid]
    assert seen_by_a["presence"] == {"show": "away", "status": "brb"}
    seen_by_c = (await c.next_cmd())["msgData"]["roomData"]
    assert list(seen_by_c) == ["side"]

    field = {"mediaIds": {"fieldName": "mediaIds", "fieldValue": {"default": "m1"}}}
    await b.cmd(
        "setRoomApiField", msgData={"setRoomApiField": {"roomName": "side", "field": field}}
    )
    update = _delta(await c.next_cmd(), "side")["clientListDelta"]["updateClient"][b.easyrtcid]
    assert update["apiField"] == field

    rooms = (await a.cmd("getRoomList"))["msgData"]["roomList"]
    assert rooms == {
        "default": {"roomName": "default", "numberClients": 2},
        "side": {"roomName": "side", "numberClients": 2},
    }

    await b.cmd("roomLeave", msgData={"roomLeave": {"side": {"roomName": "side"}}})
    removed = _delta(await c.next_cmd(), "side")["clientListDelta"]["removeClient"]
    assert removed == {b.easyrtcid: {"easyrtcid": b.easyrtcid}}


async def test_app_messages_to_peer_and_room(clients: list[Client]) -> None:
    a, b, c = clients
    for client in clients:
        await client.login()
    assert await a.call(
        "easyrtcMsg", {"msgType": "chat", "targetEasyrtcid": b.easyrtcid, "msgData": "psst"}
    ) == {"msgType": "ack"}
    direct = await b.next_msg()
    assert (direct["senderEasyrtcid"], direct["msgData"]) == (a.easyrtcid, "psst")
    await a.call("easyrtcMsg", {"msgType": "chat", "targetRoom": "default", "msgData": "all"})
    for member in (b, c):
        got = await member.next_msg()
        assert (got["targetRoom"], got["msgData"]) == ("default", "all")
    assert a.msgs.empty()


async def test_disconnect_is_seen_by_peers(clients: list[Client]) -> None:
    a, b, _ = clients
    await a.login()
    await b.login()
    await a.next_cmd()
    await b.sio.disconnect()
    removed = _delta(await a.next_cmd())["clientListDelta"]["removeClient"]
    assert list(removed) == [b.easyrtcid]
    reply = await a.cmd("offer", targetEasyrtcid=b.easyrtcid, msgData={"s": 1})
    assert reply["msgData"]["errorCode"] == "MSG_REJECT_TARGET_EASYRTCID"


async def test_failed_login_replies_then_disconnects_without_ghost(clients: list[Client]) -> None:
    a, b, _ = clients
    await a.login()
    reply = await b.call("easyrtcAuth", {"msgType": "authenticate", "msgData": {}})
    assert reply["msgData"]["errorCode"] == "LOGIN_BAD_STRUCTURE"
    await asyncio.wait_for(b.disconnected.wait(), TIMEOUT)
    rooms = (await a.cmd("getRoomList"))["msgData"]["roomList"]
    assert rooms["default"]["numberClients"] == 1


async def test_hostile_packets_get_errors_and_the_server_keeps_serving(
    clients: list[Client],
) -> None:
    a, b, _ = clients
    await a.login()
    await b.login()
    await a.next_cmd()
    assert (await a.call("easyrtcCmd", None))["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE"
    assert (await a.call("easyrtcMsg", None))["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE"
    assert (await a.cmd("roomJoin", msgData={"roomJoin": {}}))["msgType"] == "error"
    deep: Any = {"candidate": "x"}
    for _ in range(400):
        deep = {"d": deep}
    reply = await a.cmd("candidate", targetEasyrtcid=b.easyrtcid, msgData=deep)
    assert reply["msgType"] in ("ack", "error")
    # still working for everyone
    await a.cmd("offer", targetEasyrtcid=b.easyrtcid, msgData={"ok": True})
    pushed = await b.next_cmd()
    while pushed["msgData"] != {"ok": True}:
        pushed = await b.next_cmd()
    assert pushed["senderEasyrtcid"] == a.easyrtcid
