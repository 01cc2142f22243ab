"""ASGI nodes in a cluster: two ``create_asgi_app`` nodes under uvicorn and one aiohttp node
share one Redis. Clients on different nodes see each other and exchange messages, and any node
takes any request of a session, whichever driver holds it (forwarding, both ways)."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from support.client import TIMEOUT, Client
from support.nodes import Node
from support.redisserver import running_redis

pytestmark = pytest.mark.asyncio(loop_scope="module")

TESTS_DIR = Path(__file__).resolve().parent.parent
ENV = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
    "EASYRTC_DEMOS_ENABLE": "false",
}
PATH = "/socket.io/"
_names = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def nodes() -> AsyncIterator[list[Node]]:
    """ASGI, ASGI, aiohttp: one cluster on one Redis."""
    async with running_redis() as redis, AsyncExitStack() as stack:
        started = [
            Node(redis.url, cluster="mixed", env=ENV, module="support.asgi_node"),
            Node(redis.url, cluster="mixed", env=ENV, module="support.asgi_node"),
            Node(redis.url, cluster="mixed", env=ENV),
        ]
        for node in started:
            stack.push_async_callback(node.stop)
        await asyncio.gather(*(node.start() for node in started))
        yield started


@pytest_asyncio.fixture(loop_scope="module")
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def connect(stack: AsyncExitStack, node: Node, transport: str = "websocket") -> Client:
    client = Client(transport)
    await client.connect(node.url)

    async def disconnect() -> None:
        async with asyncio.timeout(TIMEOUT):
            await client.sio.disconnect()

    stack.push_async_callback(disconnect)
    return client


async def next_delta(client: Client) -> dict[str, Any]:
    while True:
        cmd = await client.next_cmd()
        if cmd["msgType"] == "roomData":
            (delta,) = cmd["msgData"]["roomData"].values()
            return delta  # type: ignore[no-any-return]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_clients_on_asgi_and_aiohttp_nodes_see_each_other_and_exchange_messages(
    nodes: list[Node], stack: AsyncExitStack, transport: str
) -> None:
    app, room = fresh("app"), fresh("room")
    clients = [await connect(stack, node, transport) for node in nodes]
    ids: list[str] = []
    for i, client in enumerate(clients):
        token = await client.login(
            applicationName=app, username=f"user{i}", roomJoin={room: {"roomName": room}}
        )
        ids.append(client.easyrtcid)
        listed = set(token["msgData"]["roomData"][room]["clientList"])
        assert listed == set(ids), "the token lists everyone who joined before, on any node"
        for earlier in clients[:i]:
            delta = await next_delta(earlier)
            assert set(delta["clientListDelta"]["updateClient"]) == {client.easyrtcid}
    for sender, receiver in itertools.permutations(clients, 2):
        await sender.sio.emit(
            "easyrtcMsg",
            {"msgType": "chat", "targetEasyrtcid": receiver.easyrtcid, "msgData": sender.easyrtcid},
            callback=lambda *_: None,
        )
        msg = await receiver.next_msg()
        assert (msg["senderEasyrtcid"], msg["msgData"]) == (sender.easyrtcid,) * 2
    for sender, receiver in itertools.permutations(clients, 2):  # signals too
        reply = await sender.cmd("offer", targetEasyrtcid=receiver.easyrtcid, msgData={"sdp": 1})
        assert reply == {"msgType": "ack"}
        offer = await receiver.next_cmd()
        assert (offer["msgType"], offer["senderEasyrtcid"]) == ("offer", sender.easyrtcid)


async def handshake(http: aiohttp.ClientSession, node: Node) -> str:
    async with http.get(node.url + PATH, params={"EIO": "4", "transport": "polling"}) as r:
        assert r.status == 200
        text = await r.text()
    sid: str = orjson.loads(text[1:])["sid"]
    return sid


async def poll(http: aiohttp.ClientSession, node: Node, sid: str) -> list[str]:
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    async with http.get(node.url + PATH, params=params) as r:
        assert r.status == 200, await r.text()
        return (await r.text()).split("\x1e")


async def post(http: aiohttp.ClientSession, node: Node, sid: str, body: bytes) -> int:
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    async with http.post(node.url + PATH, params=params, data=body, headers=headers) as r:
        return r.status


LOGIN = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}


@pytest.mark.parametrize(("owner", "other"), [(0, 1), (0, 2), (2, 0)])
async def test_polls_and_posts_reaching_another_node_reach_the_session(
    nodes: list[Node], owner: int, other: int
) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await handshake(http, nodes[owner])
        assert await post(http, nodes[other], sid, b"40") == 200
        [connected] = await poll(http, nodes[other], sid)
        assert connected.startswith("40{")
        assert await post(http, nodes[other], sid, b"420" + orjson.dumps(["easyrtcAuth", LOGIN]))
        [ack] = await poll(http, nodes[other], sid)
        assert ack.startswith("430")
        assert orjson.loads(ack[3:])[0]["msgType"] == "token"


@pytest.mark.parametrize(("owner", "other"), [(0, 1), (2, 0), (0, 2)])
async def test_a_websocket_upgrade_reaching_another_node_takes_over_the_session(
    nodes: list[Node], owner: int, other: int
) -> None:
    """ASGI to ASGI, an aiohttp session upgraded through an ASGI node, and an ASGI session
    upgraded through the aiohttp node (whose internal listener serves the ASGI node's
    sessions)."""
    async with aiohttp.ClientSession() as http:
        sid = await handshake(http, nodes[owner])
        assert await post(http, nodes[owner], sid, b"40") == 200
        assert (await poll(http, nodes[owner], sid))[0].startswith("40{")
        url = nodes[other].url.replace("http", "ws") + PATH
        async with http.ws_connect(url + f"?EIO=4&transport=websocket&sid={sid}") as ws:
            await ws.send_str("2probe")
            assert await ws.receive_str(timeout=TIMEOUT) == "3probe"
            await ws.send_str("5")
            await ws.send_str("421" + orjson.dumps(["easyrtcAuth", LOGIN]).decode())
            ack = await ws.receive_str(timeout=TIMEOUT)
            assert ack.startswith("431")
            assert orjson.loads(ack[3:])[0]["msgType"] == "token"
            params = {"EIO": "4", "transport": "polling", "sid": sid}
            async with http.get(nodes[owner].url + PATH, params=params) as r:
                assert r.status == 400  # on the websocket now: polling is refused
