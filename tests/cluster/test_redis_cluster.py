"""A cluster on a Redis Cluster: what one process gives, through a slot migration and a failover.

Real processes: a Redis Cluster of three masters and three replicas (``support.rediscluster``,
``cluster-node-timeout`` 1000 ms), nodes given a ``redis+cluster://`` URL, real socket.io
clients. The behaviour tests of ``test_behaviour`` run here again over three nodes on the Redis
Cluster. Under load (clients relaying across nodes, newcomers joining), one node's inbox slot
and the log's slot move to other masters, a node's inbox master hands over to its replica
(``CLUSTER FAILOVER``), and the master of the log's slot is killed: no relay acknowledged is lost
while a slot moves or in the planned failover, no node is reaped, every client still sees every
peer.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from redis.cluster import key_slot

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.partitionlog import PartitionLayout
from support.nodes import Node, running_nodes
from support.rediscluster import RedisClusterSetup, running_redis_cluster
from support.tlscerts import make_tls_files

from . import test_behaviour as behaviour
from .test_failures import APP as FAILURES_APP
from .test_failures import ROOM as FAILURES_ROOM
from .test_failures import Member, clients, error_code, try_login

pytestmark = pytest.mark.asyncio(loop_scope="module")

RELAY_PACE = 0.02
"""Seconds between one member's relays (50 a second; ``message_rate`` is 100)."""
JOIN_PACE = 0.2
"""Seconds between two newcomers' logins during the load."""
ARRIVAL_BOUND = 30.0
"""Seconds the last relays may take to arrive once the load stops (a loaded machine)."""


# -- what one process gives, over a Redis Cluster ----------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def nodes() -> AsyncIterator[list[Node]]:
    """Three nodes on a Redis Cluster, as ``test_behaviour`` has them on one Redis."""
    async with (
        running_redis_cluster() as redis,
        running_nodes(
            redis.url, 3, cluster="beh", env=behaviour.NODE_ENV, module="cluster.hooked_node"
        ) as started,
    ):
        yield started


stack = behaviour.stack
test_logins_on_three_nodes_see_one_room = behaviour.test_logins_on_three_nodes_see_one_room
test_signals_cross_nodes_in_order = behaviour.test_signals_cross_nodes_in_order
test_presence_and_api_field_reach_members_on_other_nodes = (
    behaviour.test_presence_and_api_field_reach_members_on_other_nodes
)
test_errors_are_those_of_one_server = behaviour.test_errors_are_those_of_one_server


async def test_a_cluster_reaches_a_redis_cluster_that_needs_a_password() -> None:
    password = "cluster-pass-4711"
    async with (
        running_redis_cluster(password=password) as redis,
        running_nodes(redis.url, 2) as (a, b),
        clients() as join,
    ):
        on_a, on_b = await join(a), await join(b)
        await everyone_sees_everyone([on_a, on_b])
        assert (await on_a.send_to(on_b, "through a guarded Redis Cluster"))["msgData"]
        assert (await on_b.send_to(on_a, "and back"))["msgData"]
        for node in (a, b):
            assert not any(password in line for line in node.lines)


@pytest.mark.parametrize("password", [None, "tls-pass-4711"], ids=["tls", "tls-and-password"])
async def test_a_cluster_reaches_a_redis_cluster_over_tls(
    password: str | None, tmp_path: Path
) -> None:
    """Every node speaks TLS only (``rediss+cluster://``; the cluster bus and replication too),
    with certificates of the test's own authority, which the URL's query names: logins and
    relays cross nodes. A node given another authority does not trust the cluster: its
    logins are refused."""
    async with (
        running_redis_cluster(password=password, tls=True) as redis,
        running_nodes(redis.url, 2) as (a, b),
        clients() as join,
    ):
        assert redis.url.startswith("rediss+cluster://")
        on_a, on_b = await join(a), await join(b)
        await everyone_sees_everyone([on_a, on_b])
        assert (await on_a.send_to(on_b, "through a Redis Cluster over TLS"))["msgData"]
        assert (await on_b.send_to(on_a, "and back"))["msgData"]
        if password is not None:
            for node in (a, b):
                assert not any(password in line for line in node.lines)
            return
        assert redis.tls is not None
        stranger = make_tls_files(tmp_path)
        url = redis.url.replace(quote(str(redis.tls.ca), safe=""), quote(str(stranger.ca), safe=""))
        assert url != redis.url
        c = Node(url)
        await c.start()
        try:
            reply, _took = await try_login(c)
            assert error_code(reply) == "LOGIN_GEN_FAIL", reply
        finally:
            await c.stop()


