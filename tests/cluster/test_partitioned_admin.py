"""The admin API of one node of a partitioned cluster answers for the whole cluster (issue 23).

A partitioned node knows another node's client only while they share a room; the admin API
asks every node (``cluster/clusterqueries.py``). Real redis-server, real node processes, real
socket.io clients: the client sits on one node, in a room no client of the asked node is in.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from support.client import Client
from support.nodes import Node, running_nodes
from support.rediscluster import running_redis_cluster
from support.redisserver import running_redis

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "partitioned-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUND = 30.0
"""Seconds a test waits for what it expects (a loaded machine)."""
NODE_ENV = {
    "EASYRTC_CLUSTER_STATE": "partitioned",
    "EASYRTC_ADMIN_TOKEN": TOKEN,
    "EASYRTC_CLUSTER_ALIVE_TTL": "60",  # a killed node stays listed alive: it is missing
}

_names = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def nodes() -> AsyncIterator[list[Node]]:
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 3, cluster="padmin", env=NODE_ENV) as started,
    ):
        yield started


@pytest_asyncio.fixture(loop_scope="module")
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def connect(stack: AsyncExitStack, node: Node, **login: Any) -> Client:
    client = Client()
    await client.connect(node.url)

    async def disconnect() -> None:
        if client.sio.connected:
            async with asyncio.timeout(BOUND):
                await client.sio.disconnect()

    stack.push_async_callback(disconnect)
    await client.login(**login)
    return client


async def api(node: Node, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.request(method, f"{node.url}/admin/api{path}", json=body) as response,
    ):
        return response.status, await response.json()


async def node_id(node: Node) -> str:
    """The node's id, as its start-up line names it."""
    async with asyncio.timeout(BOUND):
        line = await node.wait_for_line("cluster node ")
    found = re.search(r"cluster node (\S+) of", line)
    assert found is not None, line
    return found.group(1)


async def next_msg(client: Client) -> dict[str, Any]:
    async with asyncio.timeout(BOUND):
        return await client.next_msg()


