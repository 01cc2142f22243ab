"""The cluster-wide room counts (``cluster.roomcounts``) on real Redis: one Redis and a Redis
Cluster of three masters (``support.rediscluster``), each through its ``redisclient.Topology``.

Two nodes count their own members; every node reads the application's rooms exactly; a count
never goes below what the nodes' members make it; a dead node's share is taken back, once,
leaving the other's; names with any character stay apart; a batch Redis failed is written
once when Redis is back, with what was asked meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.redisclient import (
    AsyncClient,
    ClusterTopology,
    SingleTopology,
    Topology,
    parse_cluster_url,
)
from easyrtc_server.cluster.roomcounts import RoomCounts
from easyrtc_server.options import Options
from support.rediscluster import running_redis_cluster
from support.redisserver import RedisServer, running_redis
from support.tcpproxy import TcpProxy

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOUND = 60.0
"""Seconds a test may wait for what it expects (a bound on a hang on a loaded machine)."""


@dataclass
class Redis:
    kind: str
    topology: Topology
    server: RedisServer | None = None

    @property
    def client(self) -> AsyncClient:
        return self.topology.client()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def redis_cluster() -> AsyncIterator[Redis]:
    async with running_redis_cluster() as setup:
        topology = ClusterTopology(parse_cluster_url(setup.url))
        try:
            yield Redis("redis-cluster", topology)
        finally:
            await topology.client().aclose()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def single_redis() -> AsyncIterator[Redis]:
    async with running_redis() as server:
        topology = SingleTopology(Options(redis_url=server.url))
        yield Redis("redis", topology, server)
        await topology.client().aclose()


@pytest.fixture(params=["single_redis", "redis_cluster"])
def redis(request: pytest.FixtureRequest) -> Redis:
    found: Redis = request.getfixturevalue(request.param)
    return found


names = (f"counts{n}" for n in itertools.count())
"""A cluster name per test: the tests share their Redis."""


@pytest_asyncio.fixture(loop_scope="module")
async def node_of() -> AsyncIterator[Callable[..., RoomCounts]]:
    """Makes a node's ``RoomCounts`` with its writer running; closes them at the end."""
    made: list[tuple[RoomCounts, asyncio.Task[None]]] = []

    def make(client: AsyncClient, keys: ClusterKeys, node_id: str) -> RoomCounts:
        counts = RoomCounts(client, keys, node_id)
        made.append((counts, asyncio.ensure_future(counts.run())))
        return counts

    yield make
    for counts, task in made:
        await counts.aclose()
        task.cancel()
    await asyncio.gather(*(task for _, task in made), return_exceptions=True)


def keys_of(redis: Redis) -> ClusterKeys:
    return ClusterKeys(next(names), hash_tags=redis.topology.hash_tags)


async def flushed(*nodes: RoomCounts) -> None:
    async with asyncio.timeout(BOUND):
        for node in nodes:
            await node.flushed()


async def stored(redis: Redis, keys: ClusterKeys) -> dict[bytes, Any]:
    """Every key of the cluster's room counts with what it holds (hashes and marks)."""
    client = redis.client
    out: dict[bytes, Any] = {}
    prefix = keys.room_counts("").removesuffix(":app:").encode()
    async for key in client.scan_iter(match=prefix + b":*"):
        kind = await client.type(key)
        out[key] = await client.hgetall(key) if kind in (b"hash", "hash") else kind
    return out


