"""A cluster of three nodes behaves as one EasyRTC server, wherever each client connects.

One real ``redis-server`` and three real node processes for the whole module; each test uses
its own application names, so tests do not see each other. Clients are real socket.io clients:
python-socketio (``support.client``) and Node socket.io-client 4 and 2.4
(``transport.harness.node_client``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.partitionlog import PartitionLayout
from support.client import Client
from support.nodes import Node, running_nodes
from support.redisserver import running_redis
from transport.harness import node_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

_names = itertools.count(1)


def fresh(prefix: str) -> str:
    """A name no other test uses (applications, rooms)."""
    return f"{prefix}{next(_names)}"


ROOM_MAX = 5
SNAPSHOT_ENTRIES = 20
DISCONNECT_TIMEOUT = 10
TESTS_DIR = Path(__file__).resolve().parent.parent
NODE_ENV = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
    "EASYRTC_ROOM_MAX_CONNECTION": str(ROOM_MAX),
    "EASYRTC_CLUSTER_SNAPSHOT_ENTRIES": str(SNAPSHOT_ENTRIES),
    "EASYRTC_CLUSTER_LOG_RETENTION": "0",  # trimmed at each snapshot: a late node's catch-up
    "EASYRTC_MESSAGE_RATE": "1000",  # a partitioned node answers setPresence at once: the
    # snapshot test's loop would reach the default rate (100/s) before a partition is trimmed
}


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=["log", "partitioned"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[Node]]:
    """Three nodes of one cluster with the test hooks (``hooked_node``), rooms of 5 at most;
    the cluster keeps its state in one log, or in partitions (``cluster_state``)."""
    env = {**NODE_ENV, "EASYRTC_CLUSTER_STATE": request.param}
    async with hooked_cluster("beh", env) as started:
        yield started


@asynccontextmanager
async def hooked_cluster(cluster: str, env: Mapping[str, str]) -> AsyncIterator[list[Node]]:
    """A redis-server and three nodes of ``cluster`` with the test hooks (``hooked_node``)."""
    async with (
        running_redis() as redis,
        running_nodes(
            redis.url, 3, cluster=cluster, env=env, module="cluster.hooked_node"
        ) as started,
    ):
        yield started


@pytest_asyncio.fixture(loop_scope="module")
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def connect(stack: AsyncExitStack, node: Node) -> Client:
    client = Client()
    await client.connect(node.url)

    async def disconnect() -> None:  # bounded: a stuck goodbye fails the test, never hangs it
        async with asyncio.timeout(DISCONNECT_TIMEOUT):
            await client.sio.disconnect()

    stack.push_async_callback(disconnect)
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


async def caught_up(client: Client) -> None:
    """Wait until ``client``'s node has applied every change made so far, wherever it was made:
    a logged command that changes nothing (leaving a room it is not in) is answered only once
    its node has applied it, after everything before it in the log."""
    reply = await client.cmd(
        "roomLeave", msgData={"roomLeave": {"nowhere": {"roomName": "nowhere"}}}
    )
    assert reply["msgType"] == "roomData", reply


async def removed(client: Client) -> set[str]:
    """The easyrtcids of the next ``removeClient`` delta ``client`` is told of."""
    while True:
        delta = (await next_delta(client)).get("clientListDelta", {})
        if "removeClient" in delta:
            return set(delta["removeClient"])


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
    for i in range(20):  # easyrtcMsg to an easyrtcid, the other way
        await b.sio.emit(
            "easyrtcMsg",
            {"msgType": "chat", "targetEasyrtcid": a.easyrtcid, "msgData": i},
            callback=lambda *_: None,
        )
    msgs = [await a.next_msg() for _ in range(20)]
    assert [(m["senderEasyrtcid"], m["msgData"]) for m in msgs] == [
        (b.easyrtcid, i) for i in range(20)
    ]


async def test_presence_and_api_field_reach_members_on_other_nodes(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    app, room = fresh("app"), fresh("room")
    join = {room: {"roomName": room}}
    a, b = await connect(stack, nodes[0]), await connect(stack, nodes[2])
    await a.login(applicationName=app, roomJoin=join)
    await b.login(applicationName=app, roomJoin=join)
    await next_delta(a)
    reply = await b.cmd("setPresence", msgData={"setPresence": {"show": "away", "status": "lunch"}})
    assert reply["msgType"] == "roomData"
    entry = (await next_delta(a))["clientListDelta"]["updateClient"][b.easyrtcid]
    assert entry["presence"] == {"show": "away", "status": "lunch"}
    field = {"mood": {"fieldName": "mood", "fieldValue": "happy"}}
    await b.cmd("setRoomApiField", msgData={"setRoomApiField": {"roomName": room, "field": field}})
    entry = (await next_delta(a))["clientListDelta"]["updateClient"][b.easyrtcid]
    assert entry["apiField"] == field
    # a newcomer on the third node sees both, as they are now
    c = await connect(stack, nodes[1])
    token = await c.login(applicationName=app, roomJoin=join)
    listed = token["msgData"]["roomData"][room]["clientList"]
    assert listed[b.easyrtcid]["presence"] == {"show": "away", "status": "lunch"}
    assert listed[b.easyrtcid]["apiField"] == field
    await b.cmd("roomLeave", msgData={"roomLeave": {room: {"roomName": room}}})
    for member in (a, c):
        assert await removed(member) == {b.easyrtcid}


async def test_errors_are_those_of_one_server(nodes: list[Node], stack: AsyncExitStack) -> None:
    app = fresh("app")
    a, b = await connect(stack, nodes[0]), await connect(stack, nodes[1])
    before_login: list[Any] = []  # not answered, as by the reference
    await a.sio.emit(
        "easyrtcCmd", {"msgType": "roomJoin", "msgData": {}}, callback=before_login.append
    )
    await a.login(applicationName=app)
    assert before_login == []
    await b.login(applicationName=fresh("other"))
    # b is alive, but in another application: as on one server
    reply = await a.cmd("offer", targetEasyrtcid=b.easyrtcid, msgData={"sdp": "x"})
    assert reply["msgData"]["errorCode"] == "MSG_REJECT_TARGET_EASYRTCID"
    reply = await a.cmd("roomJoin", msgData={"roomJoin": {"bad room!": {"roomName": "bad room!"}}})
    assert reply["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE"
    reply = await a.cmd(
        "roomJoin", msgData={"roomJoin": {"forbidden1": {"roomName": "forbidden1"}}}
    )
    assert reply["msgData"] == {"errorCode": "MSG_REJECT_BAD_ROOM", "errorText": "not this room"}
    reply = await a.cmd("roomLeave", msgData=[])
    assert reply["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE"
    bad_login = Client()
    await bad_login.connect(nodes[2].url)
    stack.push_async_callback(bad_login.sio.disconnect)
    answer = await bad_login.call("easyrtcAuth", {"msgType": "authenticate", "msgData": {}})
    assert answer["msgData"]["errorCode"] == "LOGIN_BAD_STRUCTURE"
    await asyncio.wait_for(bad_login.disconnected.wait(), 10)


async def test_room_max_connection_holds_under_simultaneous_joins_from_three_nodes(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    app, room = fresh("app"), fresh("room")
    join = {room: {"roomName": room}}
    for node in nodes:  # three members: two places left
        await (await connect(stack, node)).login(applicationName=app, roomJoin=join)
    racers = [await connect(stack, nodes[i % 3]) for i in range(12)]
    for i, racer in enumerate(racers):  # each in a room of its own (rooms hold 5)
        own = f"{room}x{i}"
        await racer.login(applicationName=app, roomJoin={own: {"roomName": own}})
    replies = await asyncio.gather(*(r.cmd("roomJoin", msgData={"roomJoin": join}) for r in racers))
    won = [r for r in replies if r["msgType"] == "roomData"]
    lost = [r for r in replies if r["msgType"] == "error"]
    assert len(won) == ROOM_MAX - 3
    assert {r["msgData"]["errorCode"] for r in lost} == {"MSG_REJECT_BAD_ROOM"}
    for node in nodes:
        watcher = await connect(stack, node)
        await watcher.login(applicationName=app, roomJoin={"watch": {"roomName": "watch"}})
        listed = (await watcher.cmd("getRoomList"))["msgData"]["roomList"]
        assert listed[room]["numberClients"] == ROOM_MAX


async def test_rooms_and_apps_are_created_and_reclaimed_cluster_wide(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    app, room = fresh("app"), fresh("room")
    a, b = await connect(stack, nodes[0]), await connect(stack, nodes[1])
    await a.login(applicationName=app, roomJoin={room: {"roomName": room}})
    await b.login(applicationName=app)
    assert room in (await b.cmd("getRoomList"))["msgData"]["roomList"]
    if state_of(nodes) == "log":  # a partitioned node's queries see its rooms (README)
        assert (await b.cmd("rooms"))["msgData"] == {"default": 1, room: 1}
    await a.cmd("roomLeave", msgData={"roomLeave": {room: {"roomName": room}}})
    await caught_up(b)
    listed = (await b.cmd("getRoomList"))["msgData"]["roomList"]
    assert room not in listed, "an empty client-made room is reclaimed on every node"
    # the application goes when its last connection does: a fresh login creates it again
    await a.sio.disconnect()
    await b.sio.disconnect()
    c = await connect(stack, nodes[2])
    token = await c.login(applicationName=app)
    assert set(token["msgData"]["roomData"]["default"]["clientList"]) == {c.easyrtcid}


async def test_hooks_run_on_the_node_of_the_client(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    app, room = fresh("app"), fresh("room")
    marks = [len(node.lines) for node in nodes]
    b = await connect(stack, nodes[1])
    token = await b.login(applicationName=app, roomJoin={room: {"roomName": room}})
    assert nodes[1].process is not None
    assert token["msgData"]["field"]["admittedBy"]["fieldValue"] == nodes[1].process.pid
    async with asyncio.timeout(10):
        await nodes[1].wait_for_line(f"hook room_join of {b.easyrtcid}", start=marks[1])
    for node, mark in ((nodes[0], marks[0]), (nodes[2], marks[2])):
        assert not any(b.easyrtcid in line for line in node.lines[mark:])
    # what the hook wrote reaches every replica: a peer elsewhere sees it in its list
    a = await connect(stack, nodes[0])
    token = await a.login(applicationName=app, roomJoin={room: {"roomName": room}})
    assert token["msgData"]["field"]["admittedBy"]["fieldValue"] == nodes[0].process.pid  # type: ignore[union-attr]


PARTITIONED_ONLY = pytest.mark.parametrize("nodes", ["partitioned"], indirect=True)
"""What the log cluster does not (README: its nodes must each create an application with
options of its own)."""


def state_of(nodes: list[Node]) -> str:
    return nodes[0].env["EASYRTC_CLUSTER_STATE"]


async def test_sessions_and_groups_span_nodes(nodes: list[Node], stack: AsyncExitStack) -> None:
    app, sid = fresh("app"), fresh("session")
    a, b, c = [await connect(stack, node) for node in nodes]
    await a.login(applicationName=app, easyrtcsid=sid)
    await b.login(applicationName=app, easyrtcsid=sid)
    await c.login(applicationName=app)
    await a.cmd("setSessionField", msgData={"note": "hello"})
    for member in (a, b):
        cmd = await member.next_cmd()
        while cmd["msgType"] != "sessionData":
            cmd = await member.next_cmd()
        assert cmd["msgData"]["sessionData"]["field"]["note"]["fieldValue"] == "hello"
    for client in (b, c):
        assert await client.cmd("joinGroup", msgData={"group": "crew"}) == {"msgType": "ack"}
    await caught_up(a)
    reply = await a.call(
        "easyrtcMsg", {"msgType": "chat", "targetGroup": "crew", "msgData": "to the crew"}
    )
    assert reply == {"msgType": "ack"}, "a, outside the group, may still send to it"
    for member in (b, c):
        msg = await member.next_msg()
        assert (msg["msgType"], msg["targetGroup"], msg["msgData"]) == (
            "chat",
            "crew",
            "to the crew",
        )


async def refused_with(client: Client, msg: dict[str, Any]) -> str:
    reply = await client.call("easyrtcMsg", msg)
    assert reply["msgType"] == "error", reply
    return reply["msgData"]["errorCode"]  # type: ignore[no-any-return]


async def test_a_clients_group_message_reaches_members_sharing_no_room_on_every_node(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    """``targetGroup`` alone: every member of the group in the application, wherever it is
    connected and whatever room it is in, not the sender; refused only for a group the
    application never had, as one server does."""
    app, crew, lonely = fresh("app"), fresh("crew"), fresh("lonely")
    a, b, c, d = [await connect(stack, node) for node in (*nodes, nodes[1])]
    for client in (a, b, c, d):
        room = fresh("room")  # each alone in its own room: no node shares a room
        await client.login(applicationName=app, roomJoin={room: {"roomName": room}})
    for client in (b, c):
        assert await client.cmd("joinGroup", msgData={"group": crew}) == {"msgType": "ack"}
    to_crew = {"msgType": "chat", "targetGroup": crew, "msgData": "from a"}
    assert await a.call("easyrtcMsg", to_crew) == {"msgType": "ack"}
    for member in (b, c):
        msg = await member.next_msg()
        assert (msg["senderEasyrtcid"], msg["targetGroup"], msg["msgData"]) == (
            a.easyrtcid,
            crew,
            "from a",
        )
        assert msg["easyrtcid"] == member.easyrtcid
    from_b = {"msgType": "chat", "targetGroup": crew, "msgData": "from b"}
    assert await b.call("easyrtcMsg", from_b) == {"msgType": "ack"}
    assert (await c.next_msg())["msgData"] == "from b"
    assert await a.call("easyrtcMsg", to_crew) == {"msgType": "ack"}
    assert (await b.next_msg())["msgData"] == "from a", "b was not sent its own message"
    assert (await c.next_msg())["msgData"] == "from a"
    nowhere = {"msgType": "chat", "targetGroup": fresh("nogroup"), "msgData": 1}
    assert await refused_with(a, nowhere) == "MSG_REJECT_TARGET_GROUP"
    # a group its only member left still exists, as in one server: acked, reaching nobody
    await a.cmd("groupOf", msgData={"id": d.easyrtcid, "group": lonely})
    await a.cmd("ungroupOf", msgData={"id": d.easyrtcid, "group": lonely})
    to_lonely = {"msgType": "chat", "targetGroup": lonely, "msgData": 2}
    assert await c.call("easyrtcMsg", to_lonely) == {"msgType": "ack"}
    await a.cmd("groupOf", msgData={"id": d.easyrtcid, "group": crew})  # from another node
    assert await a.call("easyrtcMsg", to_crew) == {"msgType": "ack"}
    for member in (b, c, d):
        assert (await member.next_msg())["msgData"] == "from a"


async def presence_seen(watcher: Client, member: Client, status: str) -> None:
    """Until ``watcher`` is told ``member``'s presence status ``status`` (its node applied
    what ``member``'s node said of it before)."""
    await member.cmd("setPresence", msgData={"setPresence": {"show": "chat", "status": status}})
    while True:
        update = (await next_delta(watcher)).get("clientListDelta", {}).get("updateClient", {})
        if (update.get(member.easyrtcid) or {}).get("presence", {}).get("status") == status:
            return


