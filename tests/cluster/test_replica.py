"""Replicas fed the same log reach the same state and compute the same outcomes.

Three replicas (three cores, as three nodes hold) apply one log built the way origins build it:
a client's event is a ``recv`` entry of its node; each decision the core asks is answered by the
origin (an ``answer`` entry with the record its hooks gave, ``Refused`` too) in a further entry.
Hypothesis picks the events, the nodes and the answers. No Redis here: the log is a list.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.cluster import log as entries
from easyrtc_server.cluster import snapshot
from easyrtc_server.cluster.log import LogEntry
from easyrtc_server.cluster.replica import Applied, Replica
from easyrtc_server.options import Options
from easyrtc_server.protocol.core import changes_state
from easyrtc_server.protocol.decisions import (
    Answer,
    Decision,
    JoinAnswer,
    JoinRequested,
    LoginAdmitted,
    LoginAnswer,
    LoginRequested,
    Refused,
    TokenAnswer,
)
from easyrtc_server.protocol.ice import ice_servers
from easyrtc_server.protocol.outcome import Outcome, Push, Reply

NODES = ("n1", "n2", "n3")
OPTIONS = Options(room_max_connection=3, max_rooms_per_connection=3, room_update_tick=0)
"""Each member-list change pushed in the outcome of the entry that makes it: what these tests
read (the coalesced updates on a cluster: ``test_coalesce``, ``tests/core/test_room_updates``)."""


def yes(decision: Decision) -> Answer:
    """What the default hooks answer, as an origin records it."""
    match decision:
        case LoginRequested(request=r):
            return LoginAnswer(r.app_name, r.username, r.rooms)
        case JoinRequested():
            return JoinAnswer()
        case LoginAdmitted(conn=conn):
            servers = ice_servers(conn, OPTIONS)
            return TokenAnswer(servers, conn.username, conn.presence, conn.fields)
    raise AssertionError(f"not a logged decision: {decision}")


def sends(applied: Applied) -> list[tuple[str, str, Any]]:
    out = applied.result
    assert isinstance(out, Outcome)
    return [
        ("reply", "", s.body) if isinstance(s, Reply) else (s.to, s.event, s.body)
        for s in out.sends
        if isinstance(s, Reply | Push)
    ]


@dataclass
class Cluster:
    """Replicas and the log, with each client's socket opened on its origin's replica."""

    replicas: dict[str, Replica] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1_000_000, 7))
    peers: list[tuple[str, str]] = field(default_factory=list)  # (node, easyrtcid)

    def __post_init__(self) -> None:
        for node in NODES:
            self.replicas[node] = Replica.new(OPTIONS, node)

    def append(self, entry: LogEntry) -> dict[str, Applied]:
        """Every replica applies ``entry``; they must say the same."""
        self.log.append(entry)
        applied = {node: replica.apply(entry) for node, replica in self.replicas.items()}
        results = list(applied.values())
        if isinstance(results[0].result, Outcome):
            assert all(sends(a) == sends(results[0]) for a in results)
        else:
            assert all(type(a.result) is type(results[0].result) for a in results)
        return applied

    def open(self, node: str) -> str:
        peer = self.replicas[node].core.open("127.0.0.1")
        self.peers.append((node, peer.easyrtcid))
        return peer.easyrtcid

    def event(self, node: str, cid: str, event: str, data: Any, refuse_at: int | None) -> None:
        """What an origin does: the event, then the hooks' answers until an outcome."""
        t = next(self.clock)
        address = "127.0.0.1"
        origin = self.replicas[node].core
        if changes_state(origin.peers[cid], event, data, True):
            checked = origin.check(origin.peers[cid], event, data)
            if isinstance(checked, Outcome):  # refused by the origin: never logged
                return
            data = checked
        step = self.append(entries.recv(node, t, cid, address, event, data))[node].result
        asked = 0
        while not isinstance(step, Outcome):
            t = next(self.clock)
            answer = Refused(step.failure) if asked == refuse_at else yes(step)
            entry = entries.answer(node, t, cid, answer)
            step = self.append(entry)[node].result
            asked += 1

    def dumps(self) -> list[dict[str, Any]]:
        return [snapshot.dump(replica) for replica in self.replicas.values()]


ROOMS = st.sampled_from(["r1", "r2", "r3", "r4"])
ACTIONS = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(NODES)),
    st.tuples(
        st.just("login"),
        st.integers(0, 20),
        st.sampled_from(["a1", "a2"]),
        st.lists(ROOMS, max_size=2, unique=True),
        st.one_of(st.none(), st.integers(0, 2)),
    ),
    st.tuples(st.just("join"), st.integers(0, 20), ROOMS, st.one_of(st.none(), st.just(0))),
    st.tuples(st.just("leave"), st.integers(0, 20), ROOMS),
    st.tuples(st.just("presence"), st.integers(0, 20), st.sampled_from(["away", "dnd"])),
    st.tuples(st.just("apifield"), st.integers(0, 20), ROOMS, st.integers(0, 9)),
    st.tuples(st.just("close"), st.integers(0, 20)),
    st.tuples(st.just("roomfield"), st.sampled_from(["a1", "a2"]), ROOMS, st.integers(0, 9)),
)


