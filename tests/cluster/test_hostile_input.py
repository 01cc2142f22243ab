"""One client's odd input never stops a node's readers (issue 21, findings 3 and 4).

With ``max_json_depth = 0`` (a documented value) a client may send JSON nested deeper than
orjson writes (254 levels) once the cluster wraps it: in a snapshot, or in a relay to another
node's inbox. Real redis-server and node processes, real socket.io clients.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from easyrtc_server.cluster.health import BEHIND_AFTER, ReaderHealth
from easyrtc_server.cluster.keys import ClusterKeys
from support.client import Client
from support.nodes import Node, running_nodes
from support.redisserver import running_redis

DEEP_ENV = {
    "EASYRTC_MAX_JSON_DEPTH": "0",
    "EASYRTC_CLUSTER_SNAPSHOT_ENTRIES": "2",
}
APP = "hostile"
ROOM = "r"
JOIN = {ROOM: {"roomName": ROOM}}


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


async def joined(stack: AsyncExitStack, node: Node) -> Client:
    client = Client()
    await client.connect(node.url)
    stack.push_async_callback(client.sio.disconnect)
    await client.login(applicationName=APP, roomJoin=JOIN)
    return client


async def sees(client: Client, easyrtcid: str) -> None:
    """Until ``client``'s node tells it of ``easyrtcid`` in its room (a ``roomData`` push):
    that node has applied the other node's login."""
    while True:
        push = await client.next_cmd()
        if push.get("msgType") == "roomData" and easyrtcid in orjson.dumps(push).decode():
            return


async def test_a_deep_api_field_does_not_stop_the_node_or_its_snapshots() -> None:
    # 247 levels: the log entry that sets it is 253 deep (orjson writes it), the snapshot
    # that holds it 257 (orjson refuses it): the node used to lose its log reader there.
    field = {"deep": {"fieldName": "deep", "fieldValue": nested(247)}}
    async with running_redis() as redis, AsyncExitStack() as stack:
        first = Node(redis.url, env=DEEP_ENV)
        stack.push_async_callback(first.stop)
        await first.start()
        a = await joined(stack, first)
        reply = await a.cmd(
            "setRoomApiField", msgData={"setRoomApiField": {"roomName": ROOM, "field": field}}
        )
        assert reply["msgType"] == "roomData", reply
        for show in ("away", "chat", "dnd", "xa"):  # past the snapshot threshold
            reply = await a.cmd("setPresence", msgData={"setPresence": {"show": show}})
            assert reply["msgType"] == "roomData", reply

        b = await joined(stack, first)  # the node still takes logins
        assert b.easyrtcid
        async with aiohttp.ClientSession() as http, http.get(first.url + "/readyz") as response:
            assert response.status == 200, await response.text()

        # a node started now loads the snapshot that holds the deep field
        second = Node(redis.url, env=DEEP_ENV)
        stack.push_async_callback(second.stop)
        await second.start()
        assert any("loaded the cluster state" in line for line in second.lines), second.lines
        c = Client()
        await c.connect(second.url)
        stack.push_async_callback(c.sio.disconnect)
        token = await c.login(applicationName=APP, roomJoin=JOIN)
        listed = token["msgData"]["roomData"][ROOM]["clientList"]
        assert listed[a.easyrtcid]["apiField"] == field
        assert set(listed) == {a.easyrtcid, b.easyrtcid, c.easyrtcid}


async def test_a_deep_message_to_another_nodes_client_does_not_end_the_relays() -> None:
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 2, env=DEEP_ENV) as (one, two),
        AsyncExitStack() as stack,
    ):
        a, b = await joined(stack, one), await joined(stack, two)
        await sees(a, b.easyrtcid)  # a's node knows b: else the relay is refused (unknown)
        # 252 levels in msgData: beyond 254 once in the inbox's [[to, event, body]] list
        for data in (nested(252), "after"):
            ack = await a.call(
                "easyrtcMsg",
                {"msgType": "chat", "targetEasyrtcid": b.easyrtcid, "msgData": data},
            )
            assert ack["msgType"] == "ack", ack
        got = [(await b.next_msg())["msgData"] for _ in range(2)]
        assert got == [nested(252), "after"]