async def test_a_node_lists_kicks_and_messages_a_client_of_another_node(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    app, room, elsewhere = fresh("app"), fresh("room"), fresh("room")
    asked = nodes[0]
    near = await connect(
        stack, asked, applicationName=app, roomJoin={elsewhere: {"roomName": elsewhere}}
    )
    far = await connect(
        stack, nodes[1], applicationName=app, username="far", roomJoin={room: {"roomName": room}}
    )
    await far.cmd("setPresence", msgData={"setPresence": {"show": "away", "status": "brb"}})

    status, apps = await api(asked, "GET", "/applications")
    assert status == 200 and "missingNodes" not in apps
    (listed,) = [a for a in apps["applications"] if a["name"] == app]
    assert listed["connections"] == 2, "both nodes' clients are counted"

    status, rooms = await api(asked, "GET", f"/applications/{app}/rooms")
    assert status == 200
    assert {"name": room, "members": 1, "fields": {}} in rooms["rooms"]
    assert {"name": elsewhere, "members": 1, "fields": {}} in rooms["rooms"]

    status, shown = await api(asked, "GET", f"/applications/{app}/rooms/{room}")
    assert status == 200
    (occupant,) = shown["occupants"]
    since = datetime.fromisoformat(occupant.pop("connectedSince"))
    assert abs(since.timestamp() - datetime.now().timestamp()) < 120
    assert occupant == {
        "easyrtcid": far.easyrtcid,
        "app": app,
        "username": "far",
        "presence": {"show": "away", "status": "brb"},
        "rooms": [room],
        "remoteAddress": "127.0.0.1",
        "transport": "websocket",
    }, "its own node answers: with its address and transport"
    status, seen = await api(asked, "GET", f"/connections/{far.easyrtcid}")
    assert status == 200 and seen["username"] == "far"

    status, sent = await api(
        asked, "POST", "/messages",
        {"app": app, "easyrtcid": far.easyrtcid, "msgType": "notice", "msgData": "to you"},
    )  # fmt: skip
    assert (status, sent) == (200, {"recipients": 1})
    msg = await next_msg(far)
    assert (msg["msgType"], msg["msgData"], msg["easyrtcid"]) == (
        "notice",
        "to you",
        far.easyrtcid,
    )
    status, sent = await api(
        asked, "POST", "/messages", {"app": app, "room": room, "msgType": "notice", "msgData": 2}
    )
    assert (status, sent) == (200, {"recipients": 1})
    msg = await next_msg(far)
    assert (msg["msgType"], msg["msgData"], msg["targetRoom"]) == ("notice", 2, room)

    status, _ = await api(
        asked, "PUT", f"/applications/{app}/rooms/{room}/fields/topic", {"value": "ops"}
    )
    assert status == 200
    async with asyncio.timeout(BOUND):
        cmd = await far.next_cmd()
        while cmd["msgType"] != "roomData" or "field" not in cmd["msgData"]["roomData"][room]:
            cmd = await far.next_cmd()
    assert cmd["msgData"]["roomData"][room]["field"]["topic"]["fieldValue"] == "ops"
    status, rooms = await api(asked, "GET", f"/applications/{app}/rooms")
    assert {"name": room, "members": 1, "fields": {"topic": "ops"}} in rooms["rooms"]
    status, _ = await api(
        asked, "PUT", f"/applications/{app}/rooms/nowhere/fields/topic", {"value": 1}
    )
    assert status == 404

    status, kicked = await api(asked, "DELETE", f"/connections/{far.easyrtcid}")
    assert (status, kicked) == (200, {"disconnected": True})
    async with asyncio.timeout(BOUND):
        await far.disconnected.wait()
        while (await api(asked, "GET", f"/connections/{far.easyrtcid}"))[0] != 404:
            pass
    status, _ = await api(asked, "DELETE", f"/connections/{far.easyrtcid}")
    assert status == 404
    assert near.sio.connected


async def test_a_node_that_does_not_answer_is_named(
    nodes: list[Node], stack: AsyncExitStack
) -> None:
    app, room = fresh("app"), fresh("room")
    gone = nodes[2]
    gone_id = await node_id(gone)
    lost = await connect(stack, gone, applicationName=app, roomJoin={room: {"roomName": room}})
    status, apps = await api(nodes[0], "GET", "/applications")
    assert status == 200 and "missingNodes" not in apps
    await gone.kill()  # its alive key outlives it (60 s): listed, but nobody answers
    status, apps = await api(nodes[0], "GET", "/applications")
    assert status == 200 and apps["missingNodes"] == [gone_id]
    status, answer = await api(nodes[0], "GET", f"/connections/{lost.easyrtcid}")
    assert status == 503, "it may be on the node that did not answer"
    assert answer["missingNodes"] == [gone_id]
    status, answer = await api(nodes[0], "GET", "/connections/nobody")
    assert (status, answer["missingNodes"]) == (503, [gone_id])


async def test_the_queries_travel_over_a_redis_cluster(stack: AsyncExitStack) -> None:
    """Sharded pub/sub (``SSUBSCRIBE``): each node's query channel on its own master."""
    app, room = fresh("app"), fresh("room")
    async with (
        running_redis_cluster() as redis,
        running_nodes(redis.url, 2, cluster="padminrc", env=NODE_ENV) as (asked, other),
    ):
        far = await connect(
            stack, other, applicationName=app, username="far", roomJoin={room: {"roomName": room}}
        )
        status, seen = await api(asked, "GET", f"/connections/{far.easyrtcid}")
        assert (status, seen["username"]) == (200, "far")
        body = {"app": app, "room": room, "msgType": "notice", "msgData": "sharded"}
        assert await api(asked, "POST", "/messages", body) == (200, {"recipients": 1})
        msg = await next_msg(far)
        assert (msg["msgType"], msg["msgData"]) == ("notice", "sharded")
        status, kicked = await api(asked, "DELETE", f"/connections/{far.easyrtcid}")
        assert (status, kicked) == (200, {"disconnected": True})
        async with asyncio.timeout(BOUND):
            await far.disconnected.wait()
