"""Relays between nodes over direct links (``cluster_relay = "direct"``), with real processes.

What an operator would check: relays to clients on the other node arrive and Redis carries
none of them (no ``PUBLISH``, where the default path publishes each); the links take only the
cluster's nodes; a node killed and replaced is linked to anew. On both cluster states (the
partitioned state's inbox carries its hand-overs and group messages too: the holds' tests run
over both paths). The order of a sender's relays
against its state changes over a link is tested with the pub/sub path's
(``test_sender_order.py``).
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from easyrtc_server.cluster.links import LINK_PATH
from easyrtc_server.options import Options, OptionsError
from support.client import Client
from support.nodes import Node, running_nodes
from support.redisserver import running_redis

ENV = {"EASYRTC_CLUSTER_ALIVE_TTL": "2", "EASYRTC_CLUSTER_CHECK_INTERVAL": "0.5"}
MESSAGES = 20


async def publishes(redis: Redis) -> int:
    """How many ``PUBLISH`` commands Redis has run."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


async def relay_burst(sender: Client, receiver: Client, got: asyncio.Queue[object]) -> list[int]:
    """``MESSAGES`` messages from ``sender`` to ``receiver``: what arrived, in order."""
    for n in range(MESSAGES):
        msg = {"msgType": "n", "targetEasyrtcid": receiver.easyrtcid, "msgData": n}
        assert (await sender.call("easyrtcMsg", msg))["msgType"] == "ack"
    arrived: list[int] = []
    async with asyncio.timeout(10):
        while len(arrived) < MESSAGES:
            body = await got.get()
            assert isinstance(body, dict)
            if body.get("msgType") == "n":
                arrived.append(body["msgData"])
    return arrived


def inbox_of(client: Client) -> asyncio.Queue[object]:
    got: asyncio.Queue[object] = asyncio.Queue()
    client.sio.on("easyrtcMsg", got.put_nowait)
    return got


@pytest.mark.parametrize("state", ["log", "partitioned"])
@pytest.mark.parametrize("relay", ["redis", "direct"])
async def test_relays_to_another_node_arrive_and_only_the_redis_path_publishes(
    relay: str, state: str
) -> None:
    env = {**ENV, "EASYRTC_CLUSTER_RELAY": relay, "EASYRTC_CLUSTER_STATE": state}
    async with running_redis() as server, running_nodes(server.url, 2, env=env) as (a, b):
        redis = Redis.from_url(server.url)
        alice, bob = Client(), Client()
        got = inbox_of(bob)
        try:
            await alice.connect(a.url)
            await bob.connect(b.url)
            await alice.login()
            await bob.login()
            before = await publishes(redis)
            assert await relay_burst(alice, bob, got) == list(range(MESSAGES))
            published = await publishes(redis) - before
        finally:
            await alice.sio.disconnect()
            await bob.sio.disconnect()
            await redis.aclose()
    if relay == "direct":
        assert published == 0
    else:
        assert published >= 1


async def test_a_link_takes_only_the_clusters_nodes() -> None:
    async with running_redis() as server, running_nodes(server.url, 1, env=ENV) as (node,):
        redis = Redis.from_url(server.url)
        try:
            (key,) = await redis.keys("test:alive:*")
            internal = orjson.loads(await redis.get(key))["url"]
        finally:
            await redis.aclose()
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(internal + LINK_PATH)
            assert refused.value.status == 403
            forged = {"X-EasyRTC-Node-Auth": "t=1,n=x,sig=00"}
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(internal + LINK_PATH, headers=forged)
            assert refused.value.status == 403
    assert any("listening on" in line for line in node.lines)


@pytest.mark.parametrize("state", ["log", "partitioned"])
async def test_a_node_killed_and_replaced_is_linked_to_anew(state: str) -> None:
    env = {**ENV, "EASYRTC_CLUSTER_RELAY": "direct", "EASYRTC_CLUSTER_STATE": state}
    async with running_redis() as server, running_nodes(server.url, 2, env=env) as (a, b):
        alice, bob, carol = Client(), Client(), Client()
        try:
            await alice.connect(a.url)
            await bob.connect(b.url)
            await alice.login()
            await bob.login()
            assert await relay_burst(alice, bob, inbox_of(bob)) == list(range(MESSAGES))
            await b.kill()  # its link from a breaks; bob is reaped
            replacement = Node(server.url, env=env)
            await replacement.start()
            try:
                got = inbox_of(carol)
                await carol.connect(replacement.url)
                await carol.login()
                assert await relay_burst(alice, carol, got) == list(range(MESSAGES))
            finally:
                await carol.sio.disconnect()
                await replacement.stop()
        finally:
            await alice.sio.disconnect()


def test_direct_relays_need_the_lean_transport_and_are_named_in_the_refusal() -> None:
    with pytest.raises(OptionsError, match="'cluster_relay' = 'direct' needs the lean") as caught:
        Options.from_mapping({"cluster_relay": "direct", "transport": "python-socketio"})
    assert caught.value.key == "cluster_relay"
    with pytest.raises(OptionsError, match="must be one of redis, direct"):
        Options.from_mapping({"cluster_relay": "tcp"})
    assert Options.from_mapping({"cluster_relay": "direct"}).cluster_relay == "direct"
