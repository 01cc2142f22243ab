"""A dead node's clients get their ``room_left`` and ``disconnect`` hooks and webhooks, once.

Real redis-server, three real node processes with the test hooks (``hooked_node``, which log
where each hook runs) and a webhook receiver shared by all of them. A node is killed with
``kill -9``: one survivor (the one that appends its ``node-gone``) runs what the dead node
would have run for each of its clients: each ``room_left``, then ``disconnect``, and each
``participant_left`` webhook, exactly once in the whole cluster; in a partitioned cluster
too (the node whose ``node-gone`` a room's partition applied first runs its ``room_left``, the
first to claim a connection its ``disconnect``). Without Redis: which rooms
the listeners are told finished (only one whose last member anywhere left, once).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from easyrtc_server.cluster import log as entries
from easyrtc_server.events import Listener, Member, ServerEvents
from easyrtc_server.protocol.outcome import Outcome
from support.nodes import Node, running_nodes
from support.redisserver import running_redis
from support.webserver import posts_served

from .test_failures import NODE_ENV, TARGET, clients
from .test_replica import Cluster

TESTS_DIR = Path(__file__).resolve().parent.parent
SECRET = "whsec-reaped-0123456789"


class Receiver:
    """Webhook events as they arrive."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(orjson.loads(await request.read()))
        self.arrived.set()
        return web.Response()

    async def left(self, easyrtcid: str) -> list[dict[str, Any]]:
        """The ``participant_left`` events of ``easyrtcid``, once there is one."""
        while True:
            found = [
                e
                for e in self.events
                if e["event"] == "participant_left" and e["easyrtcid"] == easyrtcid
            ]
            if found:
                return found
            self.arrived.clear()
            await self.arrived.wait()


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A webhook receiver, and the URL to send to it."""
    hook = Receiver()
    async with posts_served({"/hook": hook.handle}) as base:
        yield hook, f"{base}/hook"


def ran(nodes: list[Node], line: str) -> list[int]:
    """How many times each node logged ``line``."""
    return [sum(line in logged for logged in node.lines) for node in nodes]


@pytest.mark.parametrize("state", ["log", "partitioned"])
async def test_a_dead_nodes_clients_get_their_hooks_and_webhooks_once_on_one_survivor(
    state: str,
) -> None:
    async with receiver() as (hook, url), running_redis() as redis:
        env = {
            **NODE_ENV,
            "EASYRTC_CLUSTER_STATE": state,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.getenv("PYTHONPATH")])),
            "EASYRTC_WEBHOOK_URLS": url,
            "EASYRTC_WEBHOOK_SECRET": SECRET,
        }
        async with (
            running_nodes(redis.url, 3, env=env, module="cluster.hooked_node") as (a, b, c),
            clients() as join,
        ):
            on_a, on_b, on_c = await join(a), await join(b), await join(c)
            everyone = {on_a.id, on_b.id, on_c.id}
            await asyncio.gather(on_a.sees(everyone), on_b.sees(everyone))

            await c.kill()
            await asyncio.gather(on_a.sees({on_a.id, on_b.id}), on_b.sees({on_a.id, on_b.id}))
            disconnect = f"hook disconnect of {on_c.id} ran here"
            async with asyncio.timeout(TARGET):  # the hooks run once the removal is applied
                waits = [asyncio.ensure_future(n.wait_for_line(disconnect)) for n in (a, b)]
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for wait in pending:
                    wait.cancel()
                left = await hook.left(on_c.id)

            room_left = ran([a, b], f"hook room_left of {on_c.id} from r ran here")
            assert sorted(ran([a, b], disconnect)) == [0, 1]
            assert room_left == ran([a, b], disconnect)  # on the same node
            reaper = a if room_left[0] else b
            at = [i for i, line in enumerate(reaper.lines) if on_c.id in line and "hook" in line]
            assert "room_left" in reaper.lines[at[-2]] and "disconnect" in reaper.lines[at[-1]]
            assert [(e["app"], e["room"]) for e in left] == [("failures", "r")]
            # The survivors' own clients are still there: nobody else left, the room goes on.
            assert not any(e["event"] == "room_finished" for e in hook.events)
            assert ran([a, b], f"hook disconnect of {on_a.id}") == [0, 0]


class Told(Listener):
    def __init__(self) -> None:
        self.left_rooms: list[tuple[str, str, bool]] = []

    def left(self, member: Member, last: bool) -> None:
        self.left_rooms.append((member.room, member.easyrtcid, last))


def test_the_rooms_a_dead_nodes_clients_left_are_told_finished_only_when_nobody_is_left() -> None:
    cluster = Cluster()
    for node in ("n1", "n2", "n2"):
        cluster.open(node)
    rooms = {"n1": ["r1"], "n2": ["r1", "r2"]}
    for node, cid in list(cluster.peers):
        join = {room: {"roomName": room} for room in rooms[node]}
        data = {"apiVersion": "1.1.1-beta", "roomJoin": join}
        cluster.event(node, cid, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}, None)
    dead = [cid for node, cid in cluster.peers if node == "n2"]
    out = cluster.append(entries.node_gone("n1", 1, "n2"))["n1"].result
    assert isinstance(out, Outcome)
    events = ServerEvents()
    told = Told()
    events.add(told)
    events.departed(out)
    # r1 goes on with n1's client; r2 had only the dead node's two: finished once, at the end
    r1 = [(cid, last) for room, cid, last in told.left_rooms if room == "r1"]
    r2 = [(cid, last) for room, cid, last in told.left_rooms if room == "r2"]
    assert sorted(cid for cid, _ in r1) == sorted(dead) and not any(last for _, last in r1)
    assert sorted(cid for cid, _ in r2) == sorted(dead) and [last for _, last in r2] == [
        False,
        True,
    ]
