"""No sticky sessions: any node takes any request of an Engine.IO session.

Two real nodes share one Redis; a plain round-robin nginx (no stickiness) sits in front of them.
A session's sid names the node that holds it; a poll, a post or a websocket upgrade reaching the
other node is proxied to the owner. The access log of nginx shows which node each request went
to, so these tests can show that requests really crossed nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from easyrtc_server.cluster.forwarding import FORWARDED_BY
from support.client import TIMEOUT, Client
from support.nginx import Nginx, running_nginx
from support.nodes import Node, running_nodes
from support.ports import free_port
from support.redisserver import running_redis
from transport.harness import node_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_BODY = 100_000
PATH = "/socket.io/"
AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta", "applicationName": ""}}
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}


@dataclass
class Cluster:
    redis_url: str
    nodes: list[Node]
    nginx: Nginx
    ids: dict[str, Node]
    """Node id -> node."""

    def upstream(self, node: Node) -> str:
        return f"127.0.0.1:{node.port}"


def node_id_of(node: Node) -> str:
    line = next(line for line in node.lines if "takes forwarded requests at" in line)
    return line.split(" node ", 1)[1].split()[0]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    env = {"EASYRTC_MAX_HTTP_BUFFER_SIZE": str(MAX_BODY)}
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 2, cluster="fwd", env=env) as nodes,
        running_nginx([f"127.0.0.1:{node.port}" for node in nodes]) as nginx,
    ):
        yield Cluster(redis.url, nodes, nginx, {node_id_of(node): node for node in nodes})


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session


def auth(app: str) -> dict[str, Any]:
    return {**AUTH, "msgData": {**AUTH["msgData"], "applicationName": app}}


async def handshake(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url + PATH, params={"EIO": "4", "transport": "polling"}) as r:
        assert r.status == 200
        text = await r.text()
    assert text.startswith("0{")
    sid: str = orjson.loads(text[1:])["sid"]
    return sid


async def poll(http: aiohttp.ClientSession, url: str, sid: str) -> list[str]:
    async with http.get(url + PATH, params={"EIO": "4", "transport": "polling", "sid": sid}) as r:
        assert r.status == 200, await r.text()
        return (await r.text()).split("\x1e")


async def post(
    http: aiohttp.ClientSession,
    url: str,
    sid: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    headers = {"Content-Type": "text/plain;charset=UTF-8", **(headers or {})}
    async with http.post(url + PATH, params=params, data=body, headers=headers) as r:
        return r.status, await r.read()


def requests_of(cluster: Cluster, sid: str) -> list[tuple[str, int]]:
    """(node, status) of every request of session ``sid`` nginx passed on."""
    ports = {cluster.upstream(node): node for node in cluster.nodes}
    return [
        (node_id_of(ports[r.upstream]), r.status)
        for r in cluster.nginx.requests()
        if r.sid == sid and r.upstream in ports
    ]


# -- straight to the nodes ------------------------------------------------------------------------


async def test_a_sid_names_the_node_that_holds_the_session(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    for node_id, node in cluster.ids.items():
        sid = await handshake(http, node.url)
        assert sid.startswith(node_id + ".")
        assert len(sid) > len(node_id) + 16


async def test_polls_and_posts_reaching_the_other_node_reach_the_session(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    owner, other = cluster.nodes
    sid = await handshake(http, owner.url)
    assert await post(http, other.url, sid, b"40") == (200, b"ok")
    [connected] = await poll(http, other.url, sid)
    assert connected.startswith("40{")
    login = b"420" + orjson.dumps(["easyrtcAuth", auth("fwd-raw")])
    assert (await post(http, other.url, sid, login))[0] == 200
    [ack] = await poll(http, other.url, sid)
    assert ack.startswith("430")
    token = orjson.loads(ack[3:])[0]
    assert token["msgType"] == "token"
    assert token["msgData"]["application"] == {"applicationName": "fwd-raw"}


async def test_a_websocket_upgrade_reaching_the_other_node_takes_over_the_session(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    owner, other = cluster.nodes
    sid = await handshake(http, owner.url)
    assert await post(http, owner.url, sid, b"40") == (200, b"ok")
    assert (await poll(http, owner.url, sid))[0].startswith("40{")
    url = other.url.replace("http", "ws") + PATH + f"?EIO=4&transport=websocket&sid={sid}"
    async with http.ws_connect(url) as ws:
        await ws.send_str("2probe")
        assert await ws.receive_str(timeout=TIMEOUT) == "3probe"
        await ws.send_str("5")
        await ws.send_str("421" + orjson.dumps(["easyrtcAuth", auth("fwd-ws")]).decode())
        ack = await ws.receive_str(timeout=TIMEOUT)
        assert ack.startswith("431")
        assert orjson.loads(ack[3:])[0]["msgType"] == "token"
        # the session is the owner's websocket now: polling it is refused, on either node
        params = {"EIO": "4", "transport": "polling", "sid": sid}
        async with http.get(other.url + PATH, params=params) as r:
            assert r.status == 400
        await ws.close()


@pytest.mark.parametrize("method", ["GET", "POST", "websocket"])
async def test_a_sid_of_a_node_that_is_not_alive_is_an_unknown_session(
    cluster: Cluster, http: aiohttp.ClientSession, method: str
) -> None:
    node = cluster.nodes[0]
    sid = "zz9zz9zz.AAAAAAAAAAAAAAAAAAAA"
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    if method == "websocket":
        url = node.url.replace("http", "ws") + PATH + f"?EIO=4&transport=websocket&sid={sid}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 400
        return
    async with http.request(method, node.url + PATH, params=params, data=b"40") as r:
        assert r.status == 400
        assert await r.json() == UNKNOWN_SID


async def test_a_forwarded_request_is_never_forwarded_again(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    owner, other = cluster.nodes
    sid = await handshake(http, owner.url)
    start = len(other.lines)
    status, body = await post(http, other.url, sid, b"40", {"X-EasyRTC-Forwarded-By": "x"})
    assert status == 400
    assert orjson.loads(body) == UNKNOWN_SID
    async with asyncio.timeout(TIMEOUT):
        line = await other.wait_for_line("refused a request for session", start=start)
    assert sid in line


async def test_a_forwarded_post_is_bounded_as_on_the_owner(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    owner, other = cluster.nodes
    sid = await handshake(http, owner.url)
    status, _ = await post(http, other.url, sid, b"4" + b"x" * MAX_BODY)
    assert status == 413
    # the owner closed the session, as if the client had posted to it directly
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    async with http.get(owner.url + PATH, params=params) as r:
        assert r.status == 400


async def test_a_node_is_reached_at_its_advertised_url(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    advertised = f"http://localhost:{port}"
    env = {
        "EASYRTC_CLUSTER_LISTEN": f"127.0.0.1:{port}",
        "EASYRTC_CLUSTER_ADVERTISE_URL": advertised,
    }
    third = Node(cluster.redis_url, cluster="fwd", env=env)
    await third.start()
    try:
        node_id = node_id_of(third)
        redis = Redis.from_url(cluster.redis_url)
        try:
            assert orjson.loads(await redis.get(f"fwd:alive:{node_id}"))["url"] == advertised
        finally:
            await redis.aclose()
        sid = await handshake(http, third.url)
        assert sid.startswith(node_id + ".")
        other = cluster.nodes[0]
        assert await post(http, other.url, sid, b"40") == (200, b"ok")
        assert (await poll(http, other.url, sid))[0].startswith("40{")
    finally:
        await third.stop()


# -- through round-robin nginx --------------------------------------------------------------------

ANSWERED_OK = (101, 200)
"""What the nodes must answer every request of a session through the balancer: no refusal."""
CLIENT_ABORTED = 499
"""nginx's note that the client itself abandoned a request: a socket.io client cancels its
pending long-poll when it upgrades, so whether one shows depends only on timing. No node answered
it; what the client noticed (its replies and messages) is asserted above."""


async def clients_on_two_nodes(url: str, transports: list[str]) -> list[Client]:
    """Two python-socketio clients connected through ``url``, held by different nodes (their
    sids say which): what they send each other crosses nodes too."""
    clients: dict[str, Client] = {}
    extra: list[Client] = []
    while len(clients) < 2 and len(extra) < 8:
        client = Client()
        await client.sio.connect(url, transports=transports, wait_timeout=TIMEOUT)
        node = client.sio.eio.sid.split(".")[0]
        if node in clients:
            extra.append(client)
            # one request more moves nginx's round-robin on by one
            async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as r:
                assert r.status == 200
        else:
            clients[node] = client
    for client in extra:
        await client.sio.disconnect()
    assert len(clients) == 2, "round-robin never reached the second node"
    return list(clients.values())


@pytest.mark.parametrize("mode", ["polling", "upgrade"])
async def test_python_socketio_clients_through_round_robin(cluster: Cluster, mode: str) -> None:
    transports = ["polling"] if mode == "polling" else ["polling", "websocket"]
    alice, bob = await clients_on_two_nodes(cluster.nginx.url, transports)
    sid = alice.sio.eio.sid
    try:
        app = f"fwd-py-{mode}"
        await alice.login(applicationName=app)
        await bob.login(applicationName=app)
        for n in range(20):
            reply = await alice.call(
                "easyrtcMsg", {"msgType": "n", "targetEasyrtcid": bob.easyrtcid, "msgData": n}
            )
            assert reply["msgType"] == "ack", reply
        got = [(await bob.next_msg())["msgData"] for _ in range(20)]
        assert got == list(range(20))
        assert alice.sio.transport() == ("polling" if mode == "polling" else "websocket")
        served = requests_of(cluster, sid)  # before the goodbye, whose last poll may fail
    finally:
        await alice.sio.disconnect()
        await bob.sio.disconnect()
    assert all(status in ANSWERED_OK for _, status in served if status != CLIENT_ABORTED), served
    if mode == "polling":  # (python-engineio upgrades at once: one request, on either node)
        assert {node for node, _ in served} == set(cluster.ids), served


@pytest.mark.parametrize("mode", ["polling", "upgrade", "websocket"])
@pytest.mark.parametrize("version", ["4", "2"])
async def test_node_clients_through_round_robin(cluster: Cluster, version: str, mode: str) -> None:
    options: dict[str, Any] = {} if mode == "upgrade" else {"transports": [mode]}
    before = len(cluster.nginx.requests())
    async with node_client(version, cluster.nginx.url, options) as client:
        await client.expect("connect")
        if mode == "upgrade":
            await client.expect("upgrade")
        token = await client.call("easyrtcAuth", auth(f"fwd-node{version}-{mode}"))
        assert token["msgType"] == "token", token
        for _ in range(5):
            rooms = await client.call("easyrtcCmd", {"msgType": "getRoomList"})
            assert rooms["msgType"] == "roomList", rooms
        assert await client.transport() == ("polling" if mode == "polling" else "websocket")
        sid = await client.session_id()
        served = cluster.nginx.requests()[before:]  # before the goodbye (a websocket is
        # logged when it ends; an earlier test's may be logged among these)
        await client.send({"cmd": "disconnect"})
        await client.expect("disconnect")
    assert all(r.status in ANSWERED_OK for r in served if r.status != CLIENT_ABORTED), served
    if mode == "polling":
        assert sid is not None
        assert {node for node, _ in requests_of(cluster, sid)} == set(cluster.ids)


# -- the owner dies -------------------------------------------------------------------------------


async def test_a_polling_client_whose_node_is_killed_is_cleanly_disconnected() -> None:
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 2, cluster="fwd-kill") as nodes,
        running_nginx([f"127.0.0.1:{node.port}" for node in nodes]) as nginx,
    ):
        client = Client("polling")
        await client.connect(nginx.url)
        await client.login(applicationName="fwd-kill")
        owner_id = client.sio.eio.sid.split(".")[0]
        [owner] = [node for node in nodes if node_id_of(node) == owner_id]
        [survivor] = [node for node in nodes if node is not owner]
        await owner.kill()
        async with asyncio.timeout(TIMEOUT):
            await client.disconnected.wait()
        # a new client gets a session on the node that is left, through the same nginx
        again = Client("polling")
        await again.connect(nginx.url)
        try:
            await again.login(applicationName="fwd-kill")
            assert again.sio.eio.sid.startswith(node_id_of(survivor) + ".")
        finally:
            await again.sio.disconnect()


async def test_requests_for_a_dead_nodes_sessions_log_one_line_per_client(
    cluster: Cluster,
) -> None:
    node = cluster.nodes[0]
    start = len(node.lines)
    # from an address of its own (all of 127/8 is loopback): no earlier test's line counts
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.77", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        for n in range(200):
            params = {"EIO": "4", "transport": "polling", "sid": f"deadbeef.{n}"}
            async with http.get(node.url + PATH, params=params) as r:
                assert r.status == 400
    async with asyncio.timeout(TIMEOUT):
        await node.wait_for_line("its node deadbeef is not alive", start=start)
    lines = [line for line in node.lines[start:] if "its node deadbeef is not alive" in line]
    assert len(lines) == 1, lines


def internal_url(node: Node) -> str:
    line = next(line for line in node.lines if "takes forwarded requests at" in line)
    return line.rsplit(" at ", 1)[1].strip()


async def test_the_internal_listener_takes_only_signed_requests_of_sessions(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    node = cluster.nodes[0]
    inner = internal_url(node) + PATH
    async with http.get(inner, params={"EIO": "4", "transport": "polling"}) as r:
        assert r.status == 403  # no handshake, so no login, from outside the cluster
    sid = await handshake(http, node.url)
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    forged = {"X-EasyRTC-Node-Auth": f"t={int(time.time())},n=x,sig=00", FORWARDED_BY: "x"}
    for headers in ({}, {FORWARDED_BY: "x"}, forged):
        async with http.post(inner, params=params, data=b"40", headers=headers) as r:
            assert r.status == 403
    # the same session through the other node (forwarded, signed) works
    assert await post(http, cluster.nodes[1].url, sid, b"40") == (200, b"ok")


async def test_a_post_for_an_unknown_session_of_another_node_is_answered_at_once(
    cluster: Cluster,
) -> None:
    owner, other = cluster.nodes
    sid = f"{node_id_of(owner)}.not-a-session"
    reader, writer = await asyncio.open_connection("127.0.0.1", other.port)
    try:
        writer.write(
            f"POST {PATH}?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: {MAX_BODY}\r\n"
            "\r\n40".encode()
        )  # and the rest of the body never comes
        started = time.monotonic()
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        waited = time.monotonic() - started
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 400"), head
    assert waited < 8.0  # not held for the body's read timeout (10 s)
