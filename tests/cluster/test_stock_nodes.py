"""Real nodes log a stock-hooked login as one entry, and only while every live node reads it.

Real redis-server and node processes, real socket.io clients. A login to a node whose hooks
decide as the stock ones is one ``stock`` entry in the log once the nodes have seen each other
say they read such entries; a node with ``cluster_stock_entries = false`` (as a node of before
says nothing) stops them while it lives, and a node with hooks of its own logs its logins as the
event and its answers. Whatever the entries, everyone sees everyone and relays cross nodes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from support.nodes import Node, running_nodes
from support.redisserver import running_redis

from .test_failures import TARGET, Member, clients

CLUSTER = "stock"
NODE_ENV = {"EASYRTC_CLUSTER_CHECK_INTERVAL": "0.2"}
SEPARATE = ["recv", "answer", "answer", "answer"]
TESTS_DIR = Path(__file__).resolve().parent.parent
HOOKED_ENV = {
    **NODE_ENV,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
}


async def entries_of(redis: Redis, cid: str) -> list[str]:
    """The kinds of the log entries about ``cid``, in order."""
    kinds = []
    for _id, fields in await redis.xrange(f"{CLUSTER}:log"):
        entry: dict[str, Any] = orjson.loads(fields[b"e"])
        if entry.get("p") == cid:
            kinds.append(entry["k"])
    return kinds


async def logged_as(redis: Redis, join: Any, node: Node, kinds: list[str]) -> list[Member]:
    """Log clients in on ``node`` until one's login is logged as ``kinds`` (the nodes learn
    what the others read once per check); returns them all."""
    members = []
    async with asyncio.timeout(TARGET):
        while True:
            member = await join(node)
            members.append(member)
            if (await entries_of(redis, member.id))[: len(kinds) + 1] == kinds:
                return members


async def test_stock_logins_are_one_entry_while_every_live_node_reads_them() -> None:
    async with (
        running_redis() as server,
        running_nodes(server.url, 2, cluster=CLUSTER, env=NODE_ENV) as (a, b),
        clients() as join,
    ):
        redis = Redis.from_url(server.url)
        try:
            on_a = await logged_as(redis, join, a, ["stock"])
            on_b = await logged_as(redis, join, b, ["stock"])
            everyone = {m.id for m in on_a + on_b}
            await asyncio.gather(*(m.sees(everyone) for m in on_a + on_b))
            assert (await on_a[-1].send_to(on_b[-1], "one entry each"))["msgData"]

            old = Node(server.url, cluster=CLUSTER, env={**NODE_ENV,
                       "EASYRTC_CLUSTER_STOCK_ENTRIES": "false"})  # fmt: skip
            await old.start()
            try:
                later = await logged_as(redis, join, a, SEPARATE)
                on_old = await logged_as(redis, join, old, SEPARATE)
                everyone |= {m.id for m in later + on_old}
                await asyncio.gather(*(m.sees(everyone) for m in on_a + on_old))
                assert (await on_old[-1].send_to(on_a[0], "read alike"))["msgData"]
            finally:
                await old.stop()
            await logged_as(redis, join, b, ["stock"])  # it is gone: one entry again
        finally:
            await redis.aclose()


async def test_a_node_with_hooks_of_its_own_logs_the_event_and_its_answers() -> None:
    async with (
        running_redis() as server,
        running_nodes(server.url, 1, cluster=CLUSTER, env=NODE_ENV) as (a,),
        running_nodes(
            server.url, 1, cluster=CLUSTER, env=HOOKED_ENV, module="cluster.hooked_node"
        ) as (hooked,),
        clients() as join,
    ):
        redis = Redis.from_url(server.url)
        try:
            on_a = await logged_as(redis, join, a, ["stock"])
            mine = await join(hooked)
            assert await entries_of(redis, mine.id) == SEPARATE
            everyone = {m.id for m in on_a} | {mine.id}
            await asyncio.gather(mine.sees(everyone), on_a[0].sees(everyone))
        finally:
            await redis.aclose()
