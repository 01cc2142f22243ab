"""A partitioned cluster's relays never overtake the facts their sender made before them
(``factorder``): real redis-server, two real node processes, real socket.io clients.

B waits on node 2; many clients on node 1 each join B's room and at once send B an offer, then
set their presence and at once send B a candidate. Node 2's partition reader lags
(``slow_reader_node``: each read handed on 0.2 s late) while the relays reach it over pub/sub at
once; what B must never see is what one server never shows: an offer from an easyrtcid its room
list lacks, or a candidate ahead of the presence its sender set first. (Without the ordering,
every one of them came first.)
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from ops.opskit import scrape
from support.client import Client
from support.nodes import Node, running_nodes
from support.redisserver import running_redis
from support.roomview import Lists, apply

BOUND = 60.0
"""Seconds the whole exchange may take on a loaded machine."""
SENDERS = 40
AT_ONCE = 10
TESTS_DIR = Path(__file__).resolve().parent.parent
NODE_ENV = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
    "EASYRTC_CLUSTER_STATE": "partitioned",
    "EASYRTC_MESSAGE_RATE": "1000",
    "EASYRTC_ROOM_UPDATE_TICK": "0",  # each change pushed at once, as the reference does
    "EASYRTC_CLUSTER_ORDER_WAIT": "30",  # a loaded machine's reader never outwaits it here
}

LATES = "easyrtc_cluster_order_timeouts_total"

_names = itertools.count(1)


@asynccontextmanager
async def two_nodes(**env: str) -> AsyncIterator[list[Node]]:
    """Node 1, and node 2 with a lagging reader; ``env``: for both."""
    env = {**NODE_ENV, **env}
    async with running_redis() as server, AsyncExitStack() as stack:
        one = await stack.enter_async_context(
            running_nodes(server.url, 1, cluster="porder", env=env)
        )
        two = await stack.enter_async_context(
            running_nodes(
                server.url, 1, cluster="porder", env=env, module="cluster.slow_reader_node"
            )
        )
        yield [*one, *two]


class Watcher:
    """B: its member lists as easyrtc.js keeps them, and every signal checked against them
    as it arrives."""

    def __init__(self, client: Client, token: dict[str, Any], room: str) -> None:
        self.client = client
        self.room = room
        self.lists: Lists = {}
        apply(self.lists, token["msgData"]["roomData"])
        self.offers: set[str] = set()
        self.candidates: set[str] = set()
        self.wrong: list[str] = []

    async def watch(self, senders: int) -> None:
        """Until ``senders`` offers and as many candidates came."""
        while len(self.offers) < senders or len(self.candidates) < senders:
            cmd = await self.client.cmds.get()
            kind = cmd.get("msgType")
            members = self.lists.get(self.room, {})
            if kind == "roomData":
                apply(self.lists, cmd["msgData"]["roomData"])
            elif kind == "offer":
                sender = cmd["senderEasyrtcid"]
                self.offers.add(sender)
                if sender not in members:
                    self.wrong.append(f"an offer from {sender}, not in B's list")
            elif kind == "candidate":
                sender = cmd["senderEasyrtcid"]
                self.candidates.add(sender)
                status = (members.get(sender) or {}).get("presence", {}).get("status")
                if status != cmd["msgData"]["status"]:
                    self.wrong.append(f"a candidate from {sender} before its presence")


async def sender(stack: AsyncExitStack, node: Node, app: str, room: str, b: str) -> None:
    """A client of ``node`` joins ``room``, sends B an offer at once; sets its presence,
    sends B a candidate at once."""
    client = Client()
    await client.connect(node.url)
    stack.push_async_callback(client.sio.disconnect)
    token = await client.login(applicationName=app, roomJoin={room: {"roomName": room}})
    assert b in token["msgData"]["roomData"][room]["clientList"]
    reply = await client.cmd("offer", targetEasyrtcid=b, msgData={"sdp": "x"})
    assert reply == {"msgType": "ack"}, reply
    status = f"s-{client.easyrtcid}"
    presence = {"setPresence": {"show": "chat", "status": status}}
    await client.cmd("setPresence", msgData=presence)  # answered at once, on its node
    reply = await client.cmd("candidate", targetEasyrtcid=b, msgData={"status": status})
    assert reply == {"msgType": "ack"}, reply


async def test_a_peer_never_gets_a_relay_before_the_facts_its_sender_made_first() -> None:
    app, room = f"app{next(_names)}", f"room{next(_names)}"
    async with two_nodes() as (one, two), AsyncExitStack() as stack:
        b_client = Client()
        await b_client.connect(two.url)
        stack.push_async_callback(b_client.sio.disconnect)
        token = await b_client.login(applicationName=app, roomJoin={room: {"roomName": room}})
        b = Watcher(b_client, token, room)
        async with asyncio.timeout(BOUND):
            watching = asyncio.create_task(b.watch(SENDERS))
            for start in range(0, SENDERS, AT_ONCE):
                group = range(start, min(SENDERS, start + AT_ONCE))
                await asyncio.gather(
                    *(sender(stack, one, app, room, b_client.easyrtcid) for _ in group)
                )
            await watching
        assert b.wrong == []
        assert len(b.offers) == len(b.candidates) == SENDERS


async def test_a_relay_is_held_no_longer_than_the_order_wait_then_counted() -> None:
    """Node 2's reader 1.5 s behind, ``cluster_order_wait`` 0.3 s: B gets A's offer all the
    same, before A's join (what one server never does, the price of a bounded wait), and the
    node says so once and counts it."""
    app, room = f"app{next(_names)}", f"room{next(_names)}"
    lagging = {"EASYRTC_CLUSTER_ORDER_WAIT": "0.3", "SLOW_READER_LAG": "1.5"}
    async with two_nodes(**lagging) as (one, two), AsyncExitStack() as stack:
        b = Client()
        await b.connect(two.url)
        stack.push_async_callback(b.sio.disconnect)
        await b.login(applicationName=app, roomJoin={room: {"roomName": room}})
        async with asyncio.timeout(BOUND):
            await sender_offer(stack, one, app, room, b.easyrtcid)
            while (cmd := await b.cmds.get()).get("msgType") != "offer":
                assert cmd.get("msgType") != "roomData", "held until the join came: too long"
            await two.wait_for_line("further ones are counted in")
            _, samples = await scrape(two.url + "/metrics")
        assert samples[LATES, frozenset({("waiting", "relay")})] == 1
        assert sum("further ones are counted in" in line for line in two.lines) == 1


async def sender_offer(stack: AsyncExitStack, node: Node, app: str, room: str, b: str) -> None:
    client = Client()
    await client.connect(node.url)
    stack.push_async_callback(client.sio.disconnect)
    await client.login(applicationName=app, roomJoin={room: {"roomName": room}})
    reply = await client.cmd("offer", targetEasyrtcid=b, msgData={"sdp": "x"})
    assert reply == {"msgType": "ack"}, reply
