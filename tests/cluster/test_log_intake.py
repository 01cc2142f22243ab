"""Nothing raw in Redis: a client's event is checked on its node before anything is logged.

Real ``redis-server``, real nodes, raw websocket clients (a hostile client does not use
easyrtc.js). A refused login never reaches Redis, whatever its size; an accepted one is logged
as what the core reads of it, without its credential, in the log and in every snapshot; an
event whose checked form is too big for one log entry (``cluster_max_entry_size``) is refused.

``INTAKE_LOGINS=10000`` runs the issue's full figure (10,000 refused logins, about a minute)
instead of CI's 1,000; the growth of Redis' memory is printed with ``-s``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from redis.asyncio import Redis

from support.client import TIMEOUT, Client
from support.nodes import Node, running_nodes
from support.rawsocket import connected_socket
from support.redisserver import running_redis

SECRET = "a-cluster-test-secret-of-32-bytes-or-more"
PASSWORD = "hunter2-is-the-password-of-alice"
JUNK = "x" * 100_000
LOGINS = int(os.environ.get("INTAKE_LOGINS", "1000"))
AT_ONCE = 20
MB = 1 << 20


async def _login_reply(session: aiohttp.ClientSession, url: str, msg_data: Any) -> Any:
    """One raw login on a fresh websocket: its ack's body."""
    ws = await connected_socket(session, url)
    try:
        auth = {"msgType": "authenticate", "msgData": msg_data}
        await ws.send_str("420" + orjson.dumps(["easyrtcAuth", auth]).decode())
        while True:
            frame = await ws.receive_str(timeout=TIMEOUT)
            if frame.startswith("430"):
                return orjson.loads(frame[3:])[0]
    finally:
        await ws.close()


async def _redis_text(redis: Redis) -> bytes:
    """Everything Redis holds, keys and values, as one byte string."""
    parts: list[bytes] = []
    async for key in redis.scan_iter():
        parts.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            parts.append(await redis.get(key) or b"")
        elif kind == "stream":
            for _id, fields in await redis.xrange(key):
                parts.extend(k + v for k, v in fields.items())
        elif kind == "hash":
            parts.extend(k + v for k, v in (await redis.hgetall(key)).items())
        elif kind in ("list",):
            parts.extend(await redis.lrange(key, 0, -1))
        elif kind in ("set",):
            parts.extend(await redis.smembers(key))
    return b"\n".join(parts)


async def _used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[list[Node], Redis]]:
    env = {
        "EASYRTC_JWT_SECRET": SECRET,
        "EASYRTC_CLUSTER_SNAPSHOT_ENTRIES": "3",
        "EASYRTC_CLUSTER_LOG_RETENTION": "0",  # what Redis keeps is the snapshot's bound
    }
    async with (
        running_redis() as server,
        running_nodes(server.url, 2, cluster="intake", env=env) as nodes,
    ):
        redis = Redis.from_url(server.url)
        try:
            yield nodes, redis
        finally:
            await redis.aclose()


async def test_a_thousand_refused_100_kb_logins_leave_nothing_in_redis(
    cluster: tuple[list[Node], Redis],
) -> None:
    nodes, redis = cluster
    log_key = "intake:log"
    entries_before = await redis.xlen(log_key)
    idle = await _used_memory(redis)
    bad = {"apiVersion": "1.1.1-beta", "credential": "not an object", "junk": JUNK}
    done = 0
    async with aiohttp.ClientSession() as session:

        async def refused(i: int) -> None:
            nonlocal done
            reply = await _login_reply(session, nodes[i % 2].url, bad)
            assert reply["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE", reply
            done += 1

        for start in range(0, LOGINS, AT_ONCE):
            await asyncio.gather(*(refused(i) for i in range(start, start + AT_ONCE)))
    assert done == LOGINS
    assert await redis.xlen(log_key) == entries_before  # not one entry
    grown = await _used_memory(redis) - idle
    print(f"Redis grew {grown / MB:.2f} MB after {LOGINS} refused {len(JUNK) // 1000} KB logins")
    assert grown < 3 * MB
    assert JUNK[:1000].encode() not in await _redis_text(redis)


async def test_a_login_too_big_for_one_log_entry_is_refused_before_redis(
    cluster: tuple[list[Node], Redis],
) -> None:
    nodes, redis = cluster
    before = await redis.xlen("intake:log")
    token = _token("bob")
    big_room = {"big": {"roomName": "big", "roomParameter": {"junk": JUNK}}}
    async with aiohttp.ClientSession() as session:
        data = {"apiVersion": "1.1.1-beta", "credential": {"token": token}, "roomJoin": big_room}
        reply = await _login_reply(session, nodes[0].url, data)
    assert reply["msgData"]["errorCode"] == "MSG_REJECT_BAD_SIZE", reply
    assert await redis.xlen("intake:log") == before


def _token(username: str) -> str:
    claims = {"username": username, "exp": int(time.time()) + 600, "password": PASSWORD}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_no_credential_reaches_redis_in_the_log_or_a_snapshot(
    cluster: tuple[list[Node], Redis],
) -> None:
    nodes, redis = cluster
    alice, bob = Client(), Client()
    await alice.connect(nodes[0].url)
    await bob.connect(nodes[1].url)
    try:
        # the JWT hook runs on alice's node and reads her credential: the login works
        jwt_alice = _token("alice")
        token = await alice.login(credential={"token": jwt_alice, "password": PASSWORD})
        assert token["msgData"]["roomData"]["default"]["clientList"]
        listed = await bob.login(credential={"token": _token("bob")})
        members = listed["msgData"]["roomData"]["default"]["clientList"].values()
        assert "alice" in {m.get("username") for m in members}  # replicated to bob's node
        await redis.config_set("notify-keyspace-events", "K$")
        async with redis.pubsub() as changes:
            await changes.subscribe("__keyspace@0__:intake:snapshot")
            for _ in range(4):  # enough entries for a snapshot (every 3)
                await alice.cmd("setPresence", msgData={"setPresence": {"show": "away"}})
            async with asyncio.timeout(TIMEOUT):  # a snapshot written after alice's login
                while (await changes.get_message(timeout=TIMEOUT)) is None or b"alice" not in (
                    await redis.get("intake:snapshot") or b""
                ):
                    pass
        held = await _redis_text(redis)
        assert b"alice" in held  # the login is there, as the core reads it
        assert PASSWORD.encode() not in held
        assert jwt_alice.rsplit(".", 1)[1].encode() not in held  # the token's signature
        assert b"credential" not in held
    finally:
        await alice.sio.disconnect()
        await bob.sio.disconnect()
