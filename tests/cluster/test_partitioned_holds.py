"""Holds and resumes on a partitioned cluster (``cluster_state = "partitioned"``, issue 23;
``cluster.partitionholds``): a keyed client whose socket drops keeps its easyrtcid, its rooms
and what was sent to it meanwhile, resuming on its node or on another, and the other nodes'
members never see it leave; when the grace runs out they do.

Real redis-server, real node processes (three partitioned nodes), keyed Node clients
(socket.io-client 4, killed for a drop without goodbye) and python-socketio peers. Every wait
is for an event, bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from easyrtc_server.cluster.keys import ClusterKeys
from support.client import Client
from support.nginx import running_nginx
from support.nodes import Node, running_nodes
from support.redisserver import running_redis
from transport.harness import NodeClient, node_client

from . import test_continuity as continuity
from .keyed_pairs import keyed_pairs, verdict

BOUND = 30.0
CLUSTER = "pholds"
NODE_ENV = {
    "EASYRTC_CLUSTER_STATE": "partitioned",
    "EASYRTC_CLUSTER_ALIVE_TTL": "2",
    "EASYRTC_CLUSTER_CHECK_INTERVAL": "0.2",
}
APP = "holds"
HOOKED_PATH = os.pathsep.join(
    filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
)
"""Where ``cluster.hooked_node`` is found (it logs where each hook runs)."""
ACK = {"msgType": "ack"}

_names = itertools.count(1)


def fresh_room() -> str:
    return f"r{next(_names)}"


@asynccontextmanager
async def cluster(
    env: Mapping[str, str] | None = None, *, hooked: bool = False
) -> AsyncIterator[tuple[Redis, list[Node]]]:
    """Three nodes on a fresh Redis; ``hooked``: with the test hooks (``hooked_node``: server
    code's changes asked by a client's command)."""
    env = {**NODE_ENV, **(env or {})}
    module = "easyrtc_server"
    if hooked:
        env["PYTHONPATH"] = HOOKED_PATH
        module = "cluster.hooked_node"
    async with running_redis() as server:
        redis = Redis.from_url(server.url)
        try:
            await redis.config_set("notify-keyspace-events", "KA")
            async with running_nodes(
                server.url, 3, cluster=CLUSTER, env=env, module=module
            ) as nodes:
                yield redis, nodes
        finally:
            await redis.aclose()


def auth(room: str) -> dict[str, Any]:
    return {
        "msgType": "authenticate",
        "msgData": {
            "apiVersion": "1.1.1-beta",
            "applicationName": APP,
            "roomJoin": {room: {"roomName": room}},
        },
    }


async def keyed_login(client: NodeClient, room: str) -> tuple[str, dict[str, Any]]:
    """A keyed client's login: its easyrtcid and the room's member list in its token."""
    await client.expect("connect")
    token = await client.call("easyrtcAuth", auth(room))
    assert token["msgType"] == "token", token
    await client.expect("message", event="easyrtcResume")
    return token["msgData"]["easyrtcid"], token["msgData"]["roomData"][room]["clientList"]


def keyed(key: str) -> dict[str, Any]:
    return {"transports": ["websocket"], "auth": {"easyrtcResumeKey": key}}


class Peer:
    """A python-socketio member of the room: what it was told about the others."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.removed: set[str] = set()
        self.present: set[str] = set()

    @classmethod
    async def join(cls, node: Node, room: str) -> Peer:
        client = Client()
        await client.connect(node.url)
        token = await client.login(applicationName=APP, roomJoin={room: {"roomName": room}})
        peer = cls(client)
        peer.present = set(token["msgData"]["roomData"][room]["clientList"])
        return peer

    def _take(self, cmd: dict[str, Any]) -> None:
        if cmd.get("msgType") != "roomData":
            return
        for data in cmd["msgData"]["roomData"].values():
            delta = data.get("clientListDelta") or {}
            gone = set(delta.get("removeClient") or {})
            self.removed |= gone
            self.present -= gone
            self.present |= set(delta.get("updateClient") or {})
            if "clientList" in data:
                self.present = set(data["clientList"])

    async def sees(self, easyrtcid: str) -> None:
        while easyrtcid not in self.present:
            self._take(await self.client.cmds.get())

    async def told_status(self, easyrtcid: str, status: str) -> None:
        """Until it is told ``easyrtcid``'s presence status ``status``."""
        while True:
            cmd = await self.client.cmds.get()
            self._take(cmd)
            if cmd.get("msgType") != "roomData":
                continue
            for data in cmd["msgData"]["roomData"].values():
                updated = (data.get("clientListDelta") or {}).get("updateClient") or {}
                if (updated.get(easyrtcid) or {}).get("presence", {}).get("status") == status:
                    return

    async def told_removed(self, easyrtcid: str) -> None:
        while easyrtcid not in self.removed:
            self._take(await self.client.cmds.get())

    async def settled(self) -> None:
        """One round trip: every push sent to it before has come; take them."""
        await self.client.cmd("getRoomList")
        while not self.client.cmds.empty():
            self._take(self.client.cmds.get_nowait())

    async def send(self, to: str, n: int) -> None:
        msg = {"msgType": "chat", "targetEasyrtcid": to, "msgData": n}
        assert await self.client.call("easyrtcMsg", msg) == ACK


