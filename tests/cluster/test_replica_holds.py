"""Holds in a cluster's replicated state (``cluster.holds``): every replica holds, queues,
resumes and expires alike, so a client resumes on any node. No Redis: the log is a list."""

from __future__ import annotations

import hashlib
from typing import Any

from easyrtc_server.cluster import log as entries
from easyrtc_server.cluster import snapshot
from easyrtc_server.cluster.replica import Replica
from easyrtc_server.protocol.outcome import Outcome, Push

from .test_replica import Cluster, yes

KEY = "k" * 30
DIGEST = hashlib.sha256(KEY.encode()).digest()


class KeyedCluster(Cluster):
    def open_keyed(self, node: str, key: str | None) -> str:
        peer = self.replicas[node].core.open("127.0.0.1", resume_key=key)
        self.peers.append((node, peer.easyrtcid))
        return peer.easyrtcid

    def login(self, node: str, cid: str, room: str = "r1") -> list[Outcome]:
        """A login as its origin logs it (with its key's digest); the outcomes on ``node``."""
        origin = self.replicas[node].core
        peer = origin.peers[cid]
        data = {
            "msgType": "authenticate",
            "msgData": {
                "apiVersion": "1.1.1-beta",
                "applicationName": "app",
                "roomJoin": {room: {"roomName": room}},
            },
        }
        checked = origin.check(peer, "easyrtcAuth", data)
        assert not isinstance(checked, Outcome)
        entry = entries.recv(
            node, next(self.clock), cid, "127.0.0.1", "easyrtcAuth", checked, peer.resume_key
        )
        step = self.append(entry)[node].result
        outs = []
        while not isinstance(step, Outcome):
            step = self.append(entries.answer(node, next(self.clock), cid, yes(step)))[node].result
        outs.append(step)
        return outs

    def same(self) -> dict[str, Any]:
        first, *others = self.dumps()
        assert all(other == first for other in others)
        return first


def events_to(outs: list[Outcome], to: str) -> list[tuple[str, Any]]:
    return [
        (s.event, s.body) for out in outs for s in out.sends if isinstance(s, Push) and s.to == to
    ]


def test_a_hold_made_on_one_node_resumes_on_another_with_its_queue() -> None:
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    b = c.open_keyed("n2", None)
    c.login("n2", b)
    assert "k" * 30 not in str(c.log[0].encode())  # only the digest travels
    logged = entries.LogEntry.decode(c.log[0].encode())
    assert logged.kind == "recv" and logged.body["rk"] == DIGEST.hex()

    held = c.append(entries.hold("n1", next(c.clock), a))
    assert all(not isinstance(x.result, Outcome) or not x.result.sends for x in held.values())
    message = {"senderEasyrtcid": b, "msgType": "offer", "msgData": {"n": 1}, "targetEasyrtcid": a}
    c.append(entries.queue("n2", next(c.clock), a, "easyrtcMsg", message))
    assert all(r.holds.is_held(a) for r in c.replicas.values())
    c.same()

    again = c.open_keyed("n3", KEY)
    outs = c.login("n3", again)
    assert all(r.owners[a] == "n3" for r in c.replicas.values())
    assert again not in c.replicas["n1"].core.peers
    assert events_to(outs, b) == []  # its peer hears nothing: no leave, no join
    assert ("easyrtcMsg", message) in events_to(outs, a)  # the queue follows the token
    assert not any(r.holds.is_held(a) for r in c.replicas.values())
    c.same()


def test_a_message_queued_after_the_resume_is_delivered_by_its_new_node() -> None:
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    c.append(entries.hold("n1", next(c.clock), a))
    c.login("n2", c.open_keyed("n2", KEY))
    message = {"senderEasyrtcid": "x", "msgType": "m", "msgData": 1}
    applied = c.append(entries.queue("n3", next(c.clock), a, "easyrtcMsg", message))
    out = applied["n2"].result
    assert isinstance(out, Outcome)
    assert events_to([out], a) == [("easyrtcMsg", message)]


def test_a_late_hold_or_close_from_the_old_node_does_not_touch_the_resumed_connection() -> None:
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    c.login("n2", c.open_keyed("n2", KEY))  # took the live connection over
    c.append(entries.hold("n1", next(c.clock), a))
    c.append(entries.close("n1", next(c.clock), a))
    assert all(a in r.core.state.peers and not r.holds.is_held(a) for r in c.replicas.values())


def test_the_grace_is_decided_by_the_expire_entry_time() -> None:
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    b = c.open_keyed("n2", None)
    c.login("n2", b)
    c.append(entries.hold("n1", 1_000_000_000, a))
    grace = c.replicas["n1"].holds.grace_ms
    early = c.append(entries.expire("n2", 1_000_000_000 + grace - 1, a))
    assert all(x.peer is None for x in early.values())
    gone = c.append(entries.expire("n3", 1_000_000_000 + grace, a))
    out = gone["n2"].result
    assert isinstance(out, Outcome) and events_to([out], b)  # its peer is told now
    # its hooks run once, on the node that appended the expiry
    assert [conn.easyrtcid for conn in gone["n3"].departed] == [a]
    assert gone["n1"].departed == gone["n2"].departed == []
    assert all(a not in r.core.state.peers for r in c.replicas.values())
    c.same()


