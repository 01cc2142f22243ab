"""A partitioned cluster (``cluster_state = "partitioned"``, issue 23) on a Redis Cluster of three
masters (``support.rediscluster``): its partitions, room counts, room names and inboxes spread
over the masters, three nodes given a ``redis+cluster://`` URL serve one room as one process
would. Real processes, real socket.io clients.
"""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack

from support.nodes import running_nodes
from support.rediscluster import running_redis_cluster
from transport.harness import node_client

from . import test_behaviour as behaviour
from .test_partitioned_failures import BOUND, NODE_ENV, Member, fresh, members
from .test_partitioned_holds import Peer, keyed, keyed_login


async def test_three_nodes_on_a_redis_cluster_serve_one_room() -> None:
    app, room = fresh("app"), fresh("room")
    env = {**NODE_ENV, "EASYRTC_MAX_ROOMS_PER_APP": "10"}
    async with (
        running_redis_cluster() as redis,
        running_nodes(redis.url, 3, cluster="pcluster", env=env) as nodes,
        members() as join,
    ):
        joined: list[Member] = []
        for node in nodes:
            member = await join(node, app, room)
            ids = {m.id for m in joined} | {member.id}
            assert member.lists[room] == ids, "the token lists everyone who joined, on any node"
            joined.append(member)
            async with asyncio.timeout(BOUND):  # the others get their delta
                await asyncio.gather(*(m.sees(room, ids) for m in joined))
        first, second, third = joined
        async with asyncio.timeout(BOUND):
            got = await first.relay(third, "offer", "across")
            assert (got["senderEasyrtcid"], got["msgData"]) == (first.id, {"sdp": "across"})
            got = await third.relay(second, "answer", "back")
            assert (got["senderEasyrtcid"], got["msgData"]) == (third.id, {"sdp": "back"})
        for member in joined:
            assert await member.room_count(room) == 3
        await second.client.cmd("roomLeave", msgData={"roomLeave": {room: {"roomName": room}}})
        async with asyncio.timeout(BOUND):
            await asyncio.gather(first.told_removed(second.id), third.told_removed(second.id))
        assert first.lists[room] == third.lists[room] == {first.id, third.id}


async def test_a_keyed_client_resumes_on_another_node_of_a_redis_cluster() -> None:
    """A hold handed over between nodes whose inboxes live on different masters (the
    directory under the cluster's tag, the hand-over over sharded pub/sub)."""
    room = fresh("room")
    key = secrets.token_urlsafe(32)
    async with (
        running_redis_cluster() as redis,
        running_nodes(redis.url, 3, cluster="pcluster", env=NODE_ENV) as (a, b, _c),
        asyncio.timeout(BOUND * 3),
    ):
        bob = await Peer.join(b, room)
        async with node_client("4", a.url, keyed(key)) as alice:
            alice_id, _ = await keyed_login(alice, room)
            await bob.sees(alice_id)
            alice.proc.kill()  # held, or still live on a: handed over either way
        async with node_client("4", b.url, keyed(key)) as again:
            resumed_id, _ = await keyed_login(again, room)
            assert resumed_id == alice_id
        await bob.settled()
        assert alice_id not in bob.removed
        await bob.client.sio.disconnect()


async def test_server_code_changes_cross_nodes_of_a_redis_cluster() -> None:
    """A session field and a group kept and carried on a Redis Cluster: the session's hash
    under the cluster's tag, the changes over sharded pub/sub (``clusterchanges``), a client's
    message to the group through the group directory (``groupdirectory``)."""
    app, sid, crew = fresh("app"), fresh("session"), fresh("crew")
    env = {**NODE_ENV, "PYTHONPATH": behaviour.NODE_ENV["PYTHONPATH"]}
    async with (
        running_redis_cluster() as redis,
        running_nodes(
            redis.url, 3, cluster="pchanges", env=env, module="cluster.hooked_node"
        ) as nodes,
        AsyncExitStack() as stack,
        asyncio.timeout(BOUND * 3),
    ):
        a, b, c = [await behaviour.connect(stack, node) for node in nodes]
        await a.login(applicationName=app, easyrtcsid=sid)
        await b.login(applicationName=app, easyrtcsid=sid)
        await c.login(applicationName=app)
        assert await c.cmd("setSessionFieldOf", msgData={"sid": sid, "note": "hi"}) == {
            "msgType": "ack"
        }
        for member in (a, b):
            told = await behaviour.session_data(member)
            assert behaviour.values(told["field"]) == {"note": "hi"}
        later = await behaviour.connect(stack, nodes[2])
        token = await later.login(applicationName=app, easyrtcsid=sid)
        assert behaviour.values(token["msgData"]["sessionData"]["field"]) == {"note": "hi"}
        await c.cmd("groupOf", msgData={"id": a.easyrtcid, "group": crew})
        told = await b.cmd("tellGroup", msgData={"group": crew, "text": "crew"})
        assert told == {"msgType": "told", "msgData": 1}
        msg = await a.next_msg()
        assert (msg["msgData"], msg["targetGroup"]) == ("crew", crew)
        # a client's message to the group, through the group directory under the cluster's tag
        to_crew = {"msgType": "chat", "targetGroup": crew, "msgData": "from c"}
        assert await c.call("easyrtcMsg", to_crew) == {"msgType": "ack"}
        msg = await a.next_msg()
        assert (msg["msgData"], msg["senderEasyrtcid"]) == ("from c", c.easyrtcid)