async def held_in_directory(redis: Redis, count: int) -> None:
    """Until ``count`` holds are named in the directory (a node noticed the drop), looking
    again at each change of a directory key (keyspace events)."""
    await keys_made(redis, ClusterKeys(CLUSTER).hold("*"), count)


async def keys_made(redis: Redis, pattern: str, count: int) -> None:
    """Until ``count`` keys match ``pattern``, looking again at each change of one."""
    async with redis.pubsub() as pubsub:
        await pubsub.psubscribe(f"__keyspace@0__:{pattern}")
        while len(await redis.keys(pattern)) < count:
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)


async def test_a_client_resumes_on_its_node_and_the_other_nodes_member_sees_no_leave() -> None:
    room = fresh_room()
    key = secrets.token_urlsafe(32)
    async with cluster() as (redis, (a, b, _c)), asyncio.timeout(BOUND * 3):
        bob = await Peer.join(b, room)
        async with node_client("4", a.url, keyed(key)) as alice:
            alice_id, _ = await keyed_login(alice, room)
            await bob.sees(alice_id)
            alice.proc.kill()  # no goodbye: the socket just drops
            await held_in_directory(redis, 1)
        for n in range(3):  # from another node, through a's inbox: queued in the hold
            await bob.send(alice_id, n)
        async with node_client("4", a.url, keyed(key)) as again:
            resumed_id, members = await keyed_login(again, room)
            assert resumed_id == alice_id
            assert set(members) == {alice_id, bob.client.easyrtcid}
            got = [await again.expect("message", event="easyrtcMsg") for _ in range(3)]
            assert [m["data"]["msgData"] for m in got] == [0, 1, 2]
            await bob.settled()
            assert alice_id not in bob.removed
            assert alice_id in bob.present
        await bob.client.sio.disconnect()


@pytest.mark.parametrize("relay", ["redis", "direct"])
async def test_a_client_resumes_on_another_node_and_relays_reach_it_there(relay: str) -> None:
    """Over either path of the inbox (``cluster_relay``): the hand-over and the relays."""
    room = fresh_room()
    key = secrets.token_urlsafe(32)
    env = {"EASYRTC_CLUSTER_RELAY": relay}
    async with cluster(env) as (redis, (a, b, c)), asyncio.timeout(BOUND * 3):
        bob = await Peer.join(b, room)
        carol = await Peer.join(c, room)
        async with node_client("4", a.url, keyed(key)) as alice:
            alice_id, _ = await keyed_login(alice, room)
            await bob.sees(alice_id)
            await carol.sees(alice_id)
            alice.proc.kill()
            await held_in_directory(redis, 1)
        await carol.send(alice_id, 0)  # queued at a while held
        async with node_client("4", b.url, keyed(key)) as again:  # the balancer chose b
            resumed_id, members = await keyed_login(again, room)
            assert resumed_id == alice_id
            assert set(members) == {alice_id, bob.client.easyrtcid, carol.client.easyrtcid}
            first = await again.expect("message", event="easyrtcMsg")
            assert first["data"]["msgData"] == 0
            for n in (1, 2):  # after the resume: from c to b, wherever c thinks it is
                await carol.send(alice_id, n)
                got = await again.expect("message", event="easyrtcMsg")
                assert got["data"]["msgData"] == n
            await bob.send(alice_id, 3)  # a member of b, its new node
            got = await again.expect("message", event="easyrtcMsg")
            assert got["data"]["msgData"] == 3
            for peer in (bob, carol):
                await peer.settled()
                assert alice_id not in peer.removed
                assert alice_id in peer.present
            await again.send({"cmd": "disconnect"})  # a goodbye on b: everyone is told
            await bob.told_removed(alice_id)
            await carol.told_removed(alice_id)
        for peer in (bob, carol):
            await peer.client.sio.disconnect()