async def test_two_nodes_joins_and_leaves_add_up_per_room(
    redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    keys = keys_of(redis)
    a = node_of(redis.client, keys, "nodea")
    b = node_of(redis.client, keys, "nodeb")
    for _ in range(3):
        a.joined("app", "lobby")
    b.joined("app", "lobby")
    b.joined("app", "lobby")
    a.joined("app", "call")
    a.left("app", "lobby")
    b.joined("other", "lobby")
    await flushed(a, b)
    assert await a.rooms("app") == {"lobby": 4, "call": 1}
    assert await b.rooms("app") == {"lobby": 4, "call": 1}
    assert await b.rooms("other") == {"lobby": 1}
    assert await b.rooms("nobody") == {}

    a.left("app", "call")
    b.left("app", "lobby")
    await flushed(a, b)
    assert await b.rooms("app") == {"lobby": 3}


async def test_rooms_kept_when_empty_are_listed_as_their_partition_last_decided(
    redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    """Server code's rooms: listed with no member; the write of the later fact wins, in
    whichever order two nodes' writes arrive."""
    keys = keys_of(redis)
    a = node_of(redis.client, keys, "nodea")
    b = node_of(redis.client, keys, "nodeb")
    await a.kept("app", "stage", 5)
    a.joined("app", "lobby")
    await flushed(a)
    assert await b.rooms("app") == {"lobby": 1, "stage": 0}
    a.joined("app", "stage")
    await flushed(a)
    assert await b.rooms("app") == {"lobby": 1, "stage": 1}
    a.left("app", "stage")
    await flushed(a)
    await b.deleted("app", "stage", 7)
    await a.kept("app", "stage", 6)  # an older keep arriving late
    assert await a.rooms("app") == {"lobby": 1}
    await a.kept("app", "stage", 9)  # kept again by a later fact
    await b.deleted("app", "stage", 8)
    assert await b.rooms("app") == {"lobby": 1, "stage": 0}
    await a.kept("app", "other", 1)
    assert await b.rooms("app") == {"lobby": 1, "stage": 0, "other": 0}


async def test_a_storm_in_one_pass_is_one_batch(
    redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    keys = keys_of(redis)
    a = node_of(redis.client, keys, "nodea")
    for n in range(1000):
        a.joined("app", f"room{n % 250}")
    for n in range(250):
        a.left("app", f"room{n}")
    a.joined("app", "in-and-out")
    a.left("app", "in-and-out")
    await flushed(a)
    assert await a.rooms("app") == {f"room{n}": 3 for n in range(250)}
    node_hash = await redis.client.hgetall(keys.room_counts_of("nodea"))
    assert node_hash[b"#"] == b"1"  # one batch for the whole pass
    assert len(node_hash) == 251  # its 250 rooms and the batch number: nothing at 0


async def test_counts_never_go_below_what_the_members_make_them(
    redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    keys = keys_of(redis)
    a = node_of(redis.client, keys, "nodea")
    b = node_of(redis.client, keys, "nodeb")
    b.joined("app", "lobby")
    b.joined("app", "lobby")
    a.joined("app", "lobby")
    await flushed(a, b)
    for _ in range(5):  # more leaves than joins: a's share only goes to 0
        a.left("app", "lobby")
    a.left("app", "never-joined")
    await flushed(a)
    assert await a.rooms("app") == {"lobby": 2}
    for _ in range(3):  # separate batches, each taking below 0
        b.left("app", "lobby")
        await flushed(b)
    assert await a.rooms("app") == {}
    assert await stored(redis, keys) == {
        keys.room_counts_of(node).encode(): {b"#": number}
        for node, number in (("nodea", b"2"), ("nodeb", b"4"))
    }  # no field at 0, no empty application hash

    a.joined("app", "lobby")  # a share at 0 counts from 0 again
    await flushed(a)
    assert await b.rooms("app") == {"lobby": 1}


async def test_a_reap_takes_back_the_dead_nodes_share_once(
    redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    keys = keys_of(redis)
    a = node_of(redis.client, keys, "nodea")
    b = node_of(redis.client, keys, "nodeb")
    for app in ("app", "other"):
        a.joined(app, "lobby")
        a.joined(app, "lobby")
        a.joined(app, "a-only")
        b.joined(app, "lobby")
        b.joined(app, "b-only")
    await flushed(a, b)

    await b.reap("nodea")
    after_one = await stored(redis, keys)
    await b.reap("nodea")
    await a.reap("nodea")
    assert await stored(redis, keys) == after_one
    for app in ("app", "other"):
        assert await a.rooms(app) == {"lobby": 1, "b-only": 1}
    assert keys.room_counts_of("nodea").encode() not in after_one

    b.left("app", "lobby")
    await flushed(b)
    assert await a.rooms("app") == {"b-only": 1}


async def test_a_reaped_node_is_refused_until_it_restates_its_share(
    redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    keys = keys_of(redis)
    a = node_of(redis.client, keys, "nodea")
    b = node_of(redis.client, keys, "nodeb")
    a.joined("app", "lobby")
    b.joined("app", "lobby")
    await flushed(a, b)
    await b.reap("nodea")

    a.joined("app", "lobby")  # a lived, cut off: its late batch must not count
    a.joined("app", "late")
    await flushed(a)
    assert a.reaped
    a.joined("app", "dropped")
    await flushed(a)
    assert await b.rooms("app") == {"lobby": 1}

    await a.restate({("app", "lobby"): 2, ("app", "mine"): 1, ("app", "empty"): 0})
    assert not a.reaped
    a.joined("app", "mine")
    await flushed(a)
    assert await b.rooms("app") == {"lobby": 3, "mine": 2}
    await a.restate({("app", "mine"): 1})  # replaces the share, not adds to it
    assert await b.rooms("app") == {"lobby": 1, "mine": 1}


ODD = [
    ("a", "b:c"),
    ("a:b", "c"),
    ("1:a", "b"),
    ("1", ":ab"),
    ("", "3:abc"),
    ("a\x00b", "c"),
    ("a", "\x00b\x00c"),
    ('q"', "'r'"),
    ("\u00e9\u4e2d\U0001f600", "\u00e9\u4e2d\U0001f600"),
    ("a", "\ud800"),
    ("#", "#"),
]
"""Pairs that a naive ``app:room`` or a separator byte would confuse, and names no codec
rejects (a lone surrogate)."""


async def test_names_with_any_character_stay_apart(
    redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    keys = keys_of(redis)
    a = node_of(redis.client, keys, "nodea")
    b = node_of(redis.client, keys, "nodeb")
    for n, (app, room) in enumerate(ODD):
        for _ in range(n + 1):
            a.joined(app, room)
        b.joined(app, room)
    await flushed(a, b)
    expected: dict[str, dict[str, int]] = {}
    for n, (app, room) in enumerate(ODD):
        expected.setdefault(app, {})[room] = n + 2
    for app, rooms in expected.items():
        assert await b.rooms(app) == rooms

    await b.reap("nodea")
    for app, rooms in expected.items():
        assert await b.rooms(app) == dict.fromkeys(rooms, 1)
    for app, room in ODD:
        b.left(app, room)
    await flushed(b)
    for app in expected:
        assert await b.rooms(app) == {}


class ReplyLost(AsyncRedis):
    """A client whose next ``EVALSHA`` runs in Redis but whose reply never comes (the
    connection broke after Redis took the command), once ``lose_next`` is set."""

    lose_next = False

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        reply = await super().evalsha(*args, **kwargs)
        if self.lose_next:
            self.lose_next = False
            raise RedisConnectionError("the reply was lost")
        return reply


async def test_a_batch_whose_reply_was_lost_counts_once(
    single_redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    assert single_redis.server is not None
    keys = keys_of(single_redis)
    client = ReplyLost(host="127.0.0.1", port=single_redis.server.port)
    try:
        a = node_of(client, keys, "nodea")
        a.joined("app", "lobby")
        await flushed(a)
        client.lose_next = True
        a.joined("app", "lobby")
        a.joined("app", "call")
        await flushed(a)
        assert not client.lose_next  # the reply was lost, the batch sent again
        assert await a.rooms("app") == {"lobby": 2, "call": 1}
    finally:
        await client.aclose()


async def test_changes_asked_while_redis_is_away_are_written_when_it_is_back(
    single_redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    assert single_redis.server is not None
    keys = keys_of(single_redis)
    proxy = TcpProxy(single_redis.server.port)
    await proxy.start()
    client = AsyncRedis(host="127.0.0.1", port=proxy.port)
    try:
        a = node_of(client, keys, "nodea")
        a.joined("app", "lobby")
        await flushed(a)
        await proxy.cut()
        a.joined("app", "lobby")
        a.joined("app", "call")
        waiting = asyncio.ensure_future(a.flushed())
        for _ in range(20):  # many loop passes: the batch fails and is tried again
            await asyncio.sleep(0)
        assert not waiting.done()
        a.left("app", "call")  # coalesces while the first batch waits
        a.joined("app", "later")
        await proxy.start()
        await flushed(a)
        await waiting
        assert await a.rooms("app") == {"lobby": 2, "later": 1}
    finally:
        await proxy.stop()
        await client.aclose()


async def test_aclose_writes_what_is_queued(
    redis: Redis, node_of: Callable[..., RoomCounts]
) -> None:
    keys = keys_of(redis)
    a = RoomCounts(redis.client, keys, "nodea")
    task = asyncio.ensure_future(a.run())
    a.joined("app", "lobby")
    a.joined("app", "lobby")
    await a.aclose()
    await asyncio.wait([task])
    assert task.cancelled()
    a.joined("app", "ignored")
    await a.flushed()
    assert await a.rooms("app") == {"lobby": 2}
