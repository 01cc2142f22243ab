"""Rebuilding a replica from the nodes' connections, and removing a dead node's: on the core.

These run the replica's side of a failure without Redis: what one node snapshots of its
connections, another rebuilds exactly (lists, join times, apiFields, sessions, groups), and a
dead node's clients leave as on a disconnect.
"""

from __future__ import annotations

from typing import Any

import orjson

from easyrtc_server.cluster.log import node_gone
from easyrtc_server.cluster.rebuild import full_lists, reset, restore, snapshot
from easyrtc_server.cluster.replica import LogClock, Replica
from easyrtc_server.protocol import control
from easyrtc_server.protocol.model import Peer
from easyrtc_server.protocol.outcome import Outcome
from support.corekit import NOW, Harness


def _world(h: Harness) -> tuple[Peer, Peer, Peer]:
    a = h.login(username="alice", roomJoin={"x": {"roomName": "x"}}, easyrtcsid="s1")
    b = h.login(username="bob", roomJoin={"x": {"roomName": "x"}, "y": {"roomName": "y"}})
    c = h.login(applicationName="other", roomJoin={"z": {"roomName": "z"}})
    h.cmd(a, "setRoomApiField", msgData={"setRoomApiField": {"roomName": "x", "field": {"k": 1}}})
    h.cmd(b, "setPresence", msgData={"setPresence": {"show": "dnd", "status": "busy"}})
    state = h.core.state
    control.set_session_field(state, "default", "s1", "colour", "blue")
    control.add_to_group(state, b.easyrtcid, "crew")
    control.set_connection_field(state, a.easyrtcid, "tier", "gold", shared=True)
    return a, b, c


def _lists(h: Harness) -> dict[str, Any]:
    state = h.core.state
    return {
        app.name: {name: state.client_list(room) for name, room in app.rooms.items()}
        for app in state.apps.values()
    }


def test_a_replica_rebuilt_from_snapshots_holds_the_same_lists_sessions_and_groups() -> None:
    old = Harness()
    a, b, c = _world(old)
    wire = [orjson.loads(orjson.dumps(snapshot(p.connection))) for p in (a, b, c) if p.connection]

    new = Harness()
    for snap in wire:
        restore(new.core.state, snap)

    assert _lists(new) == _lists(old)
    assert new.members("x") == [a.easyrtcid, b.easyrtcid]
    rebuilt = new.core.peers[a.easyrtcid].connection
    assert rebuilt is not None and rebuilt.session is not None
    assert rebuilt.session.fields["colour"].value == "blue"
    assert rebuilt.fields["tier"].value == "gold"
    assert control.group_members(new.core.state, "default", "crew") == [b.easyrtcid]
    assert control.room_members(new.core.state, "other", "z") == [c.easyrtcid]


def test_a_rejoin_is_announced_to_the_members_already_there() -> None:
    h = Harness()
    a, b, _ = _world(h)
    assert b.connection is not None
    snap = snapshot(b.connection)
    fresh = Harness()
    restore(fresh.core.state, snapshot(a.connection))  # type: ignore[arg-type]
    out = restore(fresh.core.state, snap)
    told = [(push.to, push.body["msgData"]["roomData"]) for push in out.sends]  # type: ignore[union-attr]
    assert [to for to, _ in told] == [a.easyrtcid]
    delta = told[0][1]["x"]["clientListDelta"]["updateClient"][b.easyrtcid]
    assert delta["username"] == "bob" and delta["presence"]["show"] == "dnd"


def test_restoring_twice_keeps_one_connection() -> None:
    h = Harness()
    a, _, _ = _world(h)
    assert a.connection is not None
    snap = snapshot(a.connection)
    fresh = Harness()
    restore(fresh.core.state, snap)
    restore(fresh.core.state, snap)
    assert fresh.members("x") == [a.easyrtcid]
    assert len(fresh.core.apps["default"].sessions["s1"].connections) == 1


def test_reset_forgets_everyone_but_keeps_own_sockets_open_and_server_rooms() -> None:
    h = Harness()
    a, b, _ = _world(h)
    control.create_room(h.core.state, "default", "lobby")
    reset(h.core.state, keep=[a.easyrtcid])
    assert list(h.core.peers) == [a.easyrtcid]
    assert a.connection is None
    assert set(h.core.apps) == {"default"}
    assert set(h.core.apps["default"].rooms) == {"default", "lobby"}
    assert h.core.apps["default"].sessions["s1"].fields["colour"].value == "blue"
    assert b.easyrtcid not in h.core.peers


def test_after_a_rebuild_each_member_gets_the_whole_list_of_its_rooms() -> None:
    old = Harness()
    a, b, c = _world(old)
    snaps = [snapshot(p.connection) for p in (a, c) if p.connection]  # b's node died meanwhile
    state = old.core.state
    reset(state, keep=[a.easyrtcid])
    for snap in snaps:
        restore(state, snap)
    out = full_lists(state, [a.easyrtcid, b.easyrtcid])
    assert [push.to for push in out.sends] == [a.easyrtcid]  # type: ignore[union-attr]
    body = out.sends[0].body
    room = body["msgData"]["roomData"]["x"]
    assert room["roomStatus"] == "update"
    assert list(room["clientList"]) == [a.easyrtcid]  # bob is gone from alice's list
    assert body["easyrtcid"] == a.easyrtcid


def test_a_dead_nodes_clients_leave_as_on_disconnect() -> None:
    h = Harness()
    a, b, c = _world(h)
    h.join(a, "y")
    replica = Replica(h.core, "n1", LogClock(h.core.now))
    replica.owners.update({a.easyrtcid: "n1", b.easyrtcid: "n2", c.easyrtcid: "n2"})
    out = replica.apply(node_gone("n1", NOW, "n2")).result
    assert isinstance(out, Outcome)
    removed = [
        (push.to, name, list(delta["clientListDelta"]["removeClient"]))  # type: ignore[union-attr]
        for push in out.sends
        for name, delta in push.body["msgData"]["roomData"].items()
    ]
    assert sorted(removed) == [
        (a.easyrtcid, "x", [b.easyrtcid]),
        (a.easyrtcid, "y", [b.easyrtcid]),
    ]
    assert h.members("x") == [a.easyrtcid]
    assert "other" not in h.core.apps  # its application reclaimed with its last connection
    assert b.easyrtcid not in h.core.peers