async def test_a_client_back_on_another_node_before_its_drop_was_noticed_takes_it_over() -> None:
    room = fresh_room()
    key = secrets.token_urlsafe(32)
    async with cluster() as (_redis, (a, b, c)), asyncio.timeout(BOUND * 3):
        carol = await Peer.join(c, room)
        async with node_client("4", a.url, keyed(key)) as alice:
            alice_id, _ = await keyed_login(alice, room)
            await carol.sees(alice_id)
            os.kill(alice.proc.pid, signal.SIGSTOP)  # silent: its socket stays open on a
            async with node_client("4", b.url, keyed(key)) as again:
                resumed_id, _ = await keyed_login(again, room)
                assert resumed_id == alice_id
                await carol.send(alice_id, 1)
                got = await again.expect("message", event="easyrtcMsg")
                assert got["data"]["msgData"] == 1
                await carol.settled()
                assert alice_id not in carol.removed
        await carol.client.sio.disconnect()


async def test_when_the_grace_runs_out_the_other_nodes_are_told() -> None:
    room = fresh_room()
    key = secrets.token_urlsafe(32)
    async with (
        cluster({"EASYRTC_RESUME_GRACE": "1"}) as (redis, (a, b, _c)),
        asyncio.timeout(BOUND * 3),
    ):
        bob = await Peer.join(b, room)
        async with node_client("4", a.url, keyed(key)) as alice:
            alice_id, _ = await keyed_login(alice, room)
            await bob.sees(alice_id)
            alice.proc.kill()
            await bob.told_removed(alice_id)
        assert not await redis.keys(ClusterKeys(CLUSTER).hold("*"))  # the directory forgot it
        async with node_client("4", b.url, keyed(key)) as again:  # too late: a new easyrtcid
            later_id, _ = await keyed_login(again, room)
            assert later_id != alice_id
        await bob.client.sio.disconnect()


async def test_a_draining_nodes_holds_go_to_the_other_nodes_and_nobody_is_told() -> None:
    """SIGTERM: its keyed clients are dropped and held, resumed elsewhere; a client held
    before the drain is handed to another node as it stops, and resumes after it stopped."""
    room = fresh_room()
    env = {**NODE_ENV, "PYTHONPATH": HOOKED_PATH, "EASYRTC_SHUTDOWN_DRAIN_TIME": "5"}
    async with running_redis() as server:
        redis = Redis.from_url(server.url)
        await redis.config_set("notify-keyspace-events", "KA")
        try:
            async with (
                running_nodes(
                    server.url, 3, cluster=CLUSTER, env=env, module="cluster.hooked_node"
                ) as (a, b, c),
                asyncio.timeout(BOUND * 3),
            ):
                bob = await Peer.join(b, room)
                alice_key, dave_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
                alice = Client()
                await alice.sio.connect(
                    a.url, transports=["websocket"], auth={"easyrtcResumeKey": alice_key}
                )
                token = await alice.login(applicationName=APP, roomJoin={room: {"roomName": room}})
                alice_id = token["msgData"]["easyrtcid"]
                async with node_client("4", a.url, keyed(dave_key)) as dave:
                    dave_id, _ = await keyed_login(dave, room)
                    await bob.sees(alice_id)
                    await bob.sees(dave_id)
                    dave.proc.kill()  # held on a before the drain
                    await held_in_directory(redis, 1)
                stopped = asyncio.create_task(a.stop())  # SIGTERM: a drain
                await alice.disconnected.wait()  # dropped without a goodbye: held
                again = Client()
                await again.sio.connect(
                    b.url, transports=["websocket"], auth={"easyrtcResumeKey": alice_key}
                )
                resumed = await again.login(
                    applicationName=APP, roomJoin={room: {"roomName": room}}
                )
                assert resumed["msgData"]["easyrtcid"] == alice_id
                assert await stopped == 0
                async with node_client("4", c.url, keyed(dave_key)) as dave_again:
                    resumed_id, members = await keyed_login(dave_again, room)
                    assert resumed_id == dave_id
                    assert set(members) == {alice_id, dave_id, bob.client.easyrtcid}
                    await bob.settled()
                    assert not bob.removed & {alice_id, dave_id}
                    assert not any("hook disconnect" in line for line in a.lines), a.lines
                    await dave_again.send({"cmd": "disconnect"})
                    await bob.told_removed(dave_id)
                await again.sio.disconnect()
                await bob.told_removed(alice_id)
                await bob.client.sio.disconnect()
        finally:
            await redis.aclose()


