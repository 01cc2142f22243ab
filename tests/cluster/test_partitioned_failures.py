"""A partitioned cluster (``cluster_state = "partitioned"``, issue 23) through its failures, and
``max_rooms_per_app`` exact across its nodes.

Real redis-server and three real node processes per test (some tests kill one), real socket.io
clients. The nodes run with a short alive TTL (2 s, ``cluster_alive_ttl``) checked every 0.2 s,
so a killed node is reaped soon; every wait is for an event, bounded by ``BOUND`` (well above
the TTL, for a loaded machine). What is waited for in Redis (the room counts a reap takes back,
the room names a leave gives back) is watched with keyspace notifications, not polled.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from easyrtc_server.cluster.keys import ClusterKeys
from support.client import Client
from support.nodes import Node, running_nodes
from support.redisserver import running_redis
from support.roomview import Lists, apply

BOUND = 30.0
"""Seconds a test waits for what it expects (15 alive TTLs: a loaded machine)."""
TTL = 2
NODE_ENV = {
    "EASYRTC_CLUSTER_STATE": "partitioned",
    "EASYRTC_CLUSTER_ALIVE_TTL": str(TTL),
    "EASYRTC_CLUSTER_CHECK_INTERVAL": "0.2",
}
MAX_ROOMS = 5
CLUSTER = "pfail"

_names = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


class Member:
    """A logged-in client and its member lists, kept as easyrtc.js keeps them."""

    def __init__(self, client: Client, token: dict[str, Any]) -> None:
        self.client = client
        self.id = client.easyrtcid
        self.held: Lists = {}
        self.removed: set[str] = set()
        """Every easyrtcid a ``removeClient`` delta named."""
        self._take(token["msgData"]["roomData"])

    @property
    def lists(self) -> dict[str, set[str]]:
        """Room name -> the easyrtcids in this member's list of it."""
        return {room: set(members) for room, members in self.held.items()}

    def _take(self, room_data: dict[str, Any]) -> None:
        for data in room_data.values():
            self.removed |= set(data.get("clientListDelta", {}).get("removeClient", {}))
        apply(self.held, room_data)

    async def sees(self, room: str, members: set[str]) -> None:
        """Wait until this member's list of ``room`` is ``members``."""
        while self.lists.get(room) != members:
            cmd = await self.client.cmds.get()
            if cmd.get("msgType") == "roomData":
                self._take(cmd["msgData"]["roomData"])

    async def told_removed(self, easyrtcid: str) -> None:
        """Wait until a ``removeClient`` delta named ``easyrtcid``."""
        while easyrtcid not in self.removed:
            cmd = await self.client.cmds.get()
            if cmd.get("msgType") == "roomData":
                self._take(cmd["msgData"]["roomData"])

    async def room_count(self, room: str) -> int | None:
        listed = (await self.client.cmd("getRoomList"))["msgData"]["roomList"]
        return listed[room]["numberClients"] if room in listed else None

    async def relay(self, other: Member, msg_type: str, sdp: str) -> dict[str, Any]:
        """An ``easyrtcCmd`` signal to ``other``: what ``other`` received."""
        reply = await self.client.cmd(msg_type, targetEasyrtcid=other.id, msgData={"sdp": sdp})
        assert reply == {"msgType": "ack"}, reply
        while True:
            cmd = await other.client.cmds.get()
            if cmd.get("msgType") == "roomData":
                other._take(cmd["msgData"]["roomData"])
            elif cmd.get("msgType") == msg_type:
                return cmd


@asynccontextmanager
async def members() -> AsyncIterator[Callable[..., Awaitable[Member]]]:
    """``join(node, app, room)``: a client of ``node`` logged into ``room`` (the default room
    when None); all closed after the block."""
    async with AsyncExitStack() as stack:

        async def join(node: Node, app: str, room: str | None = None) -> Member:
            client = Client()
            await client.connect(node.url)

            async def leave() -> None:  # bounded: a stuck goodbye fails, never hangs
                async with asyncio.timeout(10):
                    await client.sio.disconnect()

            stack.push_async_callback(leave)
            rooms = {} if room is None else {"roomJoin": {room: {"roomName": room}}}
            return Member(client, await client.login(applicationName=app, **rooms))

        yield join


