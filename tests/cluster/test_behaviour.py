"""A cluster of three nodes behaves as one EasyRTC server, wherever each client connects.

One real ``redis-server`` and three real node processes for the whole module; each test uses
its own application names, so tests do not see each other. Clients are real socket.io clients:
python-socketio (``support.client``) and Node socket.io-client 4 and 2.4
(``transport.harness.node_client``).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio

from support.client import Client
from support.nodes import Node, running_nodes
from support.redisserver import running_redis

pytestmark = pytest.mark.asyncio(loop_scope="module")

_names = itertools.count(1)


def fresh(prefix: str) -> str:
    """A name no other test uses (applications, rooms)."""
    return f"{prefix}{next(_names)}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def nodes() -> AsyncIterator[list[Node]]:
    async with running_redis() as redis, running_nodes(redis.url, 3, cluster="beh") as started:
        yield started


@pytest_asyncio.fixture(loop_scope="module")
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def connect(stack: AsyncExitStack, node: Node) -> Client:
    client = Client()
    await client.connect(node.url)
    stack.push_async_callback(client.sio.disconnect)
    return client


def room_names(token: dict[str, Any]) -> set[str]:
    return set(token["msgData"]["roomData"])


def members(room_data: dict[str, Any]) -> set[str]:
    return set(room_data["clientList"])


async def next_delta(client: Client) -> dict[str, Any]:
    """The next ``roomData`` push's first room delta."""
    while True:
        cmd = await client.next_cmd()
        if cmd["msgType"] == "roomData":
            (delta,) = cmd["msgData"]["roomData"].values()
            return delta  # type: ignore[no-any-return]


async def test_logins_on_three_nodes_see_one_room(nodes: list[Node], stack: AsyncExitStack) -> None:
    app, room = fresh("app"), fresh("room")
    clients = [await connect(stack, node) for node in nodes]
    ids: list[str] = []
    for i, client in enumerate(clients):
        token = await client.login(
            applicationName=app, username=f"user{i}", roomJoin={room: {"roomName": room}}
        )
        assert room_names(token) == {room}
        listed = members(token["msgData"]["roomData"][room])
        ids.append(client.easyrtcid)
        assert listed == set(ids), "the token lists everyone who joined before, on any node"
        for earlier in clients[:i]:
            delta = await next_delta(earlier)
            assert set(delta["clientListDelta"]["updateClient"]) == {client.easyrtcid}
            entry = delta["clientListDelta"]["updateClient"][client.easyrtcid]
            assert entry["username"] == f"user{i}"
    for client in clients:
        reply = await client.cmd("getRoomList")
        assert reply["msgData"]["roomList"][room] == {"roomName": room, "numberClients": 3}


async def test_signals_cross_nodes_in_order(nodes: list[Node], stack: AsyncExitStack) -> None:
    app = fresh("app")
    a, b = await connect(stack, nodes[0]), await connect(stack, nodes[1])
    await a.login(applicationName=app)
    await b.login(applicationName=app)
    await next_delta(a)
    for msg_type in ("offer", "answer"):
        reply = await a.cmd(msg_type, targetEasyrtcid=b.easyrtcid, msgData={"sdp": msg_type})
        assert reply == {"msgType": "ack"}
    for i in range(50):
        await a.sio.emit(
            "easyrtcCmd",
            {"msgType": "candidate", "targetEasyrtcid": b.easyrtcid, "msgData": {"n": i}},
            callback=lambda *_: None,
        )
    got = [await b.next_cmd() for _ in range(52)]
    assert [c["msgType"] for c in got[:2]] == ["offer", "answer"]
    assert [c["msgData"]["n"] for c in got[2:]] == list(range(50))
    assert all(c["senderEasyrtcid"] == a.easyrtcid for c in got)
