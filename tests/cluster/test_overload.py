"""Overload is not failure: a busy node refuses new state changes as busy, and is not reaped.

Real redis-server and a real node process allowed 2 entries waiting
(``cluster_max_pending_appends``). Redis is frozen (SIGSTOP), so the node's appends cannot
complete; three clients log in at once: two are let in and wait, the third is answered at once
with ``LOGIN_GEN_FAIL`` "Server busy…" (the reference's generic login failure), counted in
``/metrics`` and logged once. Once Redis runs again, the two that waited get their tokens.

A slow Redis is not a gone one: a Redis that holds writes back for 3 s (``CLIENT PAUSE
WRITE``, longer than the least wait of 2 s) but answers the node's heartbeat makes a login
wait, not fail; a Redis that hangs (SIGSTOP) refuses it once it has been silent for an alive
TTL, and the login the client was told failed leaves no member behind once Redis is back; a
Redis that is stopped refuses it at once.

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
from redis.asyncio import Redis

from support.client import Client
from support.nodes import running_nodes
from support.redisserver import running_redis

from .test_failures import APP, ROOM, clients, error_code, try_login
from .test_failures import NODE_ENV as FAILURE_ENV

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
            logins = [asyncio.ensure_future(login(client)) for client in clients]
            await asyncio.wait(logins, return_when=asyncio.FIRST_COMPLETED)
        finally:
            redis.process.send_signal(signal.SIGCONT)
        await asyncio.gather(*logins)
        first_at, first = replies[0]
        assert first["msgData"] == {"errorCode": "LOGIN_GEN_FAIL", "errorText": BUSY}
        assert first_at - started < 2.0  # at once, while the others waited for Redis
        assert [reply["msgType"] for _, reply in replies[1:]] == ["token", "token"]
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


async def test_a_login_waits_for_a_redis_that_holds_writes_back_and_then_succeeds() -> None:
    async with running_redis() as redis, running_nodes(redis.url, 1) as (node,):
        client = Client()
        await client.connect(node.url)
        control = Redis.from_url(redis.url)
        try:
            await control.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
            started = time.monotonic()
            reply = await client.call("easyrtcAuth", LOGIN)
            took = time.monotonic() - started
        finally:
            await control.aclose()
            await client.sio.disconnect()
        assert reply["msgType"] == "token", reply  # waited; was LOGIN_GEN_FAIL after 2 s
        assert took > 2.0  # it did wait for Redis, past the least wait
        assert not any("unavailable" in line for line in node.lines), node.lines


async def test_a_hung_redis_refuses_logins_within_its_silence_bound_leaving_no_member() -> None:
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 1, env=FAILURE_ENV) as (node,),
        clients() as join,
    ):
        assert redis.process is not None
        refused = Client()
        await refused.connect(node.url)
        redis.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            reply = await refused.call(
                "easyrtcAuth",
                {**LOGIN, "msgData": {**LOGIN["msgData"], "applicationName": APP,
                                      "roomJoin": {ROOM: {"roomName": ROOM}}}},
            )  # fmt: skip
            took = time.monotonic() - started
        finally:
            redis.process.send_signal(signal.SIGCONT)
        assert error_code(reply) == "LOGIN_GEN_FAIL", reply
        assert took < 2.0 + 2.0 + 1.0  # the alive TTL (2 s here) silent, plus a heartbeat round
        assert any("cluster log is unavailable" in line for line in node.lines)
        await refused.sio.disconnect()
        # The refused login may have reached Redis (it was on its way): its close follows it,
        # and a login after both, on the same node, sees nobody else in the room.
        after = await join(node)
        assert after.lists[ROOM] == {after.id}


async def test_a_stopped_redis_refuses_logins_at_once() -> None:
    async with running_redis() as redis, running_nodes(redis.url, 1, env=FAILURE_ENV) as (node,):
        await redis.stop()
        for _ in range(2):
            reply, took = await try_login(node)
            assert error_code(reply) == "LOGIN_GEN_FAIL", reply
            assert took < 2.0 + 1.0  # Redis refuses the connection: no silence to wait out
