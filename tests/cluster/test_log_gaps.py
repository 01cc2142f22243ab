"""A node that missed trimmed log entries notices, rebuilds from the snapshot, and says so.

Real redis-server and two real node processes, snapshots every 10 entries. Node b is frozen
(SIGSTOP; its alive key outlives the pause, so nobody reaps it) while a client logs in on a
and others come and go until the log is trimmed past where b stopped reading. When b runs
again, its reader finds that it missed entries: it rebuilds its state from the snapshot, its
client gets the whole list (with the newcomer it never read about), relays to the newcomer
work, one WARNING is logged and ``/metrics`` counts it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from redis.asyncio import Redis

from easyrtc_server.cluster.gaps import stream_id
from support.nodes import Node, running_nodes
from support.redisserver import running_redis

from .test_failures import TARGET, clients

NODE_ENV = {
    "EASYRTC_CLUSTER_ALIVE_TTL": "120",
    "EASYRTC_CLUSTER_SNAPSHOT_ENTRIES": "10",
    "EASYRTC_CLUSTER_LOG_RETENTION": "0",  # a frozen node misses entries at once
}
MISSED = "the cluster log reader missed entries trimmed from the log"
CLUSTER = "gaps"


@asynccontextmanager
async def two_nodes(env: dict[str, str]) -> AsyncIterator[tuple[Any, ...]]:
    """Redis, nodes a and b with a client each that sees the other, ``join``, a Redis client."""
    async with (
        running_redis() as redis_server,
        running_nodes(redis_server.url, 2, cluster=CLUSTER, env=env) as (a, b),
        clients() as join,
    ):
        redis = Redis.from_url(redis_server.url)
        try:
            on_a, on_b = await join(a), await join(b)
            await asyncio.gather(on_a.sees({on_a.id, on_b.id}), on_b.sees({on_a.id, on_b.id}))
            yield a, b, on_a, on_b, join, redis
        finally:
            await redis.aclose()


async def freeze(redis: Redis, node: Node) -> bytes:
    """Stop ``node`` (SIGSTOP); the id of the last log entry before."""
    assert node.process is not None
    [(stopped_at, _)] = await redis.xrevrange(f"{CLUSTER}:log", count=1)
    node.process.send_signal(signal.SIGSTOP)
    return bytes(stopped_at)


async def test_a_node_that_missed_trimmed_entries_rebuilds_from_the_snapshot() -> None:
    async with two_nodes(NODE_ENV) as (a, b, on_a, on_b, join, redis):
        stopped_at = await freeze(redis, b)
        try:
            newcomer = await join(a)
            async with asyncio.timeout(4 * TARGET):  # come and go until b's part is trimmed
                while stream_id(await redis.get(f"{CLUSTER}:trimmed") or "0-0") <= stream_id(
                    stopped_at
                ):
                    passing = await join(a, "elsewhere")
                    await passing.client.sio.disconnect()
        finally:
            b.process.send_signal(signal.SIGCONT)

        everyone = {on_a.id, on_b.id, newcomer.id}
        await on_b.sees(everyone)
        async with asyncio.timeout(TARGET):
            await b.wait_for_line(MISSED)
        assert sum(MISSED in line for line in b.lines) == 1
        assert not any(MISSED in line for line in a.lines)
        assert (await on_b.send_to(newcomer, "after the rebuild"))["msgData"]
        assert (await newcomer.send_to(on_b, "and back"))["msgData"]
        rooms = await on_b.client.cmd("getRoomList")
        assert rooms["msgData"]["roomList"]["r"]["numberClients"] == 3
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{b.url}/metrics") as metrics,
            http.get(f"{b.url}/readyz") as ready,
        ):
            text = await metrics.text()
            assert ready.status == 200
        assert "easyrtc_cluster_log_gaps_total 1.0" in text


async def test_a_node_behind_by_several_snapshots_reads_on_within_the_retention() -> None:
    """The log keeps ``cluster_log_retention`` seconds (30 by default) past its trims: a node
    behind in a burst reads what it missed instead of rebuilding from the snapshot."""
    env = {**NODE_ENV}
    del env["EASYRTC_CLUSTER_LOG_RETENTION"]
    async with two_nodes(env) as (a, b, on_a, on_b, join, redis):
        stopped_at = await freeze(redis, b)
        try:
            newcomer = await join(a)
            snapshots: set[bytes] = set()
            async with asyncio.timeout(4 * TARGET):  # three snapshots after b stopped
                while len(snapshots) < 3:
                    passing = await join(a, "elsewhere")
                    await passing.client.sio.disconnect()
                    at = await redis.get(f"{CLUSTER}:snapshot-id")
                    if at is not None and stream_id(at) > stream_id(stopped_at):
                        snapshots.add(at)
            trimmed = await redis.get(f"{CLUSTER}:trimmed") or b"0-0"
            assert stream_id(trimmed) < stream_id(stopped_at)  # what b has not read is kept
        finally:
            b.process.send_signal(signal.SIGCONT)

        everyone = {on_a.id, on_b.id, newcomer.id}
        await on_b.sees(everyone)
        assert (await on_b.send_to(newcomer, "read on, not rebuilt"))["msgData"]
        assert not any(MISSED in line for line in a.lines + b.lines)
