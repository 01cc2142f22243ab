"""The fed partition reader (``partitionfeed.PartitionFeed``) on a real Redis: facts reach it
as pushes, with nothing asked of Redis per fact; it reads on through a broken pub/sub
connection, and hears a writer that does not publish (a node of before) by its sweep.
(``test_partition_log_redis`` runs the readers' common tests on it, Sentinel's failover
included.)"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.partitionfeed import PartitionFeed
from easyrtc_server.cluster.partitionlog import APPEND, PartitionLayout, PartitionWriter
from easyrtc_server.cluster.redisclient import REDIS_ERRORS
from support.redisserver import running_redis

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOUND = 60.0
"""Seconds a test may wait for what it expects (a bound on a hang on a loaded machine)."""
NEVER = 3600.0
"""A sweep period no test lasts: what arrives came by push."""

names = (f"feed{n}" for n in itertools.count())


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def redis() -> AsyncIterator[Redis]:
    async with running_redis() as server:
        client = Redis.from_url(server.url)
        yield client
        await client.aclose()


class Fed:
    """A feed and what it applied, per partition: the facts in order, checked as they come."""

    def __init__(self, feed: PartitionFeed) -> None:
        self.feed = feed
        self.facts: dict[int, list[bytes]] = {}
        self.seqs: dict[int, int] = {}
        self.failures = 0

    async def read_until(self, partition: int, seq: int) -> None:
        async with asyncio.timeout(BOUND):
            while self.seqs.get(partition, -1) < seq:
                try:
                    reads = await self.feed.read()
                except REDIS_ERRORS:
                    self.failures += 1
                    continue
                for read in reads:
                    if read.reload is not None:
                        self.facts[read.partition] = []
                        self.seqs[read.partition] = read.reload.seq
                    for entry in read.entries:
                        assert entry.seq == self.seqs[read.partition] + 1
                        self.seqs[read.partition] = entry.seq
                        self.facts[read.partition].append(entry.fact)


Started = Callable[[Redis, PartitionLayout, str], PartitionWriter]


@pytest_asyncio.fixture(loop_scope="module")
async def started() -> AsyncIterator[Started]:
    """Writers running the given append script, stopped after the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(redis: Redis, layout: PartitionLayout, script: str) -> PartitionWriter:
        writer = PartitionWriter(redis, layout, script)
        tasks.append(asyncio.ensure_future(writer.run()))
        return writer

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_facts_reach_the_reader_as_pushes(redis: Redis, started: Started) -> None:
    layout = PartitionLayout(ClusterKeys(next(names)), 16, 4)
    fed = Fed(PartitionFeed(redis, layout, sweep_every=NEVER, block_ms=int(BOUND * 1000)))
    writer = started(redis, layout, fed.feed.append_script)
    fed.feed.gain(3)
    await fed.read_until(3, 0)
    sent = [writer.post(3, f"fact {i}".encode()) for i in range(50)]  # batched: one push
    last = (await asyncio.gather(*sent))[-1]
    await fed.read_until(3, last.seq)
    assert fed.facts[3] == [f"fact {i}".encode() for i in range(50)]
    await fed.feed.aclose()


async def test_the_reader_reads_on_through_a_broken_pubsub_connection(
    redis: Redis, started: Started
) -> None:
    layout = PartitionLayout(ClusterKeys(next(names)), 16, 4)
    fed = Fed(PartitionFeed(redis, layout, sweep_every=NEVER))
    writer = started(redis, layout, fed.feed.append_script)
    for partition in (1, 2):
        fed.feed.gain(partition)
        await fed.read_until(partition, 0)
    await writer.append(1, b"before")
    await fed.read_until(1, 1)
    assert await redis.client_kill_filter(_type="pubsub") == 1
    for i in range(5):  # appended while nobody hears them
        await writer.append(1, f"while away {i}".encode())
    last = await writer.append(2, b"elsewhere")
    await fed.read_until(1, 6)
    await fed.read_until(2, last.seq)
    assert fed.failures == 1  # told once
    assert fed.facts[1] == [b"before", *(f"while away {i}".encode() for i in range(5))]
    after = await writer.append(1, b"after")  # heard again
    await fed.read_until(1, after.seq)
    assert fed.facts[2] == [b"elsewhere"] and fed.facts[1][-1] == b"after"
    await fed.feed.aclose()


async def test_a_writer_that_does_not_publish_is_heard_by_the_sweep(
    redis: Redis, started: Started
) -> None:
    layout = PartitionLayout(ClusterKeys(next(names)), 16, 4)
    fed = Fed(PartitionFeed(redis, layout, sweep_every=0.2))
    old = started(redis, layout, APPEND)  # a node of before: streams only
    fed.feed.gain(7)
    await fed.read_until(7, 0)
    appended = [await old.append(7, f"old {i}".encode()) for i in range(3)]
    await fed.read_until(7, appended[-1].seq)
    assert fed.facts[7] == [b"old 0", b"old 1", b"old 2"]
    await fed.feed.aclose()
