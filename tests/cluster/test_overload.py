"""Overload is not failure: a busy node refuses new state changes as busy, and is not reaped.

Real redis-server and a real node process allowed 2 entries waiting
(``cluster_max_pending_appends``). Redis is frozen (SIGSTOP), so the node's appends cannot
complete; three clients log in at once: two are let in and wait, the third is answered at once
with ``LOGIN_GEN_FAIL`` "Server busy…" (the reference's generic login failure), counted in
``/metrics`` and logged once. Once Redis runs again, logins work.

And a node whose event loop is blocked for three alive TTLs (a hook doing blocking work) is
not declared dead: its heartbeat thread keeps its alive key, so its clients' peers on the
other node see nobody leave.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from support.client import Client
from support.nodes import running_nodes
from support.redisserver import running_redis

from .test_failures import NODE_ENV as FAILURE_ENV
from .test_failures import clients

BUSY = "Server busy, try again shortly."
LOGIN = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
NODE_ENV = {"EASYRTC_CLUSTER_MAX_PENDING_APPENDS": "2"}
TESTS_DIR = Path(__file__).resolve().parent.parent


async def test_logins_beyond_the_append_bound_are_refused_at_once_as_busy() -> None:
    async with running_redis() as redis, running_nodes(redis.url, 1, env=NODE_ENV) as (node,):
        clients = [Client() for _ in range(3)]
        for client in clients:
            await client.connect(node.url)
        assert redis.process is not None
        replies: list[tuple[float, dict[str, Any]]] = []

        async def login(client: Client) -> None:
            reply = await client.call("easyrtcAuth", LOGIN)
            replies.append((time.monotonic(), reply))

        redis.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            await asyncio.gather(*(login(client) for client in clients))
        finally:
            redis.process.send_signal(signal.SIGCONT)
        first_at, first = replies[0]
        assert first["msgData"] == {"errorCode": "LOGIN_GEN_FAIL", "errorText": BUSY}
        assert first_at - started < 2.0  # before the others, which waited 2 s for Redis
        assert [reply["msgData"].get("errorText") for _, reply in replies].count(BUSY) == 1
        line = "new state changes are refused as busy"
        assert sum(line in logged for logged in node.lines) == 1
        async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as metrics:
            assert "easyrtc_cluster_busy_refusals_total 1.0" in await metrics.text()

        again = Client()
        await again.connect(node.url)
        try:
            token = await again.login()
            assert token["msgType"] == "token"
        finally:
            await again.sio.disconnect()
        for client in clients:
            await client.sio.disconnect()


async def test_a_node_whose_event_loop_is_blocked_past_the_alive_ttl_is_not_reaped() -> None:
    env = {
        **FAILURE_ENV,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.getenv("PYTHONPATH")])),
    }
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 2, env=env, module="cluster.hooked_node") as (a, b),
        clients() as join,
    ):
        on_a, on_b = await join(a), await join(b)
        both = {on_a.id, on_b.id}
        await asyncio.gather(on_a.sees(both), on_b.sees(both))
        # b's event loop does nothing else for 3 alive TTLs (2 s each), a checks every 0.5 s
        ack = await on_b.client.cmd("hog", msgData={"seconds": 6})
        assert ack["msgType"] == "ack", ack
        await on_a.client.cmd("getRoomList")  # a's pushes before this reply have arrived
        while not on_a.client.cmds.empty():
            pushed = on_a.client.cmds.get_nowait()
            assert "removeClient" not in str(pushed), pushed
        assert not any("is gone" in line for line in a.lines)
        assert (await on_a.send_to(on_b, "still here"))["msgData"] == "still here"