async def test_a_hold_handed_over_at_a_stop_ends_on_its_new_node_when_the_grace_runs_out() -> None:
    room = fresh_room()
    env = {
        **NODE_ENV,
        "PYTHONPATH": HOOKED_PATH,
        "EASYRTC_SHUTDOWN_DRAIN_TIME": "5",
        "EASYRTC_RESUME_GRACE": "4",
    }
    async with running_redis() as server:
        redis = Redis.from_url(server.url)
        await redis.config_set("notify-keyspace-events", "KA")
        try:
            async with (
                running_nodes(
                    server.url, 3, cluster=CLUSTER, env=env, module="cluster.hooked_node"
                ) as (a, b, c),
                asyncio.timeout(BOUND * 3),
            ):
                bob = await Peer.join(b, room)
                async with node_client("4", a.url, keyed(secrets.token_urlsafe(32))) as eve:
                    eve_id, _ = await keyed_login(eve, room)
                    await bob.sees(eve_id)
                    eve.proc.kill()
                    await held_in_directory(redis, 1)
                assert await a.stop() == 0  # handed over as it stopped
                await bob.told_removed(eve_id)  # its grace ran out on its new node
                ended = f"hook disconnect of {eve_id} ran here"
                waits = [asyncio.ensure_future(node.wait_for_line(ended)) for node in (b, c)]
                done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for wait in pending:
                    wait.cancel()
                assert [wait.result() for wait in done]  # once, where it went
                assert not any(ended in line for line in a.lines)
                await bob.client.sio.disconnect()
        finally:
            await redis.aclose()


async def test_a_hold_handed_away_no_longer_counts_on_its_old_node() -> None:
    """``max_connections``: a held socket counts on its node until it is handed over."""
    room = fresh_room()
    key = secrets.token_urlsafe(32)
    async with cluster({"EASYRTC_MAX_CONNECTIONS": "2"}) as (redis, (a, b, _c)):
        async with asyncio.timeout(BOUND * 3):
            async with node_client("4", a.url, keyed(key)) as alice:
                await keyed_login(alice, room)
                alice.proc.kill()
                await held_in_directory(redis, 1)
            async with node_client("4", b.url, keyed(key)) as again:
                await keyed_login(again, room)
                peers = [await Peer.join(a, room), await Peer.join(a, room)]  # both fit
                for peer in peers:
                    await peer.client.sio.disconnect()


PAIRS = 100


