"""A process started with ``--redis`` is a node: it says so, and is findable in Redis."""

from __future__ import annotations

import subprocess
import sys

import orjson
from redis.asyncio import Redis

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.registry import SCAN_EVERY, NodeInfo, NodeRegistry
from support.nodes import running_nodes
from support.redisserver import running_redis


async def test_nodes_announce_themselves_and_leave_when_stopped() -> None:
    async with running_redis() as redis_server:
        redis = Redis.from_url(redis_server.url)
        try:
            async with running_nodes(redis_server.url, 2, cluster="reg") as nodes:
                roles = [await node.wait_for_line("listening on ") for node in nodes]
                assert all("of cluster reg" in role for role in roles), roles
                keys = sorted([k.decode() async for k in redis.scan_iter(match="reg:alive:*")])
                assert len(keys) == 2
                for key in keys:
                    info = orjson.loads(await redis.get(key))
                    assert key == f"reg:alive:{info['node']}"
                    assert 0 < await redis.pttl(key) <= 6000
                    assert info["pid"] in {n.process.pid for n in nodes if n.process}
                listed = {m.decode() async for m in redis.sscan_iter("reg:nodes")}
                assert listed == {key.removeprefix("reg:alive:") for key in keys}
            assert [k async for k in redis.scan_iter(match="reg:alive:*")] == []
            assert await redis.scard("reg:nodes") == 0
        finally:
            await redis.aclose()


def test_workers_without_redis_stop_at_start_saying_why() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "easyrtc_server", "--workers", "2", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "--workers 2 needs --redis" in done.stderr


async def _scans(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


async def test_alive_nodes_are_found_without_scanning_a_big_keyspace() -> None:
    """Each node looks for the alive ones every second: with partition logs and other
    applications' keys in the same Redis, a SCAN of the keyspace each time cost hundreds of
    round trips per look (issue 23's storm: 0.5 SCAN per state change)."""
    async with running_redis() as redis_server:
        redis = Redis.from_url(redis_server.url)
        keys = ClusterKeys("big")
        nodes = [NodeRegistry(redis, keys, NodeInfo(f"node{i}"), ttl=60) for i in range(3)]
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(20_000):
                    pipe.set(f"other-app:{i}", "x")
                await pipe.execute()
            for node in nodes:
                await node.announce()
            before = await _scans(redis)
            for _ in range(SCAN_EVERY):
                assert set(await nodes[0].alive_nodes()) == {"node0", "node1", "node2"}
            assert await _scans(redis) - before <= 25  # one search of 20,000 keys, by 1,000
        finally:
            await redis.aclose()


async def test_a_dead_node_leaves_the_list_and_an_unlisted_one_is_still_found() -> None:
    async with running_redis() as redis_server:
        redis = Redis.from_url(redis_server.url)
        keys = ClusterKeys("dead")
        clock = [0.0]
        looking = NodeRegistry(redis, keys, NodeInfo("looking"), ttl=60, clock=lambda: clock[0])
        try:
            await looking.announce()
            await NodeRegistry(redis, keys, NodeInfo("dying"), ttl=60).announce()
            # a node of before the list: only its alive key
            await redis.set(keys.alive("older"), NodeInfo("older").encode(), px=60_000)
            assert set(await looking.alive_nodes()) == {"looking", "dying", "older"}
            await redis.delete(keys.alive("dying"))  # expired
            assert set(await looking.alive_nodes()) == {"looking", "older"}
            clock[0] = 59.0
            assert set(await looking.alive_nodes()) == {"looking", "older"}
            assert await redis.sismember(keys.nodes, "dying")  # others may not have looked
            clock[0] = 60.0  # an alive TTL: every node has looked since
            assert set(await looking.alive_nodes()) == {"looking", "older"}
            assert not await redis.sismember(keys.nodes, "dying")
            # known to the caller (it shows that node's clients): judged by its own key
            await redis.delete(keys.alive("older"))
            await redis.set(keys.alive("other"), NodeInfo("other").encode(), px=60_000)
            assert set(await looking.alive_nodes(also=["other", "older"])) == {"looking", "other"}
        finally:
            await redis.aclose()