async def test_room_and_peer_messages_with_a_group_reach_its_members_on_other_nodes(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    """``targetRoom`` + ``targetGroup``: the room's members in the group, wherever they are;
    ``targetEasyrtcid`` + ``targetGroup``: only when both are in the group."""
    app, room, crew = fresh("app"), fresh("room"), fresh("crew")
    a, b, d = [await connect(stack, node) for node in nodes]
    for client in (a, b, d):
        await client.login(applicationName=app, roomJoin={room: {"roomName": room}})
    for client in (a, b):
        assert await client.cmd("joinGroup", msgData={"group": crew}) == {"msgType": "ack"}
    await presence_seen(a, b, "grouped")  # b's groups changed before, on b's node
    await presence_seen(b, a, "grouped")
    to_room = {"msgType": "chat", "targetRoom": room, "targetGroup": crew, "msgData": "room"}
    assert await a.call("easyrtcMsg", to_room) == {"msgType": "ack"}
    msg = await b.next_msg()
    assert (msg["msgData"], msg["targetRoom"], msg["easyrtcid"]) == ("room", room, b.easyrtcid)
    to_b = {"msgType": "chat", "targetEasyrtcid": b.easyrtcid, "targetGroup": crew, "msgData": 1}
    assert await a.call("easyrtcMsg", to_b) == {"msgType": "ack"}
    msg = await b.next_msg()
    assert (msg["msgData"], msg["targetGroup"]) == (1, crew)
    # a message to the group alone keeps its order with the sender's next relay
    alone = {"msgType": "chat", "targetGroup": crew, "msgData": "first"}
    then = {"msgType": "chat", "targetEasyrtcid": b.easyrtcid, "msgData": "second"}
    acks = await asyncio.gather(a.call("easyrtcMsg", alone), a.call("easyrtcMsg", then))
    assert acks == [{"msgType": "ack"}] * 2
    assert [(await b.next_msg())["msgData"] for _ in range(2)] == ["first", "second"]
    to_a = {"msgType": "chat", "targetEasyrtcid": a.easyrtcid, "targetGroup": crew, "msgData": 2}
    assert await b.call("easyrtcMsg", to_a) == {"msgType": "ack"}
    assert (await a.next_msg())["msgData"] == 2
    to_d = {**to_b, "targetEasyrtcid": d.easyrtcid}
    assert await refused_with(a, to_d) == "MSG_REJECT_TARGET_GROUP", "d is not in the group"
    assert await refused_with(d, {**to_a, "targetEasyrtcid": b.easyrtcid}) == (
        "MSG_REJECT_TARGET_GROUP"
    ), "nor is its sender"
    plain = {"msgType": "chat", "targetEasyrtcid": d.easyrtcid, "msgData": "plain"}
    assert await a.call("easyrtcMsg", plain) == {"msgType": "ack"}
    assert (await d.next_msg())["msgData"] == "plain", "d got none of the group's messages"
    await b.cmd("ungroupOf", msgData={"id": b.easyrtcid, "group": crew})
    await presence_seen(a, b, "ungrouped")
    assert await refused_with(a, to_b) == "MSG_REJECT_TARGET_GROUP", "b left the group"


async def session_data(client: Client) -> dict[str, Any]:
    """The next ``sessionData`` push's data."""
    while True:
        cmd = await client.next_cmd()
        if cmd["msgType"] == "sessionData":
            return cmd["msgData"]["sessionData"]  # type: ignore[no-any-return]


def values(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: field["fieldValue"] for name, field in fields.items()}


async def test_server_code_changes_reach_every_node(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    """Server code on one node changes sessions, groups, connections and applications of
    clients on the others, as one server does."""
    app, sid, crew = fresh("app"), fresh("session"), fresh("crew")
    a, b, c = [await connect(stack, node) for node in nodes]
    await a.login(applicationName=app, easyrtcsid=sid)
    await b.login(applicationName=app, easyrtcsid=sid)
    await c.login(applicationName=app)

    assert await c.cmd("setSessionFieldOf", msgData={"sid": sid, "note": "hello"}) == {
        "msgType": "ack"
    }, "c's node has no connection of the session"
    for member in (a, b):
        told = await session_data(member)
        assert (told["easyrtcsid"], values(told["field"])) == (sid, {"note": "hello"})
    later = await connect(stack, nodes[2])
    token = await later.login(applicationName=app, easyrtcsid=sid)
    assert values(token["msgData"]["sessionData"]["field"]) == {"note": "hello"}
    nobody = await a.cmd("setSessionFieldOf", msgData={"sid": fresh("nobody"), "note": "x"})
    assert nobody == {"msgType": "refused", "msgData": "KeyError"}

    assert await a.cmd("groupOf", msgData={"id": c.easyrtcid, "group": crew}) == {"msgType": "ack"}
    told = await a.cmd("tellGroup", msgData={"group": crew, "text": "to the crew"})
    assert told == {"msgType": "told", "msgData": 1}
    msg = await c.next_msg()
    assert (msg["msgType"], msg["msgData"], msg["targetGroup"]) == ("news", "to the crew", crew)
    await b.cmd("ungroupOf", msgData={"id": c.easyrtcid, "group": crew})
    told = await a.cmd("tellGroup", msgData={"group": crew, "text": "anyone?"})
    assert told == {"msgType": "told", "msgData": 0}
    gone = await a.cmd("groupOf", msgData={"id": "nosuchclient", "group": crew})
    assert gone == {"msgType": "refused", "msgData": "KeyError"}

    badge = {"id": c.easyrtcid, "name": "badge", "value": "gold"}
    assert await b.cmd("fieldOf", msgData=badge) == {"msgType": "ack"}
    mine = await c.cmd("myFields")
    assert mine["msgData"]["badge"] == "gold", "made on c's own node"

    assert await b.cmd("setAppField", msgData={"name": "motd", "value": "hi"}) == {"msgType": "ack"}
    for node in nodes:
        newcomer, room = await connect(stack, node), fresh("room")  # the default room is full
        token = await newcomer.login(applicationName=app, roomJoin={room: {"roomName": room}})
        assert values(token["msgData"]["application"]["field"]) == {"motd": "hi"}


async def test_push_api_and_queries_act_on_the_whole_cluster(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    app, room = fresh("app"), fresh("room")
    join = {room: {"roomName": room}}
    a, b, c = [await connect(stack, node) for node in nodes]
    for client in (a, b, c):
        await client.login(applicationName=app, roomJoin=join, username=f"u{id(client) % 997}")
    await caught_up(a)
    await caught_up(b)
    occupants = (await a.cmd("occupants", msgData={"room": room}))["msgData"]
    assert occupants == sorted([a.easyrtcid, b.easyrtcid, c.easyrtcid])
    who = (await a.cmd("connection", msgData={"id": c.easyrtcid}))["msgData"]
    assert who == f"u{id(c) % 997}"
    told = await a.cmd("tellRoom", msgData={"room": room, "text": "all hands"})
    assert told == {"msgType": "told", "msgData": 3}
    for client in (a, b, c):
        msg = await client.next_msg()
        assert (msg["msgType"], msg["msgData"], msg["targetRoom"]) == ("news", "all hands", room)
    await a.cmd("setRoomField", msgData={"room": room, "topic": "cluster"})
    for client in (b, c):
        cmd = await client.next_cmd()
        while cmd["msgType"] != "roomData" or "field" not in cmd["msgData"]["roomData"][room]:
            cmd = await client.next_cmd()
        assert cmd["msgData"]["roomData"][room]["field"]["topic"]["fieldValue"] == "cluster"
    assert (await b.cmd("kick", msgData={"to": c.easyrtcid}))["msgData"] is True
    await asyncio.wait_for(c.disconnected.wait(), 10)
    assert await removed(a) == {c.easyrtcid}
    # a client in a room no client of a's node is in: found, told, kicked all the same
    apart = fresh("room")
    d = await connect(stack, nodes[2])
    await d.login(applicationName=app, roomJoin={apart: {"roomName": apart}}, username="apart")
    await caught_up(a)
    assert (await a.cmd("connection", msgData={"id": d.easyrtcid}))["msgData"] == "apart"
    assert (await a.cmd("occupants", msgData={"room": apart}))["msgData"] == [d.easyrtcid]
    await a.cmd("tellClient", msgData={"to": d.easyrtcid, "text": "alone"})
    msg = await d.next_msg()
    assert (msg["msgType"], msg["msgData"]) == ("news", "alone")
    assert (await a.cmd("kick", msgData={"to": d.easyrtcid}))["msgData"] is True
    await asyncio.wait_for(d.disconnected.wait(), 10)


async def test_messages_to_a_room_cross_nodes_in_order_for_node_clients(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    """Node socket.io-client 4 and 2.4 (Engine.IO 3) on two nodes, messages from a third."""
    app, room = fresh("app"), fresh("room")
    auth = {
        "msgType": "authenticate",
        "msgData": {
            "apiVersion": "1.1.1-beta",
            "applicationName": app,
            "roomJoin": {room: {"roomName": room}},
        },
    }
    v4 = await stack.enter_async_context(
        node_client("4", nodes[1].url, {"transports": ["websocket"]})
    )
    v2 = await stack.enter_async_context(
        node_client("2", nodes[2].url, {"transports": ["websocket"]})
    )
    for client in (v4, v2):
        await client.expect("connect")
        token = await client.call("easyrtcAuth", auth)
        assert token["msgType"] == "token"
    sender = await connect(stack, nodes[0])
    await sender.login(applicationName=app, roomJoin={room: {"roomName": room}})
    for i in range(20):
        await sender.sio.emit(
            "easyrtcMsg",
            {"msgType": "chat", "targetRoom": room, "msgData": i},
            callback=lambda *_: None,
        )
    for client in (v4, v2):
        got = [
            (await client.expect("message", event="easyrtcMsg"))["data"]["msgData"]
            for _ in range(20)
        ]
        assert got == list(range(20))


async def test_a_room_message_reaches_several_members_of_another_node_each_addressed(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    """One inbox item per node carries the body once; each member gets its own easyrtcid."""
    app, room = fresh("app"), fresh("room")
    join = {room: {"roomName": room}}
    sender = await connect(stack, nodes[0])
    near = await connect(stack, nodes[0])
    far = [await connect(stack, nodes[1]) for _ in range(3)]
    for client in (sender, near, *far):
        await client.login(applicationName=app, roomJoin=join)
    for client in (sender, near, *far):
        await caught_up(client)
    for text in ("one", "two"):
        reply = await sender.call(
            "easyrtcMsg", {"msgType": "chat", "targetRoom": room, "msgData": text}
        )
        assert reply == {"msgType": "ack"}
    for client in (near, *far):
        for text in ("one", "two"):
            msg = await client.next_msg()
            assert msg["msgData"] == text
            assert msg["easyrtcid"] == client.easyrtcid
            assert msg["senderEasyrtcid"] == sender.easyrtcid
            assert msg["targetRoom"] == room


async def test_a_node_started_later_loads_the_state_from_a_snapshot(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    app, room = fresh("app"), fresh("room")
    join = {room: {"roomName": room}}
    a = await connect(stack, nodes[0])
    await a.login(applicationName=app, roomJoin=join, username="early")
    redis = Redis.from_url(nodes[0].redis_url)
    stack.push_async_callback(redis.aclose)
    partitioned = state_of(nodes) == "partitioned"
    stream, snapshot = "beh:log", "beh:snapshot"
    if partitioned:  # the room's partition: its facts, its snapshot
        layout = PartitionLayout(ClusterKeys("beh"), partitions=1024, groups=16)
        keys = layout.of(layout.room_partition(app, room))
        stream, snapshot = keys.stream, keys.snapshot

    async def trimmed() -> bool:
        info = await redis.xinfo_stream(stream)
        return bool(info["length"] <= info["entries-added"] - SNAPSHOT_ENTRIES)

    # Each change is one log entry: several snapshots, and a trim at the second one. One node
    # writes a snapshot at most every 250 ms, so a fast run may need more entries than this.
    i = 0
    async with asyncio.timeout(60):
        while i < 5 * SNAPSHOT_ENTRIES or not await trimmed():
            status = {"setPresence": {"show": "chat", "status": f"s{i}"}}
            await a.cmd("setPresence", msgData=status)
            i += 1
    assert await redis.exists(snapshot)
    late = Node(nodes[0].redis_url, cluster="beh", env=nodes[0].env, module="cluster.hooked_node")
    await late.start()
    stack.push_async_callback(late.stop)
    if not partitioned:  # a partitioned node loads a partition when a client needs it
        assert any("loaded the cluster state" in line for line in late.lines)
    c = await connect(stack, late)
    token = await c.login(applicationName=app, roomJoin=join)
    listed = token["msgData"]["roomData"][room]["clientList"]
    assert listed[a.easyrtcid]["username"] == "early"
    assert listed[a.easyrtcid]["presence"]["status"] == f"s{i - 1}"  # the last one
    delta = await next_delta(a)
    assert set(delta["clientListDelta"]["updateClient"]) == {c.easyrtcid}
    assert await c.cmd("offer", targetEasyrtcid=a.easyrtcid, msgData={"sdp": "late"}) == {
        "msgType": "ack"
    }
    offer = await a.next_cmd()
    assert (offer["msgType"], offer["senderEasyrtcid"]) == ("offer", c.easyrtcid)


@PARTITIONED_ONLY
async def test_a_node_started_later_has_the_applications_server_code_made(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    made, other = fresh("app"), fresh("app")
    a = await connect(stack, nodes[0])
    await a.login(applicationName=other)
    motd = {"motd": {"fieldValue": "from its options", "fieldOption": {"isShared": True}}}
    assert await a.cmd(
        "createApp", msgData={"name": made, "options": {"appDefaultFieldObj": motd}}
    ) == {"msgType": "ack"}
    unknown = await a.cmd("setAppFieldOf", msgData={"app": fresh("app"), "value": "x"})
    assert unknown == {"msgType": "refused", "msgData": "KeyError"}
    late = Node(nodes[0].redis_url, cluster="beh", env=nodes[0].env, module="cluster.hooked_node")
    await late.start()
    stack.push_async_callback(late.stop)
    c = await connect(stack, late)
    token = await c.login(applicationName=made, roomJoin={"r": {"roomName": "r"}})
    assert values(token["msgData"]["application"]["field"]) == {"motd": "from its options"}
    assert await a.cmd("setAppFieldOf", msgData={"app": made, "value": "changed"}) == {
        "msgType": "ack"
    }
    d = await connect(stack, late)
    token = await d.login(applicationName=made, roomJoin={"r": {"roomName": "r"}})
    assert values(token["msgData"]["application"]["field"]) == {"motd": "changed"}