async def test_a_kill_and_a_rolling_drain_of_every_node_are_invisible_to_keyed_pairs() -> None:
    """``test_continuity`` over a partitioned cluster: keyed clients in pairs through a
    round-robin nginx, each sending its partner a numbered message every 300 ms; a node
    killed (``kill -9``: its connections adopted from their wills), then every node drained
    and restarted in turn. Every client keeps its easyrtcid, no peer hears of a keyed client
    leaving, no message is lost or duplicated, not even those on their way to the killed
    node."""
    env = {**continuity.ENV, "EASYRTC_CLUSTER_STATE": "partitioned"}
    async with running_redis() as redis, AsyncExitStack() as stack:
        three = continuity.Three(redis.url, env)
        await asyncio.gather(*(node.start() for node in three.nodes))
        for index in range(3):
            stack.push_async_callback(lambda i=index: three.nodes[i].stop())
        upstreams = [f"127.0.0.1:{node.port}" for node in three.nodes]
        nginx = await stack.enter_async_context(running_nginx(upstreams))
        three.nginx = nginx
        async with keyed_pairs(f"http://127.0.0.1:{nginx.port}", PAIRS, rooms="pairs") as pairs:
            async with asyncio.timeout(continuity.SETTLE):
                await pairs.ready.wait()
            for index, kill in ((0, True), (0, False), (1, False), (2, False)):
                before = pairs.dropped
                on_it = await continuity.sockets_on(three.nodes[index])
                await pairs.mark("kill" if kill else "drain")
                await three.restart(index, kill=kill)
                try:
                    async with asyncio.timeout(continuity.SETTLE):
                        await pairs.settled_after(before + on_it)
                except TimeoutError:
                    saved = three.save(pairs.lines)
                    raise AssertionError(f"node {index}: {pairs.errors()} ({saved})") from None
                await pairs.mark("settled")
                await three.start(index)
            summary = await pairs.stop()
    seen = verdict(summary)
    print(
        f"\n{PAIRS} keyed clients, {len(pairs.resumed)} resumes: {seen.accepted} messages "
        f"acknowledged, {len(seen.in_flight)} lost on their way to the killed node"
    )
    if seen.changed_ids or seen.removed_keyed or seen.duplicated or seen.lost or seen.in_flight:
        print(f"logs in {three.save(pairs.lines)}")
    assert len(pairs.resumed) >= PAIRS  # every client dropped at least once
    assert seen.changed_ids == []
    assert seen.removed_keyed == []
    assert seen.duplicated == []
    assert seen.lost == []
    # nor on their way to the killed node: kept by the sender's node until confirmed, sent
    # again to the node that adopted their target
    assert seen.in_flight == []


async def keyed_beside_a_peer(
    redis: Redis, node: Node, peer_node: Node, room: str, key: str
) -> tuple[Peer, Client]:
    """A peer on ``peer_node`` and a keyed client on ``node`` in ``room``, once the peer sees
    the client; ``node`` wrote the client's will before its token."""
    peer = await Peer.join(peer_node, room)
    client = await keyed_python_client(node, key, room)
    assert len(await redis.keys(ClusterKeys(CLUSTER).wills("*"))) == 1
    await peer.sees(client.easyrtcid)
    return peer, client


async def resumed_unseen(node: Node, key: str, room: str, was: Client, peer: Peer) -> Client:
    """``was``'s client back on ``node`` with its key: the same easyrtcid, a relay from
    ``peer`` reaches it, and ``peer`` was never told it left."""
    again = await keyed_python_client(node, key, room)
    assert again.easyrtcid == was.easyrtcid
    await peer.send(was.easyrtcid, 1)
    got = await again.next_msg()
    assert got["msgData"] == 1
    await peer.settled()
    assert was.easyrtcid not in peer.removed
    return again


async def keyed_python_client(node: Node, key: str, room: str) -> Client:
    client = Client()
    await client.sio.connect(node.url, transports=["websocket"], auth={"easyrtcResumeKey": key})
    await client.login(applicationName=APP, roomJoin={room: {"roomName": room}})
    return client


