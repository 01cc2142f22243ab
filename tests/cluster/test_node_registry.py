"""A process started with ``--redis`` is a node: it says so, and is findable in Redis."""

from __future__ import annotations

import subprocess
import sys

import orjson
from redis.asyncio import Redis

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
            assert [k async for k in redis.scan_iter(match="reg:alive:*")] == []
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
