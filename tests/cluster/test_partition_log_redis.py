"""The partition logs on real Redis: one Redis, a master behind Sentinel, and a Redis Cluster of
three masters (``support.rediscluster``), each through its ``redisclient.Topology``.

Appends to many partitions come back numbered in order and are read in order, by readers that
read only the partitions they have interest in; a reader that gains a partition mid-stream
catches up from its snapshot and stream to exactly what a reader from the start has; a reader
behind a trim is told to reload. Each topology's nodes read as it makes them
(``Topology.partition_source``): from the appends' pushes on one Redis and behind Sentinel
(``partitionfeed``), blocked on the streams on the Redis Cluster. On the Redis Cluster the
partitions spread over the three masters, and reading goes on while a partition's slot moves to
another master and while its master fails over to its replica; behind Sentinel, while the
master is killed and replaced.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pytest
import pytest_asyncio
from redis.cluster import key_slot

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.partitionlog import (
    Appended,
    PartitionLayout,
    PartitionRead,
    PartitionReader,
    PartitionSnapshots,
    PartitionSource,
    PartitionWriter,
    Snapshot,
)
from easyrtc_server.cluster.redisclient import (
    REDIS_ERRORS,
    AsyncClient,
    ClusterTopology,
    SingleTopology,
    Topology,
    parse_cluster_url,
)
from easyrtc_server.options import Options
from support.rediscluster import RedisClusterSetup, running_redis_cluster
from support.redisserver import running_redis
from support.sentinel import SentinelSetup, running_sentinels

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOUND = 60.0
"""Seconds a test may wait for what it expects (a bound on a hang on a loaded machine)."""
RETRY = 0.1
"""Seconds between a failed command and its retry (Redis moving or failing over)."""


@dataclass
class Redis:
    """A Redis of one kind, as a node would reach it."""

    kind: str
    topology: Topology
    cluster: RedisClusterSetup | None = None
    sentinels: SentinelSetup | None = None

    @property
    def client(self) -> AsyncClient:
        return self.topology.client()

    def layout(self, name: str, partitions: int = 64, groups: int = 16) -> PartitionLayout:
        keys = ClusterKeys(name, hash_tags=self.topology.hash_tags)
        return PartitionLayout(keys, partitions, groups)

    def source(self, layout: PartitionLayout) -> PartitionSource:
        """A reader as a node on this Redis reads."""
        return self.topology.partition_source(layout)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def redis_cluster() -> AsyncIterator[Redis]:
    async with running_redis_cluster() as setup:
        topology = ClusterTopology(parse_cluster_url(setup.url))
        try:
            yield Redis("redis-cluster", topology, setup)
        finally:
            await topology.client().aclose()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def single_redis() -> AsyncIterator[Redis]:
    async with running_redis() as server:
        topology = SingleTopology(Options(redis_url=server.url))
        yield Redis("redis", topology)
        await topology.client().aclose()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sentinel_redis() -> AsyncIterator[Redis]:
    async with running_sentinels() as sentinels:
        topology = SingleTopology(Options(redis_url=sentinels.url))
        yield Redis("sentinel", topology, sentinels=sentinels)
        await topology.client().aclose()


@pytest.fixture(params=["single_redis", "sentinel_redis", "redis_cluster"])
def redis(request: pytest.FixtureRequest) -> Redis:
    found: Redis = request.getfixturevalue(request.param)
    return found


names = (f"plog{n}" for n in itertools.count())
"""A cluster name per test: the tests share their Redis."""


@pytest_asyncio.fixture(loop_scope="module")
async def writer_of() -> AsyncIterator[Callable[[Redis, PartitionLayout], PartitionWriter]]:
    tasks: list[asyncio.Task[None]] = []

    def make(redis: Redis, layout: PartitionLayout) -> PartitionWriter:
        writer = PartitionWriter(redis.client, layout, redis.source(layout).append_script)
        tasks.append(asyncio.ensure_future(writer.run()))
        return writer

    yield make
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Replica:
    """What a reader's caller builds: each partition's facts in the order it applied them
    (a reload replaces them with the snapshot's)."""

    reader: PartitionSource
    facts: dict[int, list[str]] = field(default_factory=dict)
    seqs: dict[int, int] = field(default_factory=dict)
    reads: list[PartitionRead] = field(default_factory=list)
    applied: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at each read applied."""
    failures: int = 0
    """Reads that failed (and were tried again)."""

    def apply(self, read: PartitionRead) -> None:
        self.reads.append(read)
        self.applied.set()
        facts = self.facts.setdefault(read.partition, [])
        if read.reload is not None:
            doc = read.reload.doc
            facts[:] = orjson.loads(doc) if doc is not None else []
            self.seqs[read.partition] = read.reload.seq
        for entry in read.entries:
            assert entry.seq == self.seqs.get(read.partition, 0) + 1  # none missed, none twice
            self.seqs[read.partition] = entry.seq
            facts.append(entry.fact.decode())

    async def read_until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(BOUND):
            while not done():
                try:
                    reads = await self.reader.read()
                except REDIS_ERRORS:
                    self.failures += 1
                    await asyncio.sleep(RETRY)
                    continue
                for read in reads:
                    self.apply(read)

    async def read_to(self, ends: dict[int, int]) -> None:
        """Read until each partition of ``ends`` applied its entry of that number."""
        await self.read_until(lambda: all(self.seqs.get(p, -1) >= s for p, s in ends.items()))


def replica(redis: Redis, layout: PartitionLayout, *partitions: int) -> Replica:
    reader = redis.source(layout)
    for partition in partitions:
        reader.gain(partition)
    return Replica(reader)


def ends(appended: list[Appended]) -> dict[int, int]:
    out: dict[int, int] = {}
    for item in appended:
        out[item.partition] = max(out.get(item.partition, 0), item.seq)
    return out


async def test_appends_to_many_partitions_are_numbered_and_read_in_order(
    redis: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    layout = redis.layout(next(names))
    writer = writer_of(redis, layout)
    everything = replica(redis, layout, *range(layout.partitions))
    few = replica(redis, layout, 3, 17, 40, 63)
    await everything.read_until(lambda: len(everything.facts) == layout.partitions)
    await few.read_until(lambda: len(few.facts) == 4)

    async def appender(name: str) -> list[Appended]:
        done = []
        for i in range(40):  # each pass of the loop appends to three partitions at once
            targets = [(i * 7 + k * 13 + len(name)) % layout.partitions for k in range(3)]
            done += await asyncio.gather(
                *(writer.append(p, f"{name}:{i}:{p}".encode()) for p in targets)
            )
        return done

    results = await asyncio.gather(*(appender(name) for name in ("a", "bb", "ccc", "dddd")))
    appended = [item for done in results for item in done]
    by_partition: dict[int, list[Appended]] = {}
    for item in appended:
        by_partition.setdefault(item.partition, []).append(item)
    for items in by_partition.values():  # numbered 1..n, ids growing with the numbers
        numbered = sorted(items, key=lambda item: item.seq)
        assert [item.seq for item in numbered] == list(range(1, len(items) + 1))
        ids = [tuple(map(int, item.id.split("-"))) for item in numbered]
        assert ids == sorted(ids)
    await everything.read_to(ends(appended))
    await few.read_to({p: s for p, s in ends(appended).items() if p in (3, 17, 40, 63)})
    for name, result in zip(("a", "bb", "ccc", "dddd"), results, strict=True):
        for partition in {item.partition for item in result}:
            mine = [f for f in everything.facts[partition] if f.startswith(name + ":")]
            assert mine == [  # each appender's facts in its order
                f"{name}:{i}:{partition}"
                for i in range(40)
                if any(
                    (i * 7 + k * 13 + len(name)) % layout.partitions == partition for k in range(3)
                )
            ]
    assert len([f for facts in everything.facts.values() for f in facts]) == len(appended)
    assert set(few.facts) == {3, 17, 40, 63}  # nothing of the others
    for partition in few.facts:
        assert few.facts[partition] == everything.facts[partition]

    few.reader.drop(17)
    last = await writer.append(17, b"after the drop")
    other = await writer.append(40, b"still read")
    await few.read_to({40: other.seq})
    assert few.seqs[17] == last.seq - 1 and "after the drop" not in few.facts[17]
    for reader in (everything.reader, few.reader):
        await reader.aclose()


async def test_a_reader_gaining_a_partition_mid_stream_catches_up_exactly(
    redis: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    layout = redis.layout(next(names))
    writer = writer_of(redis, layout)
    snapshots = PartitionSnapshots(redis.client, layout)
    first = replica(redis, layout, 5, 6)
    await first.read_until(lambda: len(first.facts) == 2)
    appended = [await writer.append(5, f"fact {i}".encode()) for i in range(30)]
    await first.read_to(ends(appended))
    for at in (10, 20):  # two snapshots: the second trims the stream to the first
        assert await snapshots.claim(5, "node-a", 60_000) or at == 20
        doc = orjson.dumps(first.facts[5][:at])
        entry = appended[at - 1]
        assert await snapshots.write(5, Snapshot(entry.id, entry.seq, doc), retention_ms=0)
    assert not await snapshots.claim(5, "node-b", 60_000)  # node-a writes them for now
    stale = appended[14]
    assert not await snapshots.write(5, Snapshot(stale.id, stale.seq, b"[]"), retention_ms=0)
    assert await snapshots.trimmed(5) == tuple(map(int, appended[8].id.split("-")))

    late = replica(redis, layout, 5)
    appended += [await writer.append(5, f"fact {i}".encode()) for i in range(30, 35)]
    await late.read_to(ends(appended))
    reload = late.reads[0].reload
    assert reload is not None and (reload.seq, late.reads[0].gap) == (20, False)
    assert late.reads[0].entries[0].seq == 21  # from the snapshot on, not the stream's start
    await first.read_to(ends(appended))
    assert late.facts[5] == first.facts[5] == [f"fact {i}" for i in range(35)]

    more = [await writer.append(5, b"after"), await writer.append(6, b"elsewhere")]
    await late.read_to(ends(more[:1]))
    await first.read_to(ends(more))
    assert late.facts[5] == first.facts[5] and 6 not in late.facts
    for reader in (first.reader, late.reader):
        await reader.aclose()


async def test_a_partition_gained_while_a_read_blocks_is_read_without_waiting_for_it(
    redis: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    layout = redis.layout(next(names), partitions=32, groups=8)
    writer = writer_of(redis, layout)
    reader = PartitionReader(redis.client, layout, block_ms=int(BOUND * 4000))
    # blocks longer than the client waits for a reply (5 s on one Redis): a read that was not
    # sent again for the partition gained would fail there (or wait past BOUND)
    seen = Replica(reader)
    reader.gain(2)
    await seen.read_until(lambda: 2 in seen.facts)
    blocked = asyncio.ensure_future(seen.read_until(lambda: 10 in seen.seqs))
    await asyncio.sleep(0)  # the XREAD of partition 2's group is sent, and blocks
    reader.gain(10)  # the same group: the blocked XREAD does not name it
    await blocked  # its snapshot, loaded at once
    appended = await writer.append(10, b"news")
    await seen.read_to(ends([appended]))
    assert seen.facts == {2: [], 10: ["news"]} and seen.failures == 0
    await reader.aclose()


async def test_a_reader_behind_a_trim_is_told_to_reload_the_snapshot(
    redis: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    """Behind: a blocked reader that did not read, a fed one whose pushes were lost."""
    layout = redis.layout(next(names))
    writer = writer_of(redis, layout)
    snapshots = PartitionSnapshots(redis.client, layout)
    slow = replica(redis, layout, 9)
    appended = [await writer.append(9, f"fact {i}".encode()) for i in range(3)]
    await slow.read_to(ends(appended))
    if redis.cluster is None:  # a fed reader hears pushes while it does not read: lose them
        assert await redis.client.client_kill_filter(_type="pubsub") >= 1
    appended += [await writer.append(9, f"fact {i}".encode()) for i in range(3, 10)]
    for at in (6, 10):  # the second trims entries 4 and 5, which the slow reader never read
        entry = appended[at - 1]
        doc = orjson.dumps([f"fact {i}" for i in range(at)])
        assert await snapshots.write(9, Snapshot(entry.id, entry.seq, doc), retention_ms=0)
    await slow.read_to(ends(appended))
    gap = slow.reads[-1]
    assert gap.gap and gap.reload is not None and gap.reload.seq == 10
    assert slow.facts[9] == [f"fact {i}" for i in range(10)]
    assert not any(read.gap for read in slow.reads[:-1])
    await slow.reader.aclose()


async def test_scripts_a_redis_forgot_are_sent_again(
    single_redis: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    redis = single_redis
    layout = redis.layout(next(names))
    writer = writer_of(redis, layout)
    reader = replica(redis, layout, 1)
    first = await writer.append(1, b"one")
    await redis.client.script_flush()  # as a restarted Redis or a fresh master knows none
    second = await writer.append(1, b"two")
    await reader.read_to(ends([second]))
    assert reader.facts[1] == ["one", "two"] and (first.seq, second.seq) == (1, 2)
    await redis.client.script_flush()
    assert await PartitionSnapshots(redis.client, layout).write(
        1, Snapshot(second.id, 2, b'["one","two"]'), retention_ms=0
    )
    await redis.client.script_flush()
    again = replica(redis, layout, 1)
    await again.read_to({1: 2})
    assert again.facts[1] == ["one", "two"]
    for each in (reader, again):
        await each.reader.aclose()


# -- on the Redis Cluster only -----------------------------------------------------------------


async def masters_of(cluster: RedisClusterSetup, layout: PartitionLayout) -> dict[int, int]:
    """partition -> port of the master serving its slot."""
    slots = {p: key_slot(layout.of(p).stream.encode()) for p in range(layout.partitions)}
    masters = {slot: await cluster.master_of(slot) for slot in set(slots.values())}
    return {p: masters[slot] for p, slot in slots.items()}


async def test_the_partitions_spread_over_the_three_masters(
    redis_cluster: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    assert redis_cluster.cluster is not None
    layout = redis_cluster.layout(next(names), partitions=128, groups=16)
    masters = await masters_of(redis_cluster.cluster, layout)
    groups: dict[int, set[int]] = {}
    for partition, port in masters.items():
        groups.setdefault(port, set()).add(layout.group_of(partition))
    assert sorted(len(found) for found in groups.values()) == [5, 5, 6]
    writer = writer_of(redis_cluster, layout)
    await asyncio.gather(*(writer.append(p, b"x") for p in range(layout.partitions)))
    for port in groups:  # each master holds the streams of its partitions
        client = redis_cluster.cluster.client(port)
        try:
            for partition in (p for p, at in masters.items() if at == port):
                assert await client.xlen(layout.of(partition).stream) == 1
        finally:
            await client.aclose()


@dataclass
class Load:
    """Appends numbered facts to some partitions, one after another, until stopped; a failed
    append (Redis moving) may or may not be written, and is not counted as acknowledged."""

    writer: PartitionWriter
    partitions: tuple[int, ...]
    acknowledged: dict[int, list[int]] = field(default_factory=dict)
    failures: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            try:
                done = await asyncio.gather(
                    *(self.writer.append(p, f"{n}".encode()) for p in self.partitions)
                )
            except REDIS_ERRORS:
                self.failures += 1
                await asyncio.sleep(RETRY)
                continue
            for item in done:
                self.acknowledged.setdefault(item.partition, []).append(n)

    def check(self, seen: Replica, *, lossy: bool) -> None:
        """In order, none twice, none acknowledged lost, no gap; ``lossy``: Redis may lose
        what it acknowledged (a master killed before its replica had it), and then the reader
        was told (a gap) or never saw it."""
        for partition in self.partitions:
            *facts, end = seen.facts[partition]
            assert end == "end"
            numbers = [int(f) for f in facts]
            assert numbers == sorted(set(numbers))
            if not lossy:
                assert set(self.acknowledged[partition]) <= set(numbers)
        assert lossy or not any(read.gap for read in seen.reads)


async def run_load_through(
    redis: Redis,
    writer_of: Callable[[Redis, PartitionLayout], PartitionWriter],
    event: Callable[[PartitionLayout, int], Awaitable[None]],
    *,
    lossy: bool = False,
) -> None:
    """Appends and reads on partitions of one group and of another while ``event`` happens to
    the first group's slot; then checks what the reader applied came in order, nothing
    acknowledged was lost (unless ``lossy``), and a reader started afterwards reads the same."""
    layout = redis.layout(next(names), partitions=32, groups=8)
    writer = writer_of(redis, layout)
    group = await group_with_replica(redis, layout) if redis.cluster else 3
    moving, staying = (group, group + 8), ((group + 1) % 8, (group + 1) % 8 + 8)
    seen = replica(redis, layout, *moving, *staying)
    await seen.read_until(lambda: len(seen.facts) == 4)
    load = Load(writer, (*moving, *staying))
    running = asyncio.ensure_future(load.run())
    reading = asyncio.ensure_future(seen.read_until(lambda: False))
    try:
        await seen_grow(seen, load, 20)
        await event(layout, key_slot(layout.of(moving[0]).stream.encode()))
        await seen_grow(seen, load, 20)
    finally:
        load.stop.set()
        await running
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    tails = [await writer.append(p, b"end") for p in load.partitions]
    await seen.read_to(ends(tails))
    load.check(seen, lossy=lossy)
    fresh = replica(redis, layout, *load.partitions)  # what Redis holds now
    await fresh.read_to(ends(tails))
    assert fresh.facts == seen.facts
    await seen.reader.aclose()


async def group_with_replica(redis: Redis, layout: PartitionLayout) -> int:
    """A read group whose master has a replica to take over."""
    assert redis.cluster is not None
    for group in range(layout.groups):
        master = await redis.cluster.master_of(key_slot(layout.of(group).stream.encode()))
        if await redis.cluster.replicas_of(master):
            return group
    raise AssertionError("no master of the Redis Cluster has a replica left")


async def seen_grow(seen: Replica, load: Load, more: int) -> None:
    """Wait until the reader applied ``more`` further acknowledged appends of every partition."""
    goal = {p: len(load.acknowledged.get(p, [])) + more for p in load.partitions}
    async with asyncio.timeout(BOUND):
        while not all(len(seen.facts.get(p, [])) >= goal[p] for p in load.partitions):
            seen.applied.clear()
            await seen.applied.wait()


async def test_reads_and_appends_go_on_while_a_partitions_slot_moves(
    redis_cluster: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    cluster = redis_cluster.cluster
    assert cluster is not None

    async def migrate(layout: PartitionLayout, slot: int) -> None:
        source = await cluster.master_of(slot)
        target = next(
            port
            for port, role in (await cluster.roles()).items()
            if role == "master" and port != source
        )
        await cluster.migrate_slot(slot, target)
        assert await cluster.master_of(slot) == target

    await run_load_through(redis_cluster, writer_of, migrate)


async def test_reads_and_appends_go_on_while_a_partitions_master_fails_over(
    redis_cluster: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    cluster = redis_cluster.cluster
    assert cluster is not None

    async def fail_over(layout: PartitionLayout, slot: int) -> None:
        _old, replica_port = await cluster.fail_over(slot)
        async with asyncio.timeout(BOUND):
            await cluster.promoted(replica_port, slot)

    await run_load_through(redis_cluster, writer_of, fail_over)


async def test_reads_go_on_and_stay_true_to_redis_when_a_partitions_master_is_killed(
    redis_cluster: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    cluster = redis_cluster.cluster
    assert cluster is not None

    async def kill(layout: PartitionLayout, slot: int) -> None:
        _master, replica_port = await cluster.kill_master(slot)
        async with asyncio.timeout(BOUND):
            await cluster.promoted(replica_port, slot)

    await run_load_through(redis_cluster, writer_of, kill, lossy=True)


async def test_reads_go_on_and_stay_true_to_redis_when_sentinel_fails_over(
    sentinel_redis: Redis, writer_of: Callable[[Redis, PartitionLayout], PartitionWriter]
) -> None:
    sentinels = sentinel_redis.sentinels
    assert sentinels is not None

    async def kill(layout: PartitionLayout, slot: int) -> None:
        starts = [len(sentinel.lines) for sentinel in sentinels.sentinels]
        old = await sentinels.kill_master()
        async with asyncio.timeout(BOUND):
            assert await sentinels.switched(starts) != old

    await run_load_through(sentinel_redis, writer_of, kill, lossy=True)
