"""Rooms that server code creates, deletes or gives fields (``control.create_room``,
``delete_room``, ``set_room_field``) are the same for every client of a cluster, wherever it
is connected, as in one process.

The same steps and assertions run on one process and on three nodes of a cluster in each state
(``log``, ``partitioned``), over real Redis, with real socket.io clients; the nodes run the test
hooks (``hooked_node``: ``createRoom``/``deleteRoom`` commands call ``server.change``), and
applications hold at most ``MAX_ROOMS`` rooms (``max_rooms_per_app``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio

from support.client import Client
from support.nodes import Node

from .test_behaviour import NODE_ENV, caught_up, hooked_cluster

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_ROOMS = 4
DISCONNECT_TIMEOUT = 10
TRIES = 100
"""Times a listing is asked before it must show what the clients did (each ask is two round
trips; well within the message rate)."""
_names = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"srooms{prefix}{next(_names)}"


@pytest_asyncio.fixture(
    loop_scope="module", scope="module", params=["single", "log", "partitioned"]
)
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[Node]]:
    """One process, or three nodes of a cluster in that state; clients take them in turn."""
    env = {**NODE_ENV, "EASYRTC_MAX_ROOMS_PER_APP": str(MAX_ROOMS)}
    if request.param == "single":
        node = Node(None, env=env, module="cluster.hooked_node")
        await node.start()
        try:
            yield [node]
        finally:
            await node.stop()
        return
    env["EASYRTC_CLUSTER_STATE"] = request.param
    async with hooked_cluster("srooms", env) as started:
        yield started


@pytest_asyncio.fixture(loop_scope="module")
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def clients(stack: AsyncExitStack, nodes: list[Node], app: str) -> list[Client]:
    """Three clients logged into ``app``'s default room, on nodes 0, 1 and 2."""
    out = []
    for i in range(3):
        client = Client()
        await client.connect(nodes[i % len(nodes)].url)

        async def disconnect(client: Client = client) -> None:
            async with asyncio.timeout(DISCONNECT_TIMEOUT):
                await client.sio.disconnect()

        stack.push_async_callback(disconnect)
        await client.login(applicationName=app)
        out.append(client)
    return out


async def room_list(client: Client) -> dict[str, int]:
    """``getRoomList`` as ``room -> numberClients``, once the client's node caught up."""
    await caught_up(client)
    listed = (await client.cmd("getRoomList"))["msgData"]["roomList"]
    return {name: room["numberClients"] for name, room in listed.items()}


async def lists(client: Client, room: str, number: int | None) -> None:
    """``client``'s ``getRoomList`` shows ``room`` with ``number`` clients (None: not at all),
    asked again until it does: a cluster's counts of another node's joins and leaves reach
    Redis a moment after their replies (README, "Partitioned state")."""
    seen: list[int | None] = []
    while not seen or seen[-1] != number:
        assert len(seen) < TRIES, f"{room} listed as {seen[-5:]}, not {number}"
        seen.append((await room_list(client)).get(room))


def joining(room: str) -> dict[str, Any]:
    return {"roomJoin": {room: {"roomName": room}}}


async def join(client: Client, room: str) -> str:
    """``roomJoin``: ``"joined"``, or the refusal's error code."""
    reply = await client.cmd("roomJoin", msgData=joining(room))
    if reply["msgType"] == "roomData":
        return "joined"
    return str(reply["msgData"]["errorCode"])


async def leave(client: Client, room: str) -> None:
    reply = await client.cmd("roomLeave", msgData={"roomLeave": joining(room)["roomJoin"]})
    assert reply["msgType"] == "roomData", reply


async def test_a_room_server_code_creates_is_there_for_every_client(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    """Clients cannot create rooms in the application: the one server code created is listed,
    joined, kept when empty and deleted for all of them; a room with a member is not."""
    app, stage = fresh("app"), fresh("stage")
    setup = Client()
    await setup.connect(nodes[0].url)
    stack.push_async_callback(setup.sio.disconnect)
    await setup.login(applicationName=fresh("setup"))
    no_creation = {"roomAutoCreateEnable": False}
    reply = await setup.cmd("createApp", msgData={"name": app, "options": no_creation})
    assert reply == {"msgType": "ack"}, reply
    a, b, c = await clients(stack, nodes, app)
    assert await join(b, stage) == "MSG_REJECT_BAD_ROOM", "no such room yet"
    assert await a.cmd("createRoom", msgData={"room": stage}) == {"msgType": "ack"}
    for client in (a, b, c):  # listed everywhere, empty
        await lists(client, stage, 0)
    assert await join(b, stage) == "joined", "it exists for a client of another node"
    for client in (a, b, c):
        await lists(client, stage, 1)
    refused = await a.cmd("deleteRoom", msgData={"room": stage})
    assert refused == {"msgType": "refused", "msgData": "EasyRtcError"}, "b is in it"
    assert await join(c, stage) == "joined", "still there"
    await leave(b, stage)
    await leave(c, stage)
    for client in (a, b, c):  # kept when empty
        await lists(client, stage, 0)
    assert await join(c, stage) == "joined", "kept for a client of a third node"
    await leave(c, stage)
    assert await a.cmd("deleteRoom", msgData={"room": stage}) == {"msgType": "ack"}
    for client in (a, b, c):  # deleted for everybody
        await lists(client, stage, None)
    assert await join(b, stage) == "MSG_REJECT_BAD_ROOM"
    assert await join(c, stage) == "MSG_REJECT_BAD_ROOM"
    again = await b.cmd("deleteRoom", msgData={"room": stage})
    assert again == {"msgType": "refused", "msgData": "KeyError"}
    assert await c.cmd("createRoom", msgData={"room": stage}) == {"msgType": "ack"}
    assert await join(a, stage) == "joined", "created again, from another node"


async def test_rooms_server_code_creates_count_against_max_rooms_per_app(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    """The default room and server code's room leave two rooms to clients' joins; at the limit
    a join into server code's room is no creation; once it is deleted its place is free."""
    app, stage = fresh("app"), fresh("stage")
    a, b, c = await clients(stack, nodes, app)
    assert await a.cmd("createRoom", msgData={"room": stage}) == {"msgType": "ack"}
    assert await join(b, fresh("own")) == "joined"
    assert await join(c, fresh("own")) == "joined"
    late = fresh("own")
    assert await join(c, late) == "MSG_REJECT_BAD_ROOM", "four rooms: the limit"
    assert await join(b, stage) == "joined", "not a creation"
    await leave(b, stage)
    assert await b.cmd("deleteRoom", msgData={"room": stage}) == {"msgType": "ack"}
    assert await join(c, late) == "joined", "its place is free"
    assert await join(a, stage) == "MSG_REJECT_BAD_ROOM", "five rooms would be too many"


async def test_a_room_server_code_gives_a_field_is_kept_for_every_client(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    """A room field makes the room kept when empty (``control.set_room_field``): listed on
    every node once its members left, and joined again with its field."""
    app, room = fresh("app"), fresh("room")
    a, b, c = await clients(stack, nodes, app)
    assert await join(b, room) == "joined"
    assert await a.cmd("setRoomField", msgData={"room": room, "topic": "t"}) == {"msgType": "ack"}
    await leave(b, room)
    for client in (a, b, c):
        await lists(client, room, 0)
    reply = await c.cmd("roomJoin", msgData=joining(room))
    assert reply["msgData"]["roomData"][room]["field"]["topic"]["fieldValue"] == "t"