def test_a_dead_nodes_keyed_clients_are_held_and_the_others_leave() -> None:
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    plain = c.open_keyed("n1", None)
    c.login("n1", plain)
    c.append(entries.node_gone("n2", next(c.clock), "n1"))
    for r in c.replicas.values():
        assert r.holds.is_held(a) and a in r.core.state.peers
        assert plain not in r.core.state.peers
    c.login("n3", c.open_keyed("n3", KEY))
    assert all(r.owners[a] == "n3" for r in c.replicas.values())


def test_a_snapshot_carries_the_bindings_holds_and_queues() -> None:
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    c.append(entries.hold("n1", next(c.clock), a))
    message = {"senderEasyrtcid": "x", "msgType": "m", "msgData": 1}
    c.append(entries.queue("n2", next(c.clock), a, "easyrtcMsg", message))
    doc = c.same()
    fresh = Replica.new(c.replicas["n1"].core.state.options, "n4")
    snapshot.load(fresh, doc)
    assert snapshot.dump(fresh) == doc
    c.replicas["n4"] = fresh
    again = c.open_keyed("n4", KEY)
    outs = c.login("n4", again)
    assert ("easyrtcMsg", message) in events_to(outs, a)


def test_a_held_connection_belongs_to_no_node_so_nothing_ends_it_but_its_grace() -> None:
    """No socket, no owner: the reaper does not announce a drained or dead node again for its
    held clients, and a node's tidy-up (which closes its own connections that have no socket)
    does not end a hold."""
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    d = c.open_keyed("n2", KEY[:-1] + "d")
    c.login("n2", d)
    c.append(entries.hold("n1", next(c.clock), a))
    c.append(entries.node_gone("n3", next(c.clock), "n2"))
    for r in c.replicas.values():
        assert r.owned_by("n1") == [] and r.owned_by("n2") == []
        assert r.holds.is_held(a) and r.holds.is_held(d)
    c.append(entries.close("n1", next(c.clock), a))  # a stale close (the tidy-up's)
    assert all(r.holds.is_held(a) for r in c.replicas.values())
    c.login("n3", c.open_keyed("n3", KEY))
    assert all(r.owners[a] == "n3" and not r.holds.is_held(a) for r in c.replicas.values())
    c.same()


def test_server_code_disconnecting_a_held_client_ends_its_hold_on_every_replica() -> None:
    """``server.disconnect`` of a held connection: no replica ends it alone (its own
    ``end_hold`` gives nothing, so the server asks the engine); the ``release`` entry the node
    appends ends it everywhere, as an ordinary leave."""
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    b = c.open_keyed("n2", None)
    c.login("n2", b)
    c.append(entries.hold("n1", next(c.clock), a))
    assert c.replicas["n2"].core.end_hold(a) is None
    assert all(r.holds.is_held(a) for r in c.replicas.values())
    gone = c.append(entries.release("n2", next(c.clock), a))
    out = gone["n2"].result
    assert isinstance(out, Outcome) and events_to([out], b)  # its peer is told now
    assert [conn.easyrtcid for conn in gone["n2"].departed] == [a]  # hooks run there
    assert all(a not in r.core.state.peers and not r.holds.is_held(a) for r in c.replicas.values())
    c.same()


def test_unconfirmed_messages_are_queued_past_the_bounds_in_the_order_they_come() -> None:
    """A node that relayed messages its client never confirmed puts them into the hold's
    queue (``u``, ``delivery``): their senders were answered, so no bound refuses them; the
    resume delivers them in the log's order, behind what was queued before."""
    c = KeyedCluster()
    a = c.open_keyed("n1", KEY)
    c.login("n1", a)
    c.append(entries.hold("n1", next(c.clock), a))
    bound = c.replicas["n1"].holds.max_messages
    for n in range(bound):
        message = {"senderEasyrtcid": "x", "msgType": "m", "msgData": n}
        c.append(entries.queue("n2", next(c.clock), a, "easyrtcMsg", message))
    late = {"senderEasyrtcid": "x", "msgType": "m", "msgData": "late"}
    c.append(entries.queue("n2", next(c.clock), a, "easyrtcMsg", late))  # over: dropped
    kept = {"senderEasyrtcid": "y", "msgType": "m", "msgData": "kept", "easyrtcSeq": ["n3", 7]}
    c.append(entries.queue("n3", next(c.clock), a, "easyrtcMsg", kept, unconfirmed=True))
    c.same()
    outs = c.login("n2", c.open_keyed("n2", KEY))
    got = [body["msgData"] for event, body in events_to(outs, a) if event == "easyrtcMsg"]
    assert got == [*range(bound), "kept"]