@asynccontextmanager
async def cluster(
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[Redis, list[Node]]]:
    """One redis-server with keyspace notifications, three partitioned nodes on it."""
    async with running_redis() as server:
        redis = Redis.from_url(server.url)
        try:
            await redis.config_set("notify-keyspace-events", "KA")
            async with running_nodes(
                server.url, 3, cluster=CLUSTER, env={**NODE_ENV, **(env or {})}
            ) as nodes:
                yield redis, nodes
        finally:
            await redis.aclose()


async def watch(redis: Redis, key: str, holds: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``holds()``, looking again at each change of ``key`` (keyspace events)."""
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(f"__keyspace@0__:{key}")
        while not await holds():
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)


async def together(
    join: Callable[..., Awaitable[Member]], app: str, room: str, *nodes: Node
) -> list[Member]:
    """A member of ``room`` on each of ``nodes``, once each one's list shows them all."""
    joined = [await join(node, app, room) for node in nodes]
    everyone = {member.id for member in joined}
    async with asyncio.timeout(BOUND):
        await asyncio.gather(*(member.sees(room, everyone) for member in joined))
    return joined


def keys() -> ClusterKeys:
    return ClusterKeys(CLUSTER)


async def test_a_killed_nodes_client_is_removed_from_the_others_and_from_the_counts() -> None:
    app, room = fresh("app"), fresh("room")
    async with cluster() as (redis, (a, b, c)), members() as join:
        on_a, on_b, on_c = await together(join, app, room, a, b, c)
        assert await on_a.room_count(room) == 3
        await c.kill()
        async with asyncio.timeout(BOUND):
            await asyncio.gather(on_a.told_removed(on_c.id), on_b.told_removed(on_c.id))
            assert on_a.lists[room] == on_b.lists[room] == {on_a.id, on_b.id}
            counts = keys().room_counts(app)

            async def counted_two() -> bool:
                return await redis.hget(counts, room) == b"2"

            await watch(redis, counts, counted_two)  # the reap took the dead share back
        assert await on_a.room_count(room) == 2
        assert await on_b.room_count(room) == 2


async def test_a_node_stopped_cleanly_tells_its_clients_departure_at_once() -> None:
    app, room = fresh("app"), fresh("room")
    long_ttl = {"EASYRTC_CLUSTER_ALIVE_TTL": "60"}  # a reap cannot be what tells them
    async with cluster(long_ttl) as (redis, (a, b, c)), members() as join:
        on_a, on_b, on_c = (
            await join(a, app, room),
            await join(b, app, room),
            await join(c, app, room),
        )
        everyone = {on_a.id, on_b.id, on_c.id}
        async with asyncio.timeout(BOUND):
            await asyncio.gather(on_a.sees(room, everyone), on_b.sees(room, everyone))
        stopping = asyncio.create_task(c.stop())
        async with asyncio.timeout(BOUND):  # half the TTL: told by the node, not by a reap
            await asyncio.gather(on_a.told_removed(on_c.id), on_b.told_removed(on_c.id))
            assert on_a.lists[room] == on_b.lists[room] == {on_a.id, on_b.id}
            counts = keys().room_counts(app)

            async def counted_two() -> bool:
                return await redis.hget(counts, room) == b"2"

            await watch(redis, counts, counted_two)  # its node wrote its share down
            assert await stopping == 0
        assert await on_a.room_count(room) == 2
        assert await on_b.room_count(room) == 2


async def test_max_rooms_per_app_is_exact_across_nodes() -> None:
    app = fresh("app")
    limit = {"EASYRTC_MAX_ROOMS_PER_APP": str(MAX_ROOMS)}
    alone = Node(None, env=limit)  # what one process answers, to compare
    starting = asyncio.create_task(alone.start())
    try:
        async with cluster(limit) as (redis, nodes), members() as join:
            await starting
            single = await join(alone, app)
            for n in range(1, MAX_ROOMS):  # the default room is one
                reply = await single.client.cmd("roomJoin", msgData=joining(f"own{n}"))
                assert reply["msgType"] == "roomData", reply
            refused = await single.client.cmd("roomJoin", msgData=joining("one-too-many"))
            assert refused["msgData"]["errorCode"] == "MSG_REJECT_BAD_ROOM"

            clients = [await join(nodes[n % 3], app) for n in range(9)]
            wanted = [fresh("new") for _ in clients]
            replies = await asyncio.gather(
                *(
                    m.client.cmd("roomJoin", msgData=joining(w))
                    for m, w in zip(clients, wanted, strict=True)
                )
            )
            won = [
                (m, w)
                for m, w, r in zip(clients, wanted, replies, strict=True)
                if r["msgType"] == "roomData"
            ]
            lost = [m for m, r in zip(clients, replies, strict=True) if r["msgType"] == "error"]
            assert len(won) == MAX_ROOMS - 1, replies
            assert len(lost) == len(clients) - len(won)
            assert all(
                r["msgData"] == refused["msgData"] for r in replies if r["msgType"] == "error"
            )
            for node in nodes:  # every node lists the same rooms
                watcher = await join(node, app)
                listed = (await watcher.client.cmd("getRoomList"))["msgData"]["roomList"]
                assert set(listed) == {"default", *(w for _, w in won)}

            for member, name in won[:2]:  # two rooms emptied: their names given back
                reply = await member.client.cmd(
                    "roomLeave", msgData={"roomLeave": joining(name)["roomJoin"]}
                )
                assert reply["msgType"] == "roomData", reply
            names = keys().room_names(app)

            async def two_left() -> bool:
                return await redis.hlen(names) == MAX_ROOMS - 3

            async with asyncio.timeout(BOUND):
                await watch(redis, names, two_left)
            again = [fresh("again") for _ in lost]
            replies = await asyncio.gather(
                *(
                    m.client.cmd("roomJoin", msgData=joining(w))
                    for m, w in zip(lost, again, strict=True)
                )
            )
            assert [r["msgType"] for r in replies].count("roomData") == 2, replies
    finally:
        await alone.stop()


async def test_at_the_limit_a_client_that_left_a_room_may_create_another_at_once() -> None:
    """As in one process: the room a client just left (its last member) no longer counts when
    the client's next request asks for a new room, though its name is given back only once
    its node read the leave back (the node settles its own facts before refusing)."""
    app = fresh("app")
    async with (
        cluster({"EASYRTC_MAX_ROOMS_PER_APP": str(MAX_ROOMS)}) as (_redis, nodes),
        members() as join,
    ):
        member = await join(nodes[0], app)
        held = [fresh("held") for _ in range(MAX_ROOMS - 1)]  # with the default room: full
        for name in held:
            reply = await member.client.cmd("roomJoin", msgData=joining(name))
            assert reply["msgType"] == "roomData", reply
        for _ in range(5):
            name, held = held[0], held[1:]
            reply = await member.client.cmd(
                "roomLeave", msgData={"roomLeave": joining(name)["roomJoin"]}
            )
            assert reply["msgType"] == "roomData", reply
            new = fresh("next")
            reply = await member.client.cmd("roomJoin", msgData=joining(new))
            assert reply["msgType"] == "roomData", reply
            held.append(new)


def joining(room: str) -> dict[str, Any]:
    return {"roomJoin": {room: {"roomName": room}}}


async def test_a_relay_crosses_nodes_and_the_room_outlives_the_senders_node() -> None:
    app, room = fresh("app"), fresh("room")
    async with cluster() as (_, (a, b, c)), members() as join:
        sender, survivor = await join(a, app, room), await join(b, app, room)
        async with asyncio.timeout(BOUND):
            await sender.sees(room, {sender.id, survivor.id})
            got = await sender.relay(survivor, "offer", "from a")
            assert (got["senderEasyrtcid"], got["msgData"]) == (sender.id, {"sdp": "from a"})
        await a.kill()
        newcomer = await join(c, app, room)  # at once: the sender may not be reaped yet
        assert survivor.id in newcomer.lists[room]
        async with asyncio.timeout(BOUND):
            got = await newcomer.relay(survivor, "offer", "from c")
            assert (got["senderEasyrtcid"], got["msgData"]) == (newcomer.id, {"sdp": "from c"})
            got = await survivor.relay(newcomer, "answer", "from b")
            assert (got["senderEasyrtcid"], got["msgData"]) == (survivor.id, {"sdp": "from b"})
            both = {survivor.id, newcomer.id}
            await asyncio.gather(survivor.sees(room, both), newcomer.sees(room, both))
        reply = await newcomer.client.cmd("offer", targetEasyrtcid=sender.id, msgData={"sdp": "x"})
        assert reply["msgData"]["errorCode"] == "MSG_REJECT_TARGET_EASYRTCID"


async def test_a_node_reaped_while_frozen_comes_back_with_its_clients_in_their_rooms() -> None:
    """A node paused past its alive TTL (a VM frozen, a stop-the-world pause, Redis out of its
    reach) is taken for dead: the others see its client leave. Alive again, it reads its own
    ``node-gone``, says it is back and asks its clients' rooms again: they see the client come
    back, the room counts it again, and a relay reaches it, as in the log cluster."""
    app, room = fresh("app"), fresh("room")
    async with cluster() as (redis, (a, b, c)), members() as join:
        on_a, on_b = await together(join, app, room, a, b)
        both = {on_a.id, on_b.id}
        assert b.process is not None
        b.process.send_signal(signal.SIGSTOP)  # its alive key expires: it is reaped
        try:
            async with asyncio.timeout(BOUND):
                await on_a.sees(room, {on_a.id})
        finally:
            b.process.send_signal(signal.SIGCONT)
        async with asyncio.timeout(BOUND):
            await on_a.sees(room, both)  # back in the room
            counts = keys().room_counts(app)

            async def counted_two() -> bool:
                return await redis.hget(counts, room) == b"2"

            await watch(redis, counts, counted_two)
        assert on_b.lists[room] == both  # its own client never saw itself go
        assert (await on_a.relay(on_b, "offer", "v=0 back"))["msgData"] == {"sdp": "v=0 back"}
        assert (await on_b.relay(on_a, "answer", "v=0 yes"))["msgData"] == {"sdp": "v=0 yes"}
        newcomer = await join(c, app, room)  # and the partition takes its node's requests
        everyone = {*both, newcomer.id}
        async with asyncio.timeout(BOUND):
            await asyncio.gather(on_a.sees(room, everyone), on_b.sees(room, everyone))


async def test_after_redis_came_back_empty_the_rooms_hold_every_client_again() -> None:
    """Redis restarted without its data (no persistence): the partition logs lost every
    member. Each node notices the cluster's epoch gone and asks its clients' rooms again, so a
    newcomer on a third node finds both earlier members there, they see it, and the room
    counts three."""
    app, room = fresh("app"), fresh("room")
    async with cluster() as (redis, (a, b, c)), members() as join:
        on_a, on_b = await together(join, app, room, a, b)
        both = {on_a.id, on_b.id}
        epoch = keys().epoch

        async def new_epoch() -> bool:
            return await redis.exists(epoch) == 1

        await redis.flushall()
        async with asyncio.timeout(BOUND):
            await watch(redis, epoch, new_epoch)  # a node noticed
            counts = keys().room_counts(app)

            async def counted_two() -> bool:
                return await redis.hget(counts, room) == b"2"

            await watch(redis, counts, counted_two)  # both nodes told their members again
        newcomer = await join(c, app, room)
        everyone = {*both, newcomer.id}
        async with asyncio.timeout(BOUND):
            await asyncio.gather(
                newcomer.sees(room, everyone), on_a.sees(room, everyone), on_b.sees(room, everyone)
            )
        assert await newcomer.room_count(room) == 3
        assert (await newcomer.relay(on_a, "offer", "v=0 a"))["msgData"] == {"sdp": "v=0 a"}
        # the alive keys went with the data: nobody was taken for dead meanwhile
        assert not [line for node in (a, b, c) for line in node.lines if "is gone" in line]


async def test_after_redis_came_back_older_the_lists_are_whole_again(tmp_path: Path) -> None:
    """Redis killed and started from a dump saved before a member left and two joined (a stale
    ``dump.rdb``; a failover to a replica that lacked the last writes is the same): the room's
    partition lacks those facts, its numbers behind what the nodes applied. Each node reads it
    anew and puts its own connections right there: the two who joined are asked again, the
    one gone since leaves. Every list ends whole, and a node started afterwards finds exactly
    the members there are, no ghost, nobody missing."""
    app, room = fresh("app"), fresh("room")
    async with (
        running_redis(data_dir=tmp_path) as server,
        running_nodes(server.url, 2, cluster=CLUSTER, env=NODE_ENV) as (a, b),
        members() as join,
    ):
        on_a, on_b, ghost = await together(join, app, room, a, b, b)
        redis = Redis.from_url(server.url)
        try:
            await redis.save()  # the dump: these three in the room
        finally:
            await redis.aclose()
        stale = tmp_path / "stale.rdb"
        shutil.copy(server.dump, stale)

        await ghost.client.sio.disconnect()  # the partition moves on past the dump
        late_a, late_b = await join(a, app, room), await join(b, app, room)
        everyone = {on_a.id, on_b.id, late_a.id, late_b.id}
        stayed = [on_a, on_b, late_a, late_b]
        async with asyncio.timeout(BOUND):
            await asyncio.gather(*(m.sees(room, everyone) for m in stayed))

        marks = len(a.lines), len(b.lines)
        await server.stop(kill=True)
        shutil.copy(stale, server.dump)
        await server.start()  # back in time: the ghost in the room, the late ones never came
        async with asyncio.timeout(BOUND):
            for node, mark in zip((a, b), marks, strict=True):
                await node.wait_for_line("lack facts this node wrote", start=mark)
            await asyncio.gather(*(m.sees(room, everyone) for m in stayed))

        c = Node(server.url, cluster=CLUSTER, env=NODE_ENV)  # started now: reads what Redis has
        await c.start()
        try:
            async with asyncio.timeout(BOUND):
                on_c = await join(c, app, room)
                assert on_c.lists[room] == everyone | {on_c.id}  # no ghost, nobody missing
                await asyncio.gather(*(m.sees(room, everyone | {on_c.id}) for m in stayed))
                assert await on_c.room_count(room) == 5
                assert (await on_c.relay(late_a, "offer", "v=0 c"))["msgData"] == {"sdp": "v=0 c"}
        finally:
            await c.stop()


async def test_a_member_that_leaves_while_redis_came_back_empty_leaves_every_list() -> None:
    """Redis restarted empty, and a member leaves before its node noticed: its ``leave`` is the
    first fact of its partition's new log. The other node reads its partition again from what
    is there now, without that member: its client is told the member left (it kept it as a
    ghost while the node reloaded without telling)."""
    app, room = fresh("app"), fresh("room")
    async with cluster() as (redis, (a, b, _c)), members() as join:
        on_a, on_b = await together(join, app, room, a, b)
        await redis.flushall()
        await on_b.client.sio.disconnect()
        async with asyncio.timeout(BOUND):
            await on_a.told_removed(on_b.id)
            await on_a.sees(room, {on_a.id})
