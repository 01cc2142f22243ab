"""A partitioned node's answer to another node's change of server code
(``cluster/clusterchanges.py``, ``ClusterChanges.here``), on a real core without Redis.

What a user would notice: the change lands on the node whose connection or session it is (its
clients told as one server tells them), the other nodes leave it alone, and junk from the
channel is refused without touching the state.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

from easyrtc_server.cluster.clusterchanges import ClusterChanges, session_name
from easyrtc_server.cluster.health import ReaderHealth
from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.log import encode_fields
from easyrtc_server.cluster.redisclient import AsyncClient
from easyrtc_server.engine import Carrier
from easyrtc_server.protocol.model import Connection, Field
from easyrtc_server.protocol.outcome import Outcome, Push
from support.corekit import Harness
from support.redisserver import running_redis

pytestmark = pytest.mark.asyncio

APP = "chat"


class Delivered:
    """The carrier: what the node would push to its sockets."""

    def __init__(self) -> None:
        self.pushes: list[Push] = []

    async def deliver(self, peer: Any, out: Outcome, ack: Any) -> None:
        self.pushes += [send for send in out.sends if isinstance(send, Push)]


class Node:
    def __init__(self, redis: Any = None, keys: ClusterKeys | None = None) -> None:
        self.h = Harness()
        self.delivered = Delivered()
        self.told: list[str] = []

        async def no_room_field(*args: Any) -> Any:
            raise AssertionError("not a room's change")

        self.changes = ClusterChanges(
            self.h.core,
            cast(Carrier, self.delivered),
            cast(AsyncClient, redis),  # None: ``here`` never reaches Redis
            keys or ClusterKeys("c"),
            tell=self.told.append,
            set_room_field=no_room_field,
            create_room=no_room_field,
            delete_room=no_room_field,
            health=ReaderHealth(),
        )


async def test_a_connection_change_is_made_by_the_connections_node_only() -> None:
    node = Node()
    peer = node.h.login(applicationName=APP)
    cid = peer.easyrtcid
    assert await node.changes.here(["conn", "add_to_group", [cid, "crew"], {}]) == {"ok": True}
    assert node.h.core.apps[APP].groups["crew"].members == {cid}
    assert node.told == [cid], "its rooms' partitions are told what changed"
    field = ["conn", "set_connection_field", [cid, "badge", "gold"], {"shared": True}]
    assert await node.changes.here(field) == {"ok": True}
    assert peer.connection is not None and peer.connection.fields["badge"] == Field("gold", True)
    elsewhere = ["conn", "add_to_group", ["another-nodes-client", "crew"], {}]
    assert await node.changes.here(elsewhere) is None, "not this node's: it answers nothing"
    refused = await node.changes.here(["conn", "add_to_group", [cid, "no spaces!"], {}])
    assert refused is not None and refused["e"] == "ValueError"
    assert await node.changes.here(["conn", "remove_from_group", [cid, "crew"], {}]) == {"ok": True}
    assert node.h.core.apps[APP].groups["crew"].members == set()


async def test_a_session_field_reaches_the_sessions_connections_here() -> None:
    node = Node()
    a = node.h.login(applicationName=APP, easyrtcsid="s-1")
    b = node.h.login(applicationName=APP, easyrtcsid="s-1")
    node.h.login(applicationName=APP, easyrtcsid="s-2")
    fields = encode_fields({"note": Field("hello", True), "secret": Field("x", False)})
    assert await node.changes.here(["session", APP, session_name(APP, "s-1"), fields]) is True
    assert sorted(p.to for p in node.delivered.pushes) == sorted([a.easyrtcid, b.easyrtcid])
    data = node.delivered.pushes[0].body["msgData"]["sessionData"]
    assert data == {
        "easyrtcsid": "s-1",
        "sessionStatus": "update",
        "field": {"note": {"fieldName": "note", "fieldValue": "hello"}},
    }, "as one server sends it: the shared fields only"
    node.delivered.pushes.clear()
    other = ["session", APP, session_name(APP, "s-9"), fields]
    assert await node.changes.here(other) is False
    assert node.delivered.pushes == []


async def test_an_application_is_made_with_its_options_and_fields() -> None:
    node = Node()
    motd = {"motd": {"fieldValue": "hi", "fieldOption": {"isShared": True}}}
    extra = encode_fields({"extra": Field(1, False)})
    assert await node.changes.here(["app?", "made"]) is False
    assert await node.changes.here(["app", "made", {"appDefaultFieldObj": motd}, extra]) is False
    app = node.h.core.apps["made"]
    assert app.persistent and app.fields == {"motd": Field("hi", True), "extra": Field(1, False)}
    assert await node.changes.here(["app?", "made"]) is True
    assert await node.changes.here(["app", "bad", {"noSuchOption": 1}, {}]) is None
    assert "bad" not in node.h.core.apps


@pytest.mark.parametrize(
    "junk",
    [
        [],
        ["format-disk"],
        ["conn", "disconnect_all", ["x"], {}],
        ["conn", "add_to_group", [], {}],
        ["conn", "add_to_group", "x", {}],
        ["session", APP, 5, {}],
        ["app", "x", [], {}],
    ],
)
async def test_junk_is_refused_and_changes_nothing(junk: list[Any]) -> None:
    node = Node()
    node.h.login(applicationName=APP)
    before = set(node.h.core.apps)
    with pytest.raises(ValueError):  # the queries answer it null (``clusterqueries``)
        await node.changes.here(junk)
    assert set(node.h.core.apps) == before and node.told == []


async def test_a_storm_of_logins_reads_every_sessions_fields_with_few_connections() -> None:
    """100 logins at once, each with a session whose field is in Redis, through a client of 4
    pooled connections: each login's token shows its session's field (one at a time, they ran
    out of connections: ``Too many connections``, fields missing)."""
    sessions = [f"s-{n}" for n in range(100)]
    async with running_redis() as server:
        redis = Redis.from_url(server.url, max_connections=4)
        keys = ClusterKeys("c")
        for easyrtcsid in sessions:
            key = keys.session(session_name(APP, easyrtcsid))
            await redis.hset(key, "seat", orjson.dumps([easyrtcsid, True]))
        node = Node(redis, keys)
        runs = asyncio.ensure_future(node.changes.run())
        peers = [node.h.login(applicationName=APP, easyrtcsid=sid) for sid in sessions]
        conns = [peer.connection for peer in peers]
        assert all(conn is not None for conn in conns)
        await asyncio.gather(*(node.changes.at_login(cast(Connection, c)) for c in conns))
        for easyrtcsid, conn in zip(sessions, conns, strict=True):
            assert conn is not None and conn.session is not None
            assert conn.session.fields.get("seat") == Field(easyrtcsid, True)
        runs.cancel()
        node.changes.release()
        await redis.aclose()