def run(cluster: Cluster, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "open":
        cluster.open(action[1])
        return
    if kind == "roomfield":
        _, app, room, value = action
        entry = entries.control(
            "n1", next(cluster.clock), "set_room_field", [app, room, "f", value], {}
        )
        cluster.append(entry)
        return
    if not cluster.peers:
        return
    node, cid = cluster.peers[action[1] % len(cluster.peers)]
    match action:
        case ("login", _, app, rooms, refuse_at):
            data = {"apiVersion": "1.1.1-beta", "applicationName": app, "username": "u" + cid[:3]}
            if rooms:
                data["roomJoin"] = {r: {"roomName": r} for r in rooms}
            cluster.event(
                node, cid, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}, refuse_at
            )
        case ("join", _, room, refuse_at):
            msg = {"msgType": "roomJoin", "msgData": {"roomJoin": {room: {"roomName": room}}}}
            cluster.event(node, cid, "easyrtcCmd", msg, refuse_at)
        case ("leave", _, room):
            msg = {"msgType": "roomLeave", "msgData": {"roomLeave": {room: {"roomName": room}}}}
            cluster.event(node, cid, "easyrtcCmd", msg, None)
        case ("presence", _, show):
            msg = {"msgType": "setPresence", "msgData": {"setPresence": {"show": show}}}
            cluster.event(node, cid, "easyrtcCmd", msg, None)
        case ("apifield", _, room, value):
            field = {"k": {"fieldName": "k", "fieldValue": value}}
            msg = {
                "msgType": "setRoomApiField",
                "msgData": {"setRoomApiField": {"roomName": room, "field": field}},
            }
            cluster.event(node, cid, "easyrtcCmd", msg, None)
        case ("close", _):
            cluster.peers.remove((node, cid))
            cluster.append(entries.close(node, next(cluster.clock), cid))


@settings(max_examples=60, deadline=None)
@given(st.lists(ACTIONS, max_size=40))
def test_replicas_fed_the_same_log_stay_equal(actions: list[tuple[Any, ...]]) -> None:
    cluster = Cluster()
    for action in actions:
        run(cluster, action)
    first, *others = cluster.dumps()
    assert all(other == first for other in others)


@settings(max_examples=40, deadline=None)
@given(st.lists(ACTIONS, max_size=40), st.lists(ACTIONS, max_size=20))
def test_a_replica_loaded_from_a_snapshot_follows_the_log_alike(
    before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]
) -> None:
    cluster = Cluster()
    for action in before:
        run(cluster, action)
    replica = cluster.replicas["n1"]
    if replica.pending:  # snapshots are taken between decisions only
        return
    late = Replica.new(OPTIONS, "n4")
    snapshot.load(late, snapshot.dump(replica))
    assert snapshot.dump(late) == snapshot.dump(replica)
    cluster.replicas["n4"] = late
    for action in after:
        run(cluster, action)
    first, *others = cluster.dumps()
    assert all(other == first for other in others)


def test_a_node_gone_takes_its_peers_out_of_every_room() -> None:
    cluster = Cluster()
    ids = [cluster.open(node) for node in NODES]
    for node, cid in list(cluster.peers):
        data = {"apiVersion": "1.1.1-beta", "roomJoin": {"r1": {"roomName": "r1"}}}
        cluster.event(node, cid, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}, None)
    applied = cluster.append(entries.node_gone("n1", next(cluster.clock), "n2"))["n1"]
    assert [p.easyrtcid for p in applied.gone] == [ids[1]]
    told = {to for to, _event, body in sends(applied) if "removeClient" in str(body)}
    assert told == {ids[0], ids[2]}
    for replica in cluster.replicas.values():
        room = replica.core.apps["default"].rooms["r1"]
        assert set(room.members) == {ids[0], ids[2]}


def test_only_the_node_whose_node_gone_removed_the_peers_runs_their_hooks() -> None:
    cluster = Cluster()
    for node in ("n1", "n2", "n2", "n3"):
        cluster.open(node)
    for node, cid in list(cluster.peers):
        data = {"apiVersion": "1.1.1-beta", "roomJoin": {"r1": {"roomName": "r1"}}}
        cluster.event(node, cid, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}, None)
    dead = [cid for node, cid in cluster.peers if node == "n2"]
    # n3 and n1 both announce n2's end (the reaper lock expired between them): the first in
    # log order removes the peers, so its origin alone runs their hooks, once.
    first = cluster.append(entries.node_gone("n3", next(cluster.clock), "n2"))
    second = cluster.append(entries.node_gone("n1", next(cluster.clock), "n2"))
    departed = {node: [c.easyrtcid for c in a.departed] for node, a in first.items()}
    assert departed == {"n1": [], "n2": [], "n3": dead}
    out = first["n3"].result
    assert isinstance(out, Outcome)
    assert sorted((c.easyrtcid, room) for c, room in out.left or ()) == sorted(
        (cid, "r1") for cid in dead
    )
    assert all(a.departed == [] and a.gone == [] for a in second.values())


def test_an_answer_after_the_close_leaves_no_ghost() -> None:
    cluster = Cluster()
    cid = cluster.open("n2")
    data = {"apiVersion": "1.1.1-beta"}
    cluster.append(
        entries.recv(
            "n2", 1, cid, None, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}
        )
    )
    cluster.append(entries.close("n2", 2, cid))
    cluster.append(entries.answer("n2", 3, cid, LoginAnswer("default", "u", {})))
    cluster.append(entries.answer("n2", 4, cid, Refused("LOGIN_GEN_FAIL")))
    for replica in cluster.replicas.values():
        assert cid not in replica.core.peers
        assert cid not in replica.owners and cid not in replica.pending
