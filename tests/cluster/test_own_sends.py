"""Each node builds only its own sends: applying an entry, a replica builds the pushes to its
node's sockets and, for its node's own entries, the reply (a login's token holds the whole
room list); the state is the same on every replica, and what each node sends is what a replica
building everything would have sent to that node's sockets.

Replicas as ``test_replica`` feeds them (the log is a list, no Redis), each told which sockets
are its node's (those opened there), beside one that builds every send (``whole``, as one
process does). Member-list changes are pushed one by one (``room_update_tick=0``): the coalesced
updates are built per node already (``test_coalesce``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.cluster import log as entries
from easyrtc_server.cluster import snapshot
from easyrtc_server.cluster.log import LogEntry
from easyrtc_server.cluster.replica import Applied, Replica
from easyrtc_server.options import Options
from easyrtc_server.protocol.outcome import Fanout, Outcome, Reply, Send

from .test_replica import ACTIONS, NODES, OPTIONS, Cluster, run


def what_is_sent(out: Outcome, origin: bool, sockets: set[str]) -> list[tuple[Any, ...]]:
    """What a node sends of ``out`` (as the node's reader does): the reply if the entry is its
    own, the pushes to its sockets (a fan-out's recipients one by one)."""
    sent: list[tuple[Any, ...]] = []
    for send in out.sends:
        if isinstance(send, Reply):
            if origin:
                sent.append(("reply", send.body))
        elif isinstance(send, Fanout):
            sent.extend((p.to, p.event, p.body) for p in send.pushes() if p.to in sockets)
        elif send.to in sockets:
            sent.append((send.to, send.event, send.body))
    return sent


def recipients(send: Send) -> list[str]:
    if isinstance(send, Reply):
        return []
    return send.to if isinstance(send, Fanout) else [send.to]


def big_reply(send: Send) -> bool:
    """A reply holding a whole room list: a login's token, a roomJoin's reply."""
    if not isinstance(send, Reply):
        return False
    body = send.body
    rooms = body.get("msgData", {}).get("roomData", {}) if body["msgType"] == "roomData" else {}
    return body["msgType"] == "token" or any("clientList" in room for room in rooms.values())


@dataclass
class OwnSends(Cluster):
    """The replicas of ``NODES``, each building the sends of its node's sockets only."""

    options: Options = OPTIONS
    sockets: dict[str, set[str]] = field(default_factory=lambda: {node: set() for node in NODES})
    whole: Replica = field(init=False)
    last: dict[str, Applied] = field(default_factory=dict)
    """What each replica made of the last entry."""

    def __post_init__(self) -> None:
        for node in NODES:
            here = self.sockets[node].__contains__
            self.replicas[node] = Replica.new(self.options, node, here=here)
        self.whole = Replica.new(self.options, "whole")

    def open(self, node: str) -> str:
        cid = super().open(node)
        self.sockets[node].add(cid)
        return cid

    def append(self, entry: LogEntry) -> dict[str, Applied]:
        """Every replica applies ``entry``; each node sends what ``whole`` would to its
        sockets, and built nothing for another node's socket or client."""
        self.log.append(entry)
        applied = {node: replica.apply(entry) for node, replica in self.replicas.items()}
        whole = self.whole.apply(entry).result
        for node, done in applied.items():
            out, mine, origin = done.result, self.sockets[node], entry.node == node
            if not isinstance(whole, Outcome):
                assert type(out) is type(whole)
                continue
            assert isinstance(out, Outcome)
            assert what_is_sent(out, origin, mine) == what_is_sent(whole, origin, mine)
            assert [cid for s in out.sends for cid in recipients(s) if cid not in mine] == []
            assert origin or not any(big_reply(s) for s in out.sends)
            assert out.close == whole.close
            assert out.left == whole.left or [  # the same records, each replica's own objects
                (c.easyrtcid, r) for c, r in out.left or ()
            ] == [(c.easyrtcid, r) for c, r in whole.left or ()]
        self.last = applied
        return applied

    def dumps(self) -> list[dict[str, Any]]:
        return [*super().dumps(), snapshot.dump(self.whole)]


ROOMY = OPTIONS.replace(room_max_connection=0)


def login(cluster: OwnSends, node: str, room: str = "r1") -> str:
    cid = cluster.open(node)
    data = {"apiVersion": "1.1.1-beta", "roomJoin": {room: {"roomName": room}}}
    cluster.event(node, cid, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}, None)
    return cid


def pushes(applied: Applied) -> list[str]:
    out = applied.result
    assert isinstance(out, Outcome)
    return [cid for send in out.sends for cid in recipients(send)]


def replies(applied: Applied) -> list[str]:
    out = applied.result
    assert isinstance(out, Outcome)
    return [str(s.body.get("msgType")) for s in out.sends if isinstance(s, Reply)]


def test_a_login_builds_its_token_on_its_node_and_each_push_on_the_recipients_node() -> None:
    cluster = OwnSends(options=ROOMY)
    members = {node: [login(cluster, node) for _ in range(2)] for node in ("n2", "n3")}
    login(cluster, "n1")
    step = cluster.last  # the token's entry
    # its node: the token, and no push for the members elsewhere
    assert replies(step["n1"]) == ["token"]
    assert pushes(step["n1"]) == []
    # every other node: no token, a push to each of its own members only
    for node, own in members.items():
        assert replies(step[node]) == []
        assert sorted(pushes(step[node])) == sorted(own)
    first, *others = cluster.dumps()
    assert all(other == first for other in others)


def test_a_room_join_and_a_room_field_build_only_this_nodes_sends() -> None:
    cluster = OwnSends()
    on_n2 = login(cluster, "n2")
    on_n3 = login(cluster, "n3")
    joiner = login(cluster, "n1", room="r2")
    msg = {"msgType": "roomJoin", "msgData": {"roomJoin": {"r1": {"roomName": "r1"}}}}
    cluster.event("n1", joiner, "easyrtcCmd", msg, None)
    joined = cluster.last
    assert replies(joined["n1"]) == ["roomData"] and pushes(joined["n1"]) == []
    assert replies(joined["n2"]) == [] and pushes(joined["n2"]) == [on_n2]
    assert replies(joined["n3"]) == [] and pushes(joined["n3"]) == [on_n3]
    field = entries.control("n2", 9, "set_room_field", ["default", "r1", "f", 1], {})
    changed = cluster.append(field)
    assert {node: pushes(a) for node, a in changed.items()} == {
        "n1": [joiner],
        "n2": [on_n2],
        "n3": [on_n3],
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(ACTIONS, max_size=40))
def test_each_node_sends_what_one_process_would_and_builds_nothing_for_others(
    actions: list[tuple[Any, ...]],
) -> None:
    cluster = OwnSends()
    for action in actions:
        run(cluster, action)
    first, *others = cluster.dumps()
    assert all(other == first for other in others)
