"""The liveness watch against a real redis-server: dead nodes reaped once, a new epoch seen,
a Redis back with an older dataset noticed.

The nodes here are ``NodeRegistry``/``Liveness`` pairs in this process (the log is a list of
appended entries); ``test_failures.py`` runs the same through real node processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from redis import Redis as BlockingRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from easyrtc_server.cluster.health import HealthCollector, ReaderHealth
from easyrtc_server.cluster.heartbeat import Heartbeat
from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.liveness import Liveness, lost
from easyrtc_server.cluster.registry import NodeInfo, NodeRegistry
from support.redisserver import RedisServer, running_redis


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    async with running_redis() as server:
        yield server


class Watcher:
    """One node's registry and watch, with what it appended and the epochs it rebuilt in."""

    def __init__(
        self, redis: Redis, node_id: str, owners: set[str], senders: set[str] | None = None
    ) -> None:
        self.keys = ClusterKeys("live")
        self.registry = NodeRegistry(redis, self.keys, NodeInfo(node_id), ttl=0.5)
        self.appended: list[str] = []
        self.rebuilt: list[str] = []
        self.owners = owners
        self.heard: dict[str, float] = {}
        """When this node last applied an entry of each node (the clock is ``now``)."""
        self.now = 100.0
        self.applied = "0-0"
        """The id of the log entry this node applied last."""
        self.health = ReaderHealth()
        self.liveness = Liveness(
            redis,
            self.keys,
            self.registry,
            owners=lambda: self.owners,
            senders=lambda: senders or set(),
            announce_gone=self._announce_gone,
            on_new_epoch=self._rebuild,
            heard=self.heard.get,
            applied=lambda: self.applied,
            health=self.health,
            clock=lambda: self.now,
        )

    async def _announce_gone(self, node: str) -> None:
        self.appended.append(node)

    async def _rebuild(self, epoch: str) -> None:
        self.rebuilt.append(epoch)