async def test_readyz_is_red_while_the_log_cannot_be_read() -> None:
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 1) as (node,),
        aiohttp.ClientSession() as http,
    ):

        async def ready_becomes(status: int) -> dict[str, Any]:
            async with asyncio.timeout(15):
                while True:
                    async with http.get(node.url + "/readyz") as response:
                        if response.status == status:
                            body: dict[str, Any] = await response.json()
                            return body
                    await asyncio.sleep(0.2)  # polling an HTTP probe, as Kubernetes does

        await ready_becomes(200)
        await redis.stop()
        body = await ready_becomes(503)
        assert any("cluster log" in reason for reason in body["reasons"]), body
        await redis.start()
        await ready_becomes(200)
        assert node.process is not None and node.process.returncode is None


async def test_a_bad_snapshot_does_not_stop_a_node_from_starting() -> None:
    async with running_redis() as redis:
        client = Redis.from_url(redis.url)
        try:
            await client.set(ClusterKeys("test").snapshot, b'{"id": "1-0", "state": {"v": 1}}')
        finally:
            await client.aclose()
        async with running_nodes(redis.url, 1) as (node,), AsyncExitStack() as stack:
            assert any("the cluster snapshot is unreadable" in line for line in node.lines)
            a = await joined(stack, node)
            assert a.easyrtcid


def test_the_reader_is_not_ready_while_behind_or_broken() -> None:
    now = [100.0]
    health = ReaderHealth(clock=lambda: now[0])
    assert health.reason() is None
    now[0] += BEHIND_AFTER + 1
    assert health.reason() == f"cluster log reader is {BEHIND_AFTER + 1:.0f} s behind"
    health.caught_up()
    assert health.reason() is None
    health.failing("cannot read the log (ConnectionError)")
    assert health.reason() == "cluster log reader: cannot read the log (ConnectionError)"
    health.caught_up()
    assert health.reason() is None


def node_id_of(node: Node) -> str:
    line = next(line for line in node.lines if "takes forwarded requests at" in line)
    return line.split(" node ", 1)[1].split()[0]


async def metric(node: Node, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(node.url + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_junk_in_the_log_and_the_inboxes_is_skipped_and_counted() -> None:
    keys = ClusterKeys("test")
    junk_entries: list[dict[bytes, bytes]] = [
        {b"e": b"\xff not json"},
        {b"other": b"no entry field"},
        {b"e": b'["a list"]'},
        {b"e": b'{"k": "recv", "n": "x", "t": 1, "s": 1, "p": 5, "e": [], "d": {}}'},
        {b"e": b'{"k": "no-such-kind", "n": "x", "t": 1, "s": 1}'},
    ]
    junk_messages = [b"\xff", b'{"not": "a list"}', b"[1, 2]", b'[["x"]]', b"[[null, 5, 6]]"]
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 2) as (one, two),
        AsyncExitStack() as stack,
    ):
        client = Redis.from_url(redis.url)
        stack.push_async_callback(client.aclose)
        for fields in junk_entries:
            await client.xadd(keys.log, fields)  # type: ignore[arg-type]
        for data in junk_messages:
            await client.publish(keys.inbox(node_id_of(two)), data)
        a, b = await joined(stack, one), await joined(stack, two)  # the log is read on
        await sees(a, b.easyrtcid)  # node one applied b's login: a message to b is known there
        for text in ("first", "second"):  # the inbox of node two is read on
            ack = await a.call(
                "easyrtcMsg", {"msgType": "chat", "targetEasyrtcid": b.easyrtcid, "msgData": text}
            )
            assert ack["msgType"] == "ack", ack
            assert (await b.next_msg())["msgData"] == text
        assert await metric(one, "easyrtc_cluster_skipped_entries_total") >= 3
        assert await metric(two, "easyrtc_cluster_inbox_drops_total") >= 4
        assert sum("further ones are only counted" in line for line in two.lines) <= 3
