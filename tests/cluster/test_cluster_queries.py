"""The partitioned cluster's queries (``cluster/clusterqueries.py``) without Redis: nodes on an
in-memory pub/sub, each answering from a fixed view of its own connections.

What a user of the admin API would notice: the nodes' answers merged (counts summed, rooms by
name), a node that does not answer named missing, junk on a node's channel answered by nothing
worse than a dropped message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import orjson
import pytest

from easyrtc_server.cluster import clusterqueries
from easyrtc_server.cluster.clusterqueries import ClusterQueries
from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.directory import LocalDirectory
from easyrtc_server.engine import EngineUnavailable

KEYS = ClusterKeys("q")


class Hub:
    """Pub/sub in memory: each channel's subscribers get what is published on it."""

    unheard_wait = 0.0

    def __init__(self) -> None:
        self.subscribers: dict[str, list[asyncio.Queue[bytes]]] = {}

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> list[int]:
        heard = []
        for channel, data in messages:
            queues = self.subscribers.get(channel, [])
            for queue in queues:
                queue.put_nowait(data)
            heard.append(len(queues))
        return heard

    def subscription(self) -> Subscription:
        return Subscription(self)


class Subscription:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def subscribe(self, channel: str) -> None:
        self.hub.subscribers.setdefault(channel, []).append(self.queue)

    async def next_message(self) -> bytes | None:
        return await self.queue.get()

    async def aclose(self) -> None:
        for queues in self.hub.subscribers.values():
            if self.queue in queues:
                queues.remove(self.queue)


class View:
    """One node's own connections, as its ``LocalDirectory`` would answer for them."""

    def __init__(self, apps: dict[str, dict[str, list[str]]]) -> None:
        self.apps = apps
        """application -> room -> the node's own members (easyrtcids)."""
        self.kicked: list[str] = []
        self.told: list[tuple[str, Any]] = []

    def applications_here(self) -> tuple[list[dict[str, Any]], bool]:
        found = []
        for name, rooms in self.apps.items():
            conns = {cid for members in rooms.values() for cid in members}
            found.append({"name": name, "connections": len(conns), "rooms": list(rooms)})
        return found, False

    def rooms_here(self, app: str) -> tuple[list[dict[str, Any]] | None, bool]:
        rooms = self.apps.get(app)
        if rooms is None:
            return None, False
        return [{"name": n, "members": len(m), "fields": {}} for n, m in rooms.items()], False

    def room_here(self, app: str, room: str) -> tuple[dict[str, Any] | None, bool]:
        members = self.apps.get(app, {}).get(room)
        if members is None:
            return None, False
        occupants = [{"easyrtcid": cid} for cid in members]
        return {"name": room, "members": len(members), "fields": {}, "occupants": occupants}, False

    def _has(self, cid: str) -> bool:
        return any(cid in m for rooms in self.apps.values() for m in rooms.values())

    def connection_here(self, easyrtcid: str) -> dict[str, Any] | None:
        return {"easyrtcid": easyrtcid, "username": "u"} if self._has(easyrtcid) else None

    async def disconnect_here(self, easyrtcid: str) -> bool:
        if not self._has(easyrtcid):
            return False
        self.kicked.append(easyrtcid)
        return True

    async def send_message_here(
        self, msg_type: str, msg_data: Any, app: str, target: str, name: str
    ) -> int | None:
        rooms = self.apps.get(app)
        if rooms is None or (target == "room" and name not in rooms):
            return None
        to = rooms[name] if target == "room" else [name] if self._has(name) else []
        self.told += [(cid, msg_data) for cid in to]
        return len(to)


async def no_field(app: str, room: str, name: str, value: Any, shared: bool) -> None:
    raise AssertionError("not asked here")


class Cluster:
    def __init__(self, views: dict[str, View], alive: list[str]) -> None:
        self.hub = Hub()
        self.alive = alive
        self.redis_away = False
        self.nodes = {
            node: ClusterQueries(
                cast(LocalDirectory, view),
                node_id=node,
                keys=KEYS,
                channels=self.hub,  # type: ignore[arg-type]
                alive=self.listed,
                set_room_field=no_field,
            )
            for node, view in views.items()
        }

    async def listed(self) -> list[str]:
        if self.redis_away:
            raise ConnectionError("Redis is away")
        return self.alive

    async def __aenter__(self) -> Cluster:
        for node in self.nodes.values():
            await node.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes.values():
            await node.stop()


