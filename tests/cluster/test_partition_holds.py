"""The pieces of a hold's hand-over between nodes of a partitioned cluster, without I/O
(``cluster/partitionholds.py``; the nodes with Redis: ``test_partitioned_holds``).

A held connection handed over keeps its easyrtcid and entries: on the node it leaves it
becomes a stub, on the node it goes to the stub becomes its own connection, and its join there
with the next login number is told to the members as an update, never a leave (a ``leave`` of
the old login changes nothing). The holds of one node: no resume token (an easyrtcid restored
from one may live on elsewhere), given away without counting an expiry, adopted with what was
queued and the grace left. The record that travels reads back, junk is refused.
"""

from __future__ import annotations

import hashlib
from typing import Any

from easyrtc_server.cluster.facts import Leave, Reserve
from easyrtc_server.cluster.partition import Admitted, Partition, RoomRules
from easyrtc_server.cluster.partitionholds import Handover, PartitionHolds, detach, hold_name
from easyrtc_server.cluster.stubs import Stubs
from easyrtc_server.options import Options
from easyrtc_server.protocol.model import Peer
from easyrtc_server.protocol.outcome import Push
from support.corekit import Harness, Result

APP = "default"
ROOM = "r"
A, B = "nA", "nB"


def told(h: Harness, member: Peer, effects: list[Any], stubs: Stubs) -> tuple[set[str], set[str]]:
    """Who ``member`` was told joined or changed, and who left, by these effects."""
    pushes = Result(stubs.apply(effects)).pushes(member)
    updated: set[str] = set()
    removed: set[str] = set()
    for _event, body in pushes:
        for data in body["msgData"]["roomData"].values():
            delta = data.get("clientListDelta") or {}
            updated |= set(delta.get("updateClient") or {})
            removed |= set(delta.get("removeClient") or {})
    return updated, removed


def join_fact(cid: str, node: str, login: int, entry: dict[str, Any]) -> Reserve:
    return Reserve(f"{node}.{cid}.{login}", node, APP, cid, login, {ROOM: entry}, join=True)


def test_a_connection_handed_away_stays_in_the_room_as_the_other_nodes_member() -> None:
    h = Harness()
    stubs = Stubs(h.core.state, A)
    member = h.login(roomJoin={ROOM: {"roomName": ROOM}})
    held = h.login(roomJoin={ROOM: {"roomName": ROOM}})
    conn = held.connection
    assert conn is not None
    entry = dict(h.core.apps[APP].rooms[ROOM].entries[held.easyrtcid])
    part = Partition(lambda app: RoomRules(max_rooms_per_app=0))
    for peer, login in ((member, 1), (held, 1)):
        part.apply(join_fact(peer.easyrtcid, A, login, entry))
    # node A gives the held connection away: a stub now, still in the room
    del h.core.state.peers[held.easyrtcid]
    detach(conn)
    stubs.take(conn)
    assert held.easyrtcid in h.members(ROOM)
    # node B joins it again with the next login: an update for A's member, no leave
    updated, removed = told(h, member, part.apply(join_fact(held.easyrtcid, B, 2, entry)), stubs)
    assert updated == {held.easyrtcid} and not removed
    room = part.room(APP, ROOM)
    assert room is not None
    assert (room.members[held.easyrtcid].node, room.members[held.easyrtcid].login) == (B, 2)
    # a leave of the old login (late, from anywhere) changes nothing
    old = Leave(APP, held.easyrtcid, 1, (ROOM,), A)
    assert part.apply(old) == []
    assert held.easyrtcid in h.members(ROOM)
    # the new login's leave is told
    updated, removed = told(h, member, part.apply(Leave(APP, held.easyrtcid, 2, (ROOM,), B)), stubs)
    assert removed == {held.easyrtcid}
    assert held.easyrtcid not in h.members(ROOM)