@pytest.mark.parametrize("relay", ["redis", "direct"])
async def test_a_dead_nodes_keyed_clients_keep_their_easyrtcids_and_nobody_sees_them_go(
    relay: str,
) -> None:
    """Node a killed (``kill -9``): its unkeyed client leaves every list; its keyed ones, one
    live and one held, are adopted from their wills (``partitionwills``) before the others
    reap a: they come back on other nodes with their easyrtcids and rooms, relays reach them
    there, and the other members never see them leave. Over either path of the inbox: a
    link to the dead node breaks."""
    room = fresh_room()
    alice_key, dave_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    env = {"EASYRTC_CLUSTER_RELAY": relay}
    async with cluster(env) as (_redis, (a, b, c)), asyncio.timeout(BOUND * 3):
        bob = await Peer.join(b, room)
        eve = await Peer.join(a, room)  # unkeyed: leaves with its node
        alice = await keyed_python_client(a, alice_key, room)
        async with node_client("4", a.url, keyed(dave_key)) as dave:
            dave_id, _ = await keyed_login(dave, room)
            for cid in (alice.easyrtcid, dave_id, eve.client.easyrtcid):
                await bob.sees(cid)
            dave.proc.kill()  # dropped: held on a (or about to be) when a dies
        await a.kill()
        await bob.told_removed(eve.client.easyrtcid)  # a was reaped
        again = await keyed_python_client(c, alice_key, room)
        assert again.easyrtcid == alice.easyrtcid
        await bob.send(alice.easyrtcid, 1)
        got = await again.next_msg()
        assert got["msgData"] == 1
        async with node_client("4", b.url, keyed(dave_key)) as dave_again:
            resumed_id, members = await keyed_login(dave_again, room)
            assert resumed_id == dave_id
            assert set(members) == {alice.easyrtcid, dave_id, bob.client.easyrtcid}
            await bob.settled()
            assert not bob.removed & {alice.easyrtcid, dave_id}, bob.removed
            assert {alice.easyrtcid, dave_id} <= bob.present
            await dave_again.send({"cmd": "disconnect"})
            await bob.told_removed(dave_id)
        await again.sio.disconnect()
        await bob.told_removed(alice.easyrtcid)
        await bob.client.sio.disconnect()


async def test_a_keyed_client_back_before_its_dead_node_was_reaped_keeps_its_easyrtcid() -> None:
    """The client comes back to another node at once: the node its key names does not answer;
    once that node's alive key expired its will is taken (by this node or by a reaper) and the
    login resumes the connection."""
    room = fresh_room()
    key = secrets.token_urlsafe(32)
    async with cluster() as (redis, (a, b, c)), asyncio.timeout(BOUND * 3):
        bob, alice = await keyed_beside_a_peer(redis, a, b, room, key)
        await a.kill()
        again = await resumed_unseen(c, key, room, alice, bob)
        await again.sio.disconnect()
        await bob.told_removed(alice.easyrtcid)
        await bob.client.sio.disconnect()


async def test_a_node_taken_for_dead_lets_go_of_the_keyed_clients_adopted_meanwhile() -> None:
    """Node a paused past its alive TTL: another node adopts its keyed client from its will
    (nobody sees it leave). Alive again, a finds the will taken and lets the connection go,
    closing its socket; the client resumes on another node with its easyrtcid."""
    room = fresh_room()
    key = secrets.token_urlsafe(32)
    async with cluster() as (redis, (a, b, c)), asyncio.timeout(BOUND * 3):
        bob, alice = await keyed_beside_a_peer(redis, a, b, room, key)
        assert a.process is not None
        a.process.send_signal(signal.SIGSTOP)
        try:
            adopted = [
                asyncio.create_task(node.wait_for_line("adopting 1 keyed connections"))
                for node in (b, c)
            ]
            await asyncio.wait(adopted, return_when=asyncio.FIRST_COMPLETED)
            for task in adopted:
                task.cancel()
        finally:
            a.process.send_signal(signal.SIGCONT)
        await alice.disconnected.wait()
        again = await resumed_unseen(c, key, room, alice, bob)
        assert alice.easyrtcid in bob.present
        await again.sio.disconnect()
        await bob.told_removed(alice.easyrtcid)
        await bob.client.sio.disconnect()


async def set_sized(redis: Redis, key: str, size: int) -> None:
    """Until the set at ``key`` has ``size`` members, looking again at each change of it."""
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(f"__keyspace@0__:{key}")
        while await redis.scard(key) != size:
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)