async def test_a_node_whose_key_expired_is_announced_gone_by_one_node(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        watchers = [Watcher(redis, name, {"a", "b", "c"}) for name in ("a", "b")]
        for w in watchers:
            await w.registry.announce()
        await redis.set("live:alive:c", NodeInfo("c").encode(), px=100_000)
        assert [await w.liveness.reap() for w in watchers] == [[], []]  # everyone alive
        await redis.delete("live:alive:c")  # expired
        reaped = [await w.liveness.reap() for w in watchers]
        assert reaped == [["c"], []]  # the second is held off by the reaper lock
        assert watchers[0].appended == ["c"]
        assert watchers[1].appended == []
    finally:
        await redis.aclose()


async def test_a_node_that_left_owning_nothing_is_forgotten_quietly(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A node that stopped cleanly owns no connection, but the replicas keep its last sequence
    number (``ordering``): announced gone, so that one number per node start does not pile up
    in every snapshot. Without a warning: nobody was removed."""
    redis = Redis.from_url(redis_server.url)
    try:
        watcher = Watcher(redis, "a", owners=set(), senders={"a", "b", "old"})
        await watcher.registry.announce()
        await redis.set("live:alive:b", NodeInfo("b").encode(), px=100_000)
        with caplog.at_level("DEBUG", logger="easyrtc_server.cluster"):
            assert await watcher.liveness.reap() == ["old"]
        assert watcher.appended == ["old"]  # not itself, not the live "b"
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
    finally:
        await redis.aclose()


async def test_a_node_back_in_time_is_not_reaped(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        w = Watcher(redis, "a", {"a", "b"})
        await w.registry.announce()
        assert await w.liveness.reap() == ["b"]  # b never announced itself
        await redis.delete("live:reaper")
        await redis.set("live:alive:b", NodeInfo("b").encode(), px=100_000)
        assert await w.liveness.reap() == []
        assert await w.liveness.reap() == []
        assert w.appended == ["b"]
    finally:
        await redis.aclose()


async def test_every_node_rebuilds_once_in_the_one_new_epoch_after_redis_came_back_empty(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        watchers = [Watcher(redis, name, set()) for name in ("a", "b", "c")]
        for w in watchers:
            await w.liveness.start()
            await w.liveness.stop()  # rounds are run by hand below
        first = watchers[0].liveness.epoch
        assert first is not None and all(w.liveness.epoch == first for w in watchers)
        for w in watchers:
            await w.liveness.check()
        assert all(w.rebuilt == [] for w in watchers)

        await redis_server.restart()
        with contextlib.suppress(RedisConnectionError):  # the pooled connection died with it
            await redis.ping()
        for w in watchers:
            await w.liveness.check()
            await w.liveness.check()
        epochs = {w.rebuilt[0] for w in watchers if len(w.rebuilt) == 1}
        assert len(epochs) == 1 and first not in epochs
        assert all(len(w.rebuilt) == 1 for w in watchers)
    finally:
        await redis.aclose()


async def test_a_node_still_writing_to_the_log_is_not_reaped_though_its_key_expired(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        w = Watcher(redis, "a", {"a", "b"})
        await w.registry.announce()
        w.heard["b"] = w.now - 0.4  # b's entries are still coming (its loop is only busy)
        assert await w.liveness.reap() == []
        w.now += 0.2  # nothing from b for longer than the TTL (0.5 s): it is gone
        assert await w.liveness.reap() == ["b"]
    finally:
        await redis.aclose()


async def test_a_busy_event_loop_keeps_its_alive_key_through_the_heartbeat_thread(
    redis_server: RedisServer,
) -> None:
    keys = ClusterKeys("busy")
    info = NodeInfo("n")
    redis = Redis.from_url(redis_server.url)
    heartbeat = Heartbeat(
        lambda: BlockingRedis.from_url(redis_server.url, socket_timeout=0.5),
        keys.alive("n"),
        info.encode,
        0.6,
    )
    registry = NodeRegistry(redis, keys, info, ttl=0.6, heartbeat=heartbeat)
    try:
        await registry.start()
        time.sleep(2.0)  # noqa: ASYNC251 (the loop does nothing else for over three TTLs)
        assert await redis.exists(keys.alive("n"))  # still there: the thread kept it fresh
        assert heartbeat.refreshes >= 3
        await registry.stop()
        assert not await redis.exists(keys.alive("n"))  # a goodbye still removes it at once
    finally:
        await registry.stop()
        await redis.aclose()


def test_the_heartbeat_stops_once_the_event_loop_has_stalled_past_its_limit() -> None:
    now = [0.0]
    heartbeat = Heartbeat(lambda: BlockingRedis(), "k", lambda: b"", 6.0, clock=lambda: now[0])
    assert heartbeat.stall_limit == 60.0
    heartbeat.beat()
    now[0] = 59.0
    assert heartbeat.due()  # a loop busy for a minute is slow, not dead
    now[0] = 61.0
    assert not heartbeat.due()  # a wedged loop: the node is let go, and reaped
    heartbeat.beat()
    assert heartbeat.due()


def test_an_entry_is_lost_only_when_neither_in_the_log_nor_trimmed() -> None:
    assert not lost("5-1", "5-1", None)  # still there
    assert not lost("5-1", None, "5-1")  # a snapshot trimmed it
    assert not lost("5-1", None, "9-0")  # trimmed with newer ones (this node was behind)
    assert not lost("0-0", None, None)  # applied nothing (or reading the log from its start)
    assert lost("5-1", "4-9", "1-0")  # older entries only: the log ends before it
    assert lost(b"5-1", b"5-0", None)
    assert lost("5-1", None, "4-0")  # no entry at or before it, and no trim past it
    assert lost("5-1", None, None)  # no log at all


async def _stale_log(redis: Redis, *ids: str) -> None:
    """The log as an older dataset holds it: the ``ids`` only."""
    await redis.delete("live:log")
    for entry_id in ids:
        await redis.xadd("live:log", {"e": b"x"}, id=entry_id)


async def test_an_older_redis_makes_every_node_rebuild_in_one_new_epoch(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two nodes applied entries the log no longer holds (Redis loaded an older dump, and
    entries were written since: they do not hide the loss); a third applied nothing. The two
    notice at once, one new epoch is made, the older log and snapshot are gone, and all three
    rebuild in it, once."""
    redis = Redis.from_url(redis_server.url)
    try:
        watchers = [Watcher(redis, name, set()) for name in ("a", "b", "c")]
        for w in watchers:
            await w.liveness.start()
            await w.liveness.stop()  # rounds are run by hand below
        first = watchers[0].liveness.epoch
        await _stale_log(redis, "1-1", "2-1", "7-1")
        await redis.set("live:snapshot", b"{}")
        await redis.set("live:snapshot-id", "1-1")
        watchers[0].applied = watchers[1].applied = "2-1"
        for w in watchers:
            await w.liveness.check()
        assert all(w.rebuilt == [] for w in watchers)  # every entry applied is there

        await _stale_log(redis, "1-1", "7-1")  # back in time (lost 2-1), then written on
        watchers[0].applied = watchers[1].applied = "7-1"  # already read the new one...
        watchers[0].liveness.unsure("2-1")  # ...after its reader lost Redis at 2-1
        watchers[0].liveness.unsure("7-1")  # (a later failure, once it read on, hides nothing)
        watchers[1].applied = "2-1"
        with caplog.at_level("WARNING", logger="easyrtc_server.cluster"):
            await asyncio.gather(*(w.liveness.check() for w in watchers[:2]))  # at once
            await watchers[2].liveness.check()
        epochs = {w.rebuilt[0] for w in watchers if len(w.rebuilt) == 1}
        assert len(epochs) == 1 and first not in epochs
        assert all(len(w.rebuilt) == 1 for w in watchers)
        assert await redis.exists("live:log", "live:snapshot", "live:snapshot-id") == 0
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 3 and all(t.endswith(": rebuilding the cluster state") for t in said)
        older = [text for text in said if "Redis came back with an older dataset" in text]
        noticed = [w.health.older_redis for w in watchers]
        assert noticed[0] == 1 and noticed[2] == 0  # c applied nothing: the epoch told it
        assert len(older) == sum(noticed), said  # b noticed too, unless a's new epoch was first
        metrics = CollectorRegistry()
        metrics.register(HealthCollector(watchers[0].health))
        assert b"easyrtc_cluster_older_redis_total 1.0" in generate_latest(metrics)

        new = await redis.xadd("live:log", {"e": b"rejoin"})  # a's rejoin, in the new epoch
        late = await watchers[1].liveness.replace_epoch(first)  # b noticed, a moment late
        assert late == epochs.pop()  # a's epoch, not a second one
        assert [entry_id for entry_id, _ in await redis.xrange("live:log")] == [new]

        for w in watchers:  # nothing more: the new log is read from its start
            w.applied = "0-0"
            await w.liveness.check()
        assert all(len(w.rebuilt) == 1 for w in watchers)
    finally:
        await redis.aclose()


async def test_a_trimmed_entry_or_a_reader_that_lost_redis_is_not_an_older_redis(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        w = Watcher(redis, "a", set())
        await w.liveness.start()
        await w.liveness.stop()
        await _stale_log(redis, "9-1", "12-1")
        await redis.set("live:trimmed", "8-1")  # a snapshot trimmed up to 8-1
        w.applied = "8-1"  # this node was behind: its reader rebuilds from the snapshot
        await w.liveness.check()
        w.applied = "12-1"
        w.liveness.unsure("9-1")  # Redis was away a while, and came back with everything
        await w.liveness.check()
        assert w.rebuilt == []
        assert w.health.older_redis == 0
    finally:
        await redis.aclose()
