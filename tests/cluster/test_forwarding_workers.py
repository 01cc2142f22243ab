"""``--workers 2`` without any balancer: the kernel spreads connections over the workers
(``SO_REUSEPORT``), so a polling client that opens a new connection per request reaches both
workers in turn; each worker has its own internal address, and forwarding does the rest."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest_asyncio
import socketio
from redis.asyncio import Redis

from cluster.test_workers import Supervisor
from support.client import Client
from support.redisserver import RedisServer, running_redis

FORWARDED = re.compile(r"node (\w+) forwarded (\d+) requests")


@pytest_asyncio.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    async with running_redis() as server:
        yield server


async def polling_client(http: aiohttp.ClientSession, url: str, app: str) -> Client:
    client = Client("polling")
    client.sio = socketio.AsyncClient(reconnection=False, http_session=http)  # on ``http``
    client.sio.on("easyrtcCmd", client.cmds.put_nowait)
    client.sio.on("easyrtcMsg", client.msgs.put_nowait)
    client.sio.on("disconnect", client.disconnected.set)
    await client.connect(url)
    await client.login(applicationName=app)
    return client


async def test_workers_on_one_port_serve_polling_clients_without_stickiness(
    redis_server: RedisServer,
) -> None:
    supervisor = Supervisor(redis_server.url, 2, cluster="fwd-workers")
    await supervisor.start()
    try:
        async with asyncio.timeout(20):
            await supervisor.all_listening()
        redis = Redis.from_url(redis_server.url)
        try:
            keys = [k async for k in redis.scan_iter(match="fwd-workers:alive:*")]
            urls = {orjson.loads(await redis.get(key))["url"] for key in keys}
        finally:
            await redis.aclose()
        assert len(urls) == 2, urls  # each worker reachable at its own address

        # a new connection per request: the kernel picks a worker for each
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            alice = await polling_client(http, supervisor.url, "workers")
            bob = await polling_client(http, supervisor.url, "workers")
            for n in range(20):
                reply = await alice.call(
                    "easyrtcMsg", {"msgType": "n", "targetEasyrtcid": bob.easyrtcid, "msgData": n}
                )
                assert reply["msgType"] == "ack", reply
            assert [(await bob.next_msg())["msgData"] for _ in range(20)] == list(range(20))
            for client in (alice, bob):
                await client.sio.disconnect()
    finally:
        start = len(supervisor.lines)
        await supervisor.stop()
    counts = [int(m[2]) for line in supervisor.lines[start:] if (m := FORWARDED.search(line))]
    assert len(counts) == 2, supervisor.lines[start:]
    assert sum(counts) > 0, counts