async def group_message(sender: Client, group: str, text: str) -> None:
    msg = {"msgType": "chat", "targetGroup": group, "msgData": text}
    assert await sender.call("easyrtcMsg", msg) == ACK


async def test_a_client_resumed_on_another_node_keeps_its_groups() -> None:
    """A keyed client that server code put in a group resumes on another node: a message to
    the group from a client sharing no room with it reaches it there, and a room message to
    the group from its room's member too."""
    room, apart, crew = fresh_room(), fresh_room(), "crew"
    key = secrets.token_urlsafe(32)
    async with cluster(hooked=True) as (redis, (a, b, c)), asyncio.timeout(BOUND * 3):
        bob = await Peer.join(b, room)
        carol = await Peer.join(c, apart)
        async with node_client("4", a.url, keyed(key)) as alice:
            alice_id, _ = await keyed_login(alice, room)
            await bob.sees(alice_id)
            grouped = await bob.client.cmd("groupOf", msgData={"id": alice_id, "group": crew})
            assert grouped == ACK
            alice.proc.kill()
            await held_in_directory(redis, 1)
        async with node_client("4", b.url, keyed(key)) as again:  # the balancer chose b
            resumed_id, _ = await keyed_login(again, room)
            assert resumed_id == alice_id
            await group_message(carol.client, crew, "to the crew")
            got = await again.expect("message", event="easyrtcMsg")
            assert (got["data"]["msgData"], got["data"]["targetGroup"]) == ("to the crew", crew)
            assert await bob.client.cmd("joinGroup", msgData={"group": crew}) == ACK
            to_room = {"msgType": "chat", "targetRoom": room, "targetGroup": crew, "msgData": 2}
            assert await bob.client.call("easyrtcMsg", to_room) == ACK
            got = await again.expect("message", event="easyrtcMsg")
            assert got["data"]["msgData"] == 2
        for peer in (bob, carol):
            await peer.client.sio.disconnect()


async def test_a_dead_nodes_keyed_client_keeps_its_groups_where_it_was_adopted() -> None:
    """Node a killed: its keyed client, adopted from its will and back on c, is still in the
    group server code put it in: a message to the group from another node reaches it, and its
    room's member may message it with the group."""
    room, apart, crew = fresh_room(), fresh_room(), "crew"
    key = secrets.token_urlsafe(32)
    async with cluster(hooked=True) as (redis, (a, b, c)), asyncio.timeout(BOUND * 3):
        bob = await Peer.join(b, room)
        carol = await Peer.join(b, apart)
        eve = await Peer.join(a, room)  # unkeyed: leaves with its node
        alice = await keyed_python_client(a, key, room)
        await bob.sees(alice.easyrtcid)
        assert await alice.cmd("joinGroup", msgData={"group": crew}) == ACK
        assert await bob.client.cmd("joinGroup", msgData={"group": crew}) == ACK
        # a's facts and will say so before it dies (lost with it in its last milliseconds)
        presence = {"setPresence": {"show": "chat", "status": "grouped"}}
        assert (await alice.cmd("setPresence", msgData=presence))["msgType"] == "roomData"
        await bob.told_status(alice.easyrtcid, "grouped")
        await a.kill()
        await bob.told_removed(eve.client.easyrtcid)  # a was reaped, alice adopted
        again = await keyed_python_client(c, key, room)
        assert again.easyrtcid == alice.easyrtcid
        await group_message(carol.client, crew, "to the crew")
        assert (await again.next_msg())["msgData"] == "to the crew"
        assert (await bob.client.next_msg())["msgData"] == "to the crew"
        to_alice = {
            "msgType": "chat",
            "targetEasyrtcid": alice.easyrtcid,
            "targetGroup": crew,
            "msgData": "peer",
        }
        assert await bob.client.call("easyrtcMsg", to_alice) == ACK
        assert (await again.next_msg())["msgData"] == "peer"
        # the group directory names b and c (and that the group was made), not dead a
        await set_sized(redis, ClusterKeys(CLUSTER).group(APP, crew), 3)
        await again.sio.disconnect()
        for peer in (bob, carol):
            await peer.client.sio.disconnect()