VIEWS = {
    "n1": {"chat": {"lobby": ["a1"], "default": []}},
    "n2": {"chat": {"lobby": ["b1", "b2"], "calls": ["b3"]}, "games": {"arena": ["b4"]}},
    "n3": {"chat": {"calls": ["c1"]}},
}


def cluster(alive: list[str] | None = None) -> Cluster:
    views = {node: View(apps) for node, apps in VIEWS.items()}
    return Cluster(views, alive or list(views))


async def test_the_nodes_answers_are_merged() -> None:
    async with cluster() as c:
        asker = c.nodes["n1"]
        apps = await asker.applications()
        assert apps.missing == []
        assert sorted(apps.value, key=lambda a: a["name"]) == [
            {"name": "chat", "rooms": 3, "connections": 5},
            {"name": "games", "rooms": 1, "connections": 1},
        ]
        rooms = await asker.rooms("chat")
        assert {r["name"]: r["members"] for r in rooms.value or []} == {
            "lobby": 3,
            "default": 0,
            "calls": 2,
        }
        assert (await asker.rooms("nowhere")).value is None
        lobby = (await asker.room("chat", "lobby")).value
        assert lobby is not None and lobby["members"] == 3
        assert [o["easyrtcid"] for o in lobby["occupants"]] == ["a1", "b1", "b2"]
        assert (await asker.connection("c1")).value == {"easyrtcid": "c1", "username": "u"}
        assert (await asker.connection("zz")).value is None


async def test_actions_reach_the_node_of_the_client() -> None:
    async with cluster() as c:
        asker = c.nodes["n3"]
        assert (await asker.disconnect("b4")).value is True
        assert cast(View, c.nodes["n2"].local).kicked == ["b4"]
        assert (await asker.disconnect("zz")).value is False
        sent = await asker.send_message("note", {"x": 1}, "chat", "room", "calls")
        assert sent.value == 2
        assert cast(View, c.nodes["n2"].local).told == [("b3", {"x": 1})]
        assert cast(View, c.nodes["n3"].local).told == [("c1", {"x": 1})]
        with pytest.raises(KeyError):
            await asker.send_message("note", None, "chat", "room", "nowhere")
        with pytest.raises(TypeError):  # not JSON: refused before any node sends it
            await asker.send_message("note", object(), "chat", "room", "calls")


async def test_a_node_that_does_not_answer_is_named_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clusterqueries, "QUERY_TIMEOUT", 0.2)
    async with cluster(alive=["n1", "n2", "n3", "n4"]) as c:
        # n4 is listed alive but nobody listens on its channel: missing at once
        apps = await c.nodes["n1"].applications()
        assert apps.missing == ["n4"]
        # n4 listens but never answers: missing after the timeout
        silent = c.hub.subscription()
        await silent.subscribe(KEYS.queries("n4"))
        found = await c.nodes["n1"].connection("zz")
        assert (found.value, found.missing) == (None, ["n4"])
        found_room = await c.nodes["n1"].room("chat", "lobby")
        assert found_room.missing == ["n4"] and found_room.value is not None
        assert not silent.queue.empty(), "the questions did reach n4"


async def test_junk_on_a_nodes_channel_is_dropped_and_it_answers_on() -> None:
    async with cluster() as c:
        channel = KEYS.queries("n2")
        junk = [
            b"not json",
            b"[1, 2]",
            orjson.dumps({"from": 5}),
            orjson.dumps({"q": "1", "from": "n9", "op": "format-disk", "a": []}),
            orjson.dumps({"q": "2", "from": "n9", "op": "room", "a": [1]}),  # answered None
            orjson.dumps({"q": "3", "from": "n9", "op": "msg", "a": ["x"]}),
            orjson.dumps({"r": "999", "from": "n9", "v": "an answer nobody asked for"}),
        ]
        listener = c.hub.subscription()
        await listener.subscribe(KEYS.queries("n9"))
        await c.hub.publish([(channel, data) for data in junk])
        answers = [orjson.loads(await listener.next_message() or b"") for _ in range(2)]
        assert sorted((a["r"], a["v"]) for a in answers) == [("2", None), ("3", None)]
        apps = await c.nodes["n1"].applications()
        assert apps.missing == [] and len(apps.value) == 2


async def test_a_redis_that_does_not_answer_makes_the_cluster_unavailable() -> None:
    async with cluster() as c:
        c.redis_away = True
        asker = c.nodes["n1"]
        with pytest.raises(EngineUnavailable):
            await asker.applications()
        assert (await asker.connection("a1")).value is not None, "its own: no need to ask"
