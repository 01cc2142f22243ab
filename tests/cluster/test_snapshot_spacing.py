"""Snapshots are spaced by the state's size: their cost per log entry does not grow with it.

A snapshot is the whole state, so one every ``cluster_snapshot_entries`` entries made a storm
of n logins cost n²/interval connections encoded. A node now waits for as many entries as the
state holds connections when that is more. Real ``redis-server``, one real node, snapshots
every 5 entries, 30 connections: the log keeps at least 30 entries behind its trims (a
snapshot's trim goes to the snapshot before), and is still trimmed. The test lifts the
snapshot lock before each entry (it spaces snapshots by time too, 250 ms, which a test this
fast never waits for).
"""

from __future__ import annotations

from redis.asyncio import Redis

from support.nodes import running_nodes
from support.redisserver import running_redis

from .test_failures import clients

CLUSTER = "spacing"
CONNECTIONS = 30


async def test_snapshots_wait_for_as_many_entries_as_the_state_has_connections() -> None:
    env = {
        "EASYRTC_CLUSTER_SNAPSHOT_ENTRIES": "5",
        "EASYRTC_CLUSTER_LOG_RETENTION": "0",  # trims go as far as the snapshots let them
    }
    async with (
        running_redis() as server,
        running_nodes(server.url, 1, cluster=CLUSTER, env=env) as (node,),
        clients() as join,
    ):
        redis = Redis.from_url(server.url)
        log, lock = f"{CLUSTER}:log", f"{CLUSTER}:snapshot-lock"
        try:
            members = []
            for i in range(CONNECTIONS):
                await redis.delete(lock)
                members.append(await join(node, f"room{i}"))
            for i in range(3 * CONNECTIONS):
                await redis.delete(lock)
                presence = {"setPresence": {"show": "away", "status": f"s{i}"}}
                await members[i % CONNECTIONS].client.cmd("setPresence", msgData=presence)
                if i >= CONNECTIONS:  # a fixed interval of 5 kept 5 to 10 entries
                    assert await redis.xlen(log) >= CONNECTIONS
            # the reader writes a snapshot (and trims) before it applies the next entry: the
            # last reply came after every trim but the one its own entry may cause
            added = int((await redis.xinfo_stream(log))["entries-added"])
            assert await redis.xlen(log) < added - CONNECTIONS
        finally:
            await redis.aclose()