def test_a_stub_handed_over_becomes_the_nodes_own_and_its_new_join_tells_nobody() -> None:
    h = Harness()
    stubs = Stubs(h.core.state, B)
    member = h.login(roomJoin={ROOM: {"roomName": ROOM}})
    entry = {"easyrtcid": "x", "roomJoinTime": 5, "presence": {"show": "away", "status": None}}
    part = Partition(lambda app: RoomRules(max_rooms_per_app=0))
    part.apply(join_fact(member.easyrtcid, B, 1, {}))
    updated, _ = told(h, member, part.apply(join_fact("x", A, 1, entry)), stubs)
    assert updated == {"x"}  # A's member, known here as a stub
    conn = stubs.give(APP, "x")
    assert conn is not None and conn.rooms[ROOM].join_time == 5
    assert stubs.give(APP, "x") is None  # once
    effects = part.apply(join_fact("x", B, 2, entry))
    assert [type(e) for e in effects if isinstance(e, Admitted)] == [Admitted]
    assert told(h, member, effects, stubs) == (set(), set())  # its own join: skipped here
    assert h.core.apps[APP].connections["x"] is conn


def holds(clock: list[int], grace: float = 10.0) -> PartitionHolds:
    return PartitionHolds(Options(resume_grace=grace), lambda: clock[0])


def relay(to: str, n: int) -> Push:
    return Push(to, "easyrtcMsg", {"senderEasyrtcid": "s", "msgType": "m", "msgData": n})


def test_the_holds_of_a_node_give_no_token_and_restore_nothing() -> None:
    clock = [1_000]
    node = holds(clock)
    peer = Peer("x", resume_key=b"\x01" * 32, resume_token="anything")
    assert node.token(APP, "x", b"\x01" * 32) == ""
    assert node.restorable(peer, APP, lambda cid: False) is None


def test_a_hold_given_away_ends_here_without_an_expiry_and_its_key_resumes_nothing() -> None:
    clock = [1_000]
    h = Harness()
    peer = h.login(roomJoin={ROOM: {"roomName": ROOM}})
    node = holds(clock)
    digest = b"\x02" * 32
    node.bind(peer.easyrtcid, digest)
    assert node.hold(peer)
    node.take(relay(peer.easyrtcid, 1))
    given = node.give(peer.easyrtcid)
    assert given is not None and [p.body["msgData"] for p in given.queue] == [1]
    assert not node.is_held(peer.easyrtcid)
    assert node.resumes(Peer("new", resume_key=digest)) is None
    clock[0] += 60_000
    assert node.expired() == []
    assert node.counts.expiries == 0 and node.counts.resumes == 0


def test_a_hold_adopted_keeps_its_queue_and_the_grace_it_had_left() -> None:
    clock = [1_000]
    node = holds(clock)
    digest = b"\x03" * 32
    peer = Peer("x", resume_key=digest)
    held = node.adopt(peer, digest, 2_000, [relay("x", 1)], 40)
    assert node.resumes(Peer("socket", resume_key=digest)) == "x"
    node.take(relay("x", 2))  # relays keep coming to it here
    assert [p.body["msgData"] for p in held.queue] == [1, 2]
    clock[0] += 1_999
    assert node.expired() == []
    clock[0] += 1
    assert node.expired() == [peer]


def record(**changes: Any) -> dict[str, Any]:
    raw = Handover(
        name="n" * 32,
        digest=b"\x04" * 32,
        cid="x",
        app=APP,
        login=1,
        username="ann",
        presence={"show": "chat", "status": None},
        fields={"f": [1, True]},
        rooms={ROOM: {"easyrtcid": "x"}},
        queue=[("easyrtcMsg", {"senderEasyrtcid": "s", "msgData": 1})],
        size=30,
        left_ms=1_500,
    ).to_json()
    raw.update(changes)
    return raw


def test_a_hand_over_record_reads_back_and_junk_is_refused() -> None:
    back = Handover.from_json(record())
    assert back is not None
    assert back.to_json() == record()
    for junk in (
        {"d": "zz"},
        {"d": "00"},
        {"cid": ""},
        {"cid": 5},
        {"login": "1"},
        {"left": True},
        {"rooms": {ROOM: 1}},
        {"rooms": []},
        {"presence": None},
        {"queue": [[1]]},
        {"username": 3},
    ):
        assert Handover.from_json(record(**junk)) is None, junk
    assert Handover.from_json([1, 2]) is None
    assert Handover.from_json({"n": "x"}) is None


def test_the_directory_name_says_nothing_of_the_key_or_its_digest() -> None:
    key = "k" * 43
    digest = hashlib.sha256(key.encode()).digest()
    name = hold_name(digest)
    assert name == hold_name(digest) and len(name) == 32
    assert key not in name and digest.hex()[:16] not in name
    assert hold_name(b"\x00" * 32) != name
