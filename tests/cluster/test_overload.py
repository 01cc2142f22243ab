"""A node whose log appends pile up refuses new state changes at once, as busy.

Real redis-server and a real node process allowed 2 entries waiting
(``cluster_max_pending_appends``). Redis is frozen (SIGSTOP), so the node's appends cannot
complete; three clients log in at once: two are let in and wait, the third is answered at once
with ``LOGIN_GEN_FAIL`` "Server busy…" (the reference's generic login failure), counted in
``/metrics`` and logged once. Once Redis runs again, logins work.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp

from support.client import Client
from support.nodes import running_nodes
from support.redisserver import running_redis

BUSY = "Server busy, try again shortly."
LOGIN = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
NODE_ENV = {"EASYRTC_CLUSTER_MAX_PENDING_APPENDS": "2"}


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