# -- under load: a slot migration, a failover --------------------------------------------------


def node_id_of(node: Node) -> str:
    line = next(line for line in node.lines if "takes forwarded requests at" in line)
    return line.split(" node ", 1)[1].split()[0]


class Load:
    """Members relaying numbered messages to each other across nodes, and newcomers joining,
    until ``stop``; what each receiver got, and what each sender had acknowledged."""

    def __init__(self, pairs: list[tuple[Member, Member]], join: Any, nodes: list[Node]) -> None:
        self.pairs = pairs
        self.join = join
        self.nodes = nodes
        self.acked: dict[tuple[str, str], list[int]] = {(s.id, r.id): [] for s, r in pairs}
        self.got: dict[tuple[str, str], list[int]] = {(s.id, r.id): [] for s, r in pairs}
        self.gaps: dict[tuple[str, str], float] = dict.fromkeys(self.got, 0.0)
        """The longest time between two arrivals of each pair."""
        self.newcomers: list[Member] = []
        self.stopping = asyncio.Event()
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Future[Any]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.ensure_future(job)
            for job in (
                *(self._relay(s, r) for s, r in self.pairs),
                *(self._receive(s, r) for s, r in self.pairs),
                self._newcomers(),
            )
        ]

    async def _relay(self, sender: Member, receiver: Member) -> None:
        acked = self.acked[sender.id, receiver.id]
        for n in itertools.count():
            if self.stopping.is_set():
                return
            with suppress(TimeoutError, OSError):
                ack = await sender.client.call(
                    "easyrtcMsg", {"msgType": "load", "targetEasyrtcid": receiver.id, "msgData": n}
                )
                if ack.get("msgType") == "ack":
                    acked.append(n)
            await asyncio.sleep(RELAY_PACE)  # a steady load, under the rate limit

    async def _receive(self, sender: Member, receiver: Member) -> None:
        pair = sender.id, receiver.id
        got = self.got[pair]
        last = time.monotonic()
        while True:
            msg = await receiver.client.msgs.get()
            if msg.get("msgType") == "load" and msg.get("senderEasyrtcid") == sender.id:
                got.append(msg["msgData"])
                now = time.monotonic()
                self.gaps[pair] = max(self.gaps[pair], now - last)
                last = now
                self._arrived.set()

    async def until(self, done: Any) -> None:
        """Wait until ``done()`` holds, asking again at each arrival."""
        while not done():
            self._arrived.clear()
            await self._arrived.wait()

    async def relayed(self, more: int) -> None:
        """Wait until each pair has ``more`` relays more arrived than now."""
        marks = {pair: len(self.got[pair]) for pair in self.got}
        async with asyncio.timeout(ARRIVAL_BOUND):
            await self.until(lambda: all(len(self.got[p]) >= m + more for p, m in marks.items()))

    async def _newcomers(self) -> None:
        for node in itertools.cycle(self.nodes):
            if self.stopping.is_set():
                return
            with suppress(TimeoutError, OSError):
                self.newcomers.append(await self.join(node))
            await asyncio.sleep(JOIN_PACE)

    async def stop(self) -> None:
        """Stop sending, then wait until every acknowledged relay arrived."""
        self.stopping.set()
        senders = self._tasks[: len(self.pairs)]
        await asyncio.gather(*senders, self._tasks[-1], return_exceptions=True)
        with suppress(TimeoutError):  # the assertions after say what is missing
            async with asyncio.timeout(ARRIVAL_BOUND):
                await self.until(lambda: not self.lost())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def lost(self) -> dict[tuple[str, str], list[int]]:
        """Relays acknowledged to their sender that never reached their receiver."""
        return {
            pair: sorted(set(acked) - set(self.got[pair]))
            for pair, acked in self.acked.items()
            if not set(acked) <= set(self.got[pair])
        }

    def acked_count(self) -> dict[str, int]:
        return {f"{s[:4]}>{r[:4]}": len(acked) for (s, r), acked in self.acked.items()}

    def in_order(self) -> bool:
        return all(got == sorted(got) for got in self.got.values())


