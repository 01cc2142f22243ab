"""Noticing missed trimmed entries, and rebuilding a running replica from a snapshot, without
Redis: the comparison of stream ids, the readiness it shows, and ``Rebuilder.adopt``.
``test_log_gaps.py`` runs it through real processes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from easyrtc_server.cluster import snapshot
from easyrtc_server.cluster.gaps import missed, stream_id
from easyrtc_server.cluster.health import HealthCollector, ReaderHealth
from easyrtc_server.cluster.rebuild import Rebuilder
from easyrtc_server.cluster.replica import Replica

from .test_replica import Cluster


def test_stream_ids_compare_by_time_then_sequence() -> None:
    assert stream_id(b"1700000000000-12") == (1700000000000, 12)
    assert stream_id("5") == (5, 0)
    assert stream_id("junk") == (0, 0)
    assert stream_id("10-2") > stream_id("9-99") > stream_id("9-3")


def test_a_read_missed_entries_only_when_a_newer_one_was_trimmed() -> None:
    assert missed("100-0", "100-1")  # the entry right after it is gone
    assert missed("0-0", b"5-0")  # a fresh reader on a trimmed log
    assert not missed("100-1", "100-1")  # the last trimmed one had been read
    assert not missed("200-0", "100-5")
    assert not missed("100-0", "0-0")  # nothing trimmed yet
    assert not missed("100-0", None)


def test_ready_again_once_the_rebuilt_reader_reached_the_end() -> None:
    now = [0.0]
    health = ReaderHealth(clock=lambda: now[0])
    health.log_gaps += 1
    health.failing("rebuilding from the snapshot (it missed trimmed log entries)")
    assert health.reason() == (
        "cluster log reader: rebuilding from the snapshot (it missed trimmed log entries)"
    )
    health.caught_up()
    assert health.reason() is None
    registry = CollectorRegistry()
    registry.register(HealthCollector(health))
    assert b"easyrtc_cluster_log_gaps_total 1.0" in generate_latest(registry)


@dataclass
class Carrier:
    links: dict[str, Any] = field(default_factory=dict)


@dataclass
class Node:
    """What ``Rebuilder`` reads of a node."""

    replica: Replica
    node_id: str
    carrier: Carrier = field(default_factory=Carrier)


def login(cluster: Cluster, node: str, cid: str, room: str) -> None:
    data = {"apiVersion": "1.1.1-beta", "roomJoin": {room: {"roomName": room}}}
    cluster.event(node, cid, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}, None)


def test_adopting_a_snapshot_keeps_this_nodes_sockets_and_takes_everything_else() -> None:
    cluster = Cluster()
    mine = cluster.open("n1")
    waiting = cluster.open("n1")  # connected, not logged in
    other = cluster.open("n2")
    login(cluster, "n1", mine, "r1")
    login(cluster, "n2", other, "r1")
    stale = cluster.replicas["n1"]
    peer = stale.core.state.peers[mine]
    assert peer.connection is not None
    peer.connection.credential = {"password": "kept here"}
    pending = stale.core.state.peers[waiting]

    # n1 misses what comes next: a newcomer on n3 joins r2, n2's client leaves r1.
    del cluster.replicas["n1"]
    newcomer = cluster.open("n3")
    login(cluster, "n3", newcomer, "r2")
    msg = {"msgType": "roomLeave", "msgData": {"roomLeave": {"r1": {"roomName": "r1"}}}}
    cluster.event("n2", other, "easyrtcCmd", msg, None)
    current = cluster.replicas["n2"]
    assert set(stale.core.state.apps["default"].rooms["r1"].members) == {mine, other}

    node = Node(stale, "n1", Carrier({mine: object(), waiting: object()}))
    Rebuilder(node).adopt(snapshot.dump(current))  # type: ignore[arg-type]

    state = stale.core.state
    assert state.peers[mine] is peer and state.peers[waiting] is pending  # the server's own
    assert peer.connection is not None and peer.connection.credential == {"password": "kept here"}
    assert pending.connection is None
    assert set(state.apps["default"].rooms["r1"].members) == {mine}
    assert set(state.apps["default"].rooms["r2"].members) == {newcomer}
    assert stale.owners[newcomer] == "n3"
    assert snapshot.dump(stale) == snapshot.dump(current)
