"""A login whose log entry Redis took and then lost is refused as soon as the node knows.

Redis can acknowledge an entry and lose it before any reader read it (a master killed before
its replica had it, then a failover). The node that appended it waits for it to come back
through its reader; while the reader applies later entries the "applied nothing for 10 s"
bound never runs out, so the client waited for ever under load. A node's entries are taken in
its order, so when it applies one of its own, an earlier one Redis took and that is not there
is lost: its event is refused then.

Real ``redis-server``, one real node, real clients; the loss made without a failover: the test
appends an entry (from a node that does not exist) that holds the reader back
(``cluster_order_wait``, the relays it claims never come), deletes the next login's entry
behind it, and logs another client in after it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from easyrtc_server.cluster import log as entries
from support.client import Client
from support.nodes import running_nodes
from support.redisserver import running_redis

from .test_failures import APP, ROOM, error_code

CLUSTER = "lost"
HELD = 3.0
"""Seconds the reader waits at the forged entry (``cluster_order_wait``)."""


async def _node_id(redis: Redis) -> str:
    [key] = [key async for key in redis.scan_iter(f"{CLUSTER}:alive:*")]
    return bytes(key).decode().rsplit(":", 1)[1]


async def _next_entry_after(redis: Redis, after: bytes) -> bytes:
    """The id of the first entry appended after ``after``, once there is one."""
    while True:
        found = await redis.xrange(f"{CLUSTER}:log", min=b"(" + after, count=1)
        if found:
            return bytes(found[0][0])
        await asyncio.sleep(0.01)


async def _login(client: Client) -> Any:
    auth = {
        "apiVersion": "1.1.1-beta",
        "applicationName": APP,
        "roomJoin": {ROOM: {"roomName": ROOM}},
    }
    return await client.call("easyrtcAuth", {"msgType": "authenticate", "msgData": auth})


async def test_a_login_whose_entry_redis_lost_is_refused_when_a_later_one_is_applied() -> None:
    env = {"EASYRTC_CLUSTER_ORDER_WAIT": str(HELD)}
    async with (
        running_redis() as server,
        running_nodes(server.url, 1, cluster=CLUSTER, env=env) as (node,),
    ):
        redis = Redis.from_url(server.url)
        lost, later = Client(), Client()
        try:
            await lost.connect(node.url)
            await later.connect(node.url)
            node_id = await _node_id(redis)
            holder = entries.close("ghost", int(time.time() * 1000), "nobody")
            holder.seq, holder.relays = 1, {node_id: 1}  # a relay to it that never comes
            held_at = bytes(await redis.xadd(f"{CLUSTER}:log", {"e": holder.encode()}))

            refused = asyncio.ensure_future(_login(lost))
            async with asyncio.timeout(HELD):  # taken while the reader is held
                lost_entry = await _next_entry_after(redis, held_at)
            assert await redis.xdel(f"{CLUSTER}:log", lost_entry) == 1

            token = await _login(later)  # applied after the hold, past the lost entry
            assert token["msgType"] == "token", token
            members = token["msgData"]["roomData"][ROOM]["clientList"]
            assert set(members) == {token["msgData"]["easyrtcid"]}  # the lost login is in none
            async with asyncio.timeout(HELD):  # not 10 s after the reader went idle
                reply = await refused
            assert error_code(reply) is not None, reply
        finally:
            for client in (lost, later):
                await client.sio.disconnect()
            await redis.aclose()