def never_removed(members: list[Member], originals: set[str]) -> None:
    """None of ``originals`` ever left a member's list so far: nobody was reaped (the pushes
    looked at stay queued, in order, for ``Member.sees``)."""
    for member in members:
        queue = member.client.cmds
        pushes = [queue.get_nowait() for _ in range(queue.qsize())]
        for cmd in pushes:
            queue.put_nowait(cmd)
            if cmd.get("msgType") == "roomData":
                for data in cmd["msgData"]["roomData"].values():
                    removed = set(data.get("clientListDelta", {}).get("removeClient", {}))
                    assert not removed & originals, f"{member.id} saw {removed} leave"


def older_dataset(node: Node) -> bool:
    """Whether ``node`` found an entry it applied missing from the log (``liveness.OLDER``)."""
    return any("older dataset" in line for line in node.lines)


def no_node_reaped(nodes: list[Node]) -> None:
    for node in nodes:
        assert not [line for line in node.lines if "is gone" in line], node.lines[-20:]
        assert node.process is not None and node.process.returncode is None


async def everyone_sees_everyone(members: list[Member]) -> None:
    everyone = {m.id for m in members}
    await asyncio.gather(*(m.sees(everyone) for m in members))


async def other_master(redis: RedisClusterSetup, slot: int) -> int:
    here = await redis.master_of(slot)
    roles = await redis.roles()
    return next(port for port, role in sorted(roles.items()) if role == "master" and port != here)


async def test_slots_migrate_under_load_and_nothing_is_lost() -> None:
    async with (
        running_redis_cluster() as redis,
        running_nodes(redis.url, 2) as (a, b),
        clients() as join,
    ):
        members = [await join(a), await join(b), await join(a), await join(b)]
        await everyone_sees_everyone(members)
        originals = {m.id for m in members}
        load = Load([(members[0], members[1]), (members[1], members[2])], join, [a, b])
        load.start()
        keys = ClusterKeys("test", hash_tags=True)
        inbox_slot = key_slot(keys.inbox(node_id_of(b)).encode())
        log_slot = key_slot(keys.log.encode())
        try:
            await load.relayed(20)
            left = await redis.migrate_slot(inbox_slot, await other_master(redis, inbox_slot))
            await load.relayed(20)
            moved_log = await redis.migrate_slot(log_slot, await other_master(redis, log_slot))
            await load.relayed(20)
        finally:
            await load.stop()
        assert await redis.master_of(inbox_slot) != left
        assert any("inbox channel's slot moved" in line for line in b.lines)
        assert await redis.master_of(log_slot) != moved_log
        assert not any(older_dataset(node) for node in (a, b))  # the log moved, whole
        assert load.lost() == {}
        assert load.in_order()
        assert load.newcomers, "logins went on while the slots moved"
        never_removed(members, originals)
        no_node_reaped([a, b])
        await everyone_sees_everyone(members + load.newcomers)
        assert await members[1].send_to(members[0], "after the migrations")


