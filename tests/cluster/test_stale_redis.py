"""A cluster survives a Redis that comes back with an older dataset (a stale ``dump.rdb``).

Real redis-server (saving to a file in a temporary directory) and node processes, real
socket.io clients. Redis is killed and started again from a dump saved before some clients
came and went: its log lacks entries the running nodes applied. Unnoticed, the running nodes
would go on from there while a node started later read the older log: a client gone since
the dump listed there, those who came since missing.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from support.nodes import Node, running_nodes
from support.redisserver import running_redis

from .test_failures import NODE_ENV, REBUILT, ROOM, TARGET, Member, clients

ENV = {name: value for name, value in NODE_ENV.items() if name != "EASYRTC_ROOM_MAX_CONNECTION"}
OLDER = "Redis came back with an older dataset"
REBUILDING = "rebuilding the cluster state"


async def save(url: str) -> None:
    redis = Redis.from_url(url)
    try:
        await redis.save()
    finally:
        await redis.aclose()


async def rebuilt_lists(member: Member, members: set[str], ghost: str) -> None:
    """Wait for the whole list a rebuild pushes (``clientList``), then until the list is
    ``members`` (the other node's rejoins may follow it as deltas); the ``ghost`` (gone since
    the dump Redis came back with) is never in it meanwhile."""
    whole = False
    async with asyncio.timeout(TARGET):
        while not whole or member.lists.get(ROOM) != members:
            cmd = await member.client.cmds.get()
            if cmd.get("msgType") != "roomData":
                continue
            room_data = cmd["msgData"]["roomData"]
            member._take(room_data)
            whole = whole or "clientList" in room_data.get(ROOM, {})
            assert ghost not in member.lists.get(ROOM, set()), member.lists


async def join_soon(join: Callable[[Node], Awaitable[Member]], node: Node) -> Member:
    """A login right after Redis' return: it may be refused (the node's pooled connections
    died with Redis), so it is tried again."""
    for _ in range(20):
        try:
            return await join(node)
        except AssertionError:  # LOGIN_GEN_FAIL: the socket is closed, nothing was logged
            continue
    raise AssertionError("no login got through after Redis came back")


@pytest.mark.parametrize(
    ("check_interval", "login_at_once"),
    [("0.5", False), ("3", True)],
    ids=["idle", "written-to-before-the-check"],
)
async def test_after_redis_came_back_older_every_node_rebuilds_and_lists_are_right(
    tmp_path: Path, check_interval: str, login_at_once: bool
) -> None:
    """``written-to-before-the-check``: a client logs in as soon as Redis is back, long
    before the next check, so the entry each node applied last is one written since (present
    in the log): the loss is found through the id each reader had applied when it lost Redis."""
    env = {**ENV, "EASYRTC_CLUSTER_CHECK_INTERVAL": check_interval}
    async with (
        running_redis(data_dir=tmp_path) as redis,
        running_nodes(redis.url, 2, env=env) as (a, b),
        clients() as join,
    ):
        on_a, on_b, ghost = await join(a), await join(b), await join(b)
        await asyncio.gather(*(m.sees({on_a.id, on_b.id, ghost.id}) for m in (on_a, on_b)))
        await save(redis.url)  # the dump: these three logged in
        stale = tmp_path / "stale.rdb"
        shutil.copy(redis.dump, stale)

        await ghost.client.sio.disconnect()  # the log moves on past the dump
        late_a, late_b = await join(a), await join(b)
        members = [on_a, on_b, late_a, late_b]
        everyone = {m.id for m in members}
        await asyncio.gather(*(m.sees(everyone) for m in members))

        marks = len(a.lines), len(b.lines)
        await redis.stop(kill=True)
        shutil.copy(stale, redis.dump)
        await redis.start()  # back in time: the ghost logged in, the late ones never came
        if login_at_once:
            members.append(await join_soon(join, a))
            everyone.add(members[-1].id)
        async with asyncio.timeout(TARGET):
            for node, mark in zip((a, b), marks, strict=True):
                await node.wait_for_line(REBUILT, start=mark)
        since = [node.lines[mark:] for node, mark in zip((a, b), marks, strict=True)]
        assert any(OLDER in text for said in since for text in said), since  # in plain words
        for said in since:  # every node rebuilt, once
            assert sum(REBUILDING in text for text in said) == 1, said
        await asyncio.gather(*(rebuilt_lists(m, everyone, ghost.id) for m in members))

        c = Node(redis.url, env=env)  # started now: it reads what Redis holds
        await c.start()
        try:
            on_c = await join(c)
            assert on_c.lists[ROOM] == everyone | {on_c.id}  # no ghost, nobody missing
            new_a, new_b = await join(a), await join(b)
            now = everyone | {on_c.id, new_a.id, new_b.id}
            assert new_a.lists[ROOM] == everyone | {on_c.id, new_a.id}
            assert new_b.lists[ROOM] == everyone | {on_c.id, new_a.id, new_b.id}
            await asyncio.gather(*(m.sees(now) for m in (*members, on_c, new_a, new_b)))
            assert (await on_a.send_to(late_b, "across nodes after the rebuild"))["msgData"]
            assert (await late_b.send_to(on_c, "to the node started since"))["msgData"]
            assert (await on_c.send_to(new_a, "and back"))["msgData"]
        finally:
            await c.stop()