async def test_the_log_masters_death_under_load_is_carried_over() -> None:
    async with (
        running_redis_cluster() as redis,
        running_nodes(redis.url, 2) as (a, b),
        clients() as join,
    ):
        members = [await join(a), await join(b), await join(a), await join(b)]
        await everyone_sees_everyone(members)
        load = Load([(members[0], members[1]), (members[1], members[2])], join, [a, b])
        load.start()
        log_slot = key_slot(ClusterKeys("test", hash_tags=True).log.encode())
        try:
            await load.relayed(20)
            killed = time.monotonic()
            old, replica = await redis.kill_master(log_slot)
            async with asyncio.timeout(30):
                await redis.promoted(replica, log_slot)
            promoted = time.monotonic() - killed
            await load.relayed(20)
        finally:
            await load.stop()
        assert await redis.master_of(log_slot) == replica != old
        spans = {len(lost): (lost[0], lost[-1]) for lost in load.lost().values()}
        gaps = [round(gap, 1) for gap in load.gaps.values()]
        print(
            f"\nfailover: replica promoted {promoted:.1f} s after the kill; relays lost (how "
            f"many: first, last): {spans}; sent {load.acked_count()}; longest silence of each "
            f"pair (s): {gaps}; {len(load.newcomers)} newcomers joined meanwhile; "
            f"rebuilt for a lost entry: {sum(older_dataset(node) for node in (a, b))} node(s)"
        )
        assert load.in_order()
        no_node_reaped([a, b])
        # A login the dead master took but had not passed to its replica is lost with it
        # (asynchronous replication); a node that applied it notices (its reader's server
        # changed: ``Liveness.unsure``) and every node rebuilds: the newcomers of the
        # failover are on every list all the same.
        newcomers = [await join(a), await join(b)]
        await everyone_sees_everyone(members + load.newcomers + newcomers)
        assert await members[0].send_to(members[1], "across nodes after the failover")
        assert await newcomers[1].send_to(members[2], "and from a newcomer")


async def test_a_planned_failover_of_an_inbox_master_under_load_loses_nothing() -> None:
    async with (
        running_redis_cluster() as redis,
        running_nodes(redis.url, 2) as (a, b),
        clients() as join,
    ):
        members = [await join(a), await join(b), await join(a), await join(b)]
        await everyone_sees_everyone(members)
        originals = {m.id for m in members}
        load = Load([(members[0], members[1]), (members[1], members[2])], join, [a, b])
        load.start()
        inbox_slot = key_slot(ClusterKeys("test", hash_tags=True).inbox(node_id_of(b)).encode())
        try:
            await load.relayed(20)
            old, replica = await redis.fail_over(inbox_slot)
            async with asyncio.timeout(30):
                await redis.promoted(replica, inbox_slot)
            await load.relayed(20)
        finally:
            await load.stop()
        assert (await redis.roles())[old] == "replica"
        assert load.lost() == {}
        assert load.in_order()
        never_removed(members, originals)
        no_node_reaped([a, b])
        await everyone_sees_everyone(members + load.newcomers)
        assert await members[0].send_to(members[1], "after the planned failover")


# -- the partitioned state under load ------------------------------------------------------------

PARTITIONED = {"EASYRTC_CLUSTER_STATE": "partitioned"}


def room_slot() -> int:
    """The slot of the partition log that holds ``test_failures``' room."""
    layout = PartitionLayout(ClusterKeys("test", hash_tags=True))
    stream = layout.of(layout.room_partition(FAILURES_APP, FAILURES_ROOM)).stream
    return int(key_slot(stream.encode()))


async def test_a_rooms_partition_moves_and_fails_over_under_load_and_nothing_is_lost() -> None:
    """A partitioned cluster (issue 23) on a Redis Cluster: while members relay across nodes
    and newcomers join, the slot of their room's partition log moves to another master, then
    that master fails over to its replica (planned). No acknowledged relay is lost, none comes
    out of order, nobody is reaped, and every list holds every member after."""
    async with (
        running_redis_cluster() as redis,
        running_nodes(redis.url, 2, env=PARTITIONED) as (a, b),
        clients() as join,
    ):
        members = [await join(a), await join(b), await join(a), await join(b)]
        await everyone_sees_everyone(members)
        originals = {m.id for m in members}
        load = Load([(members[0], members[1]), (members[1], members[2])], join, [a, b])
        load.start()
        slot = room_slot()
        try:
            await load.relayed(20)
            left = await redis.migrate_slot(slot, await other_master(redis, slot))
            await load.relayed(20)
            old, replica = await redis.fail_over(slot)
            async with asyncio.timeout(30):
                await redis.promoted(replica, slot)
            await load.relayed(20)
        finally:
            await load.stop()
        assert await redis.master_of(slot) == replica != old != left
        assert load.lost() == {}
        assert load.in_order()
        assert load.newcomers, "logins went on while the partition's slot moved"
        never_removed(members, originals)
        no_node_reaped([a, b])
        newcomers = [await join(a), await join(b)]
        await everyone_sees_everyone(members + load.newcomers + newcomers)
        assert await newcomers[0].send_to(members[3], "across nodes after the moves")
