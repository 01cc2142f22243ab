"""A partitioned node's relays ordered against its clients' facts (``factorder``).

The sender (``FactMarks``) stamps each client's relays with where its facts stand; the target
(``FactOrder``) holds a relay until it applied (and told) those facts, at most ``wait`` seconds
of an injected clock, then delivers it anyway, counted. No Redis, no event loop.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from easyrtc_server.cluster.factorder import WRITTEN, FactMarks, FactOrder
from easyrtc_server.cluster.ordering import DROPPED

X, B = "x", "b"
WAIT = 2.0
P, Q = 7, 9


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reader:
    """The target node's partitions: applied (and told) up to a number; unread ones absent."""

    def __init__(self) -> None:
        self.at: dict[int, int] = {}

    def __call__(self, partition: int) -> int | None:
        return self.at.get(partition)


def relay(n: int) -> list[Any]:
    return ["bob", "easyrtcCmd", {"n": n, "senderEasyrtcid": "alice"}]


def numbers(items: list[list[Any]]) -> list[int]:
    return [item[2]["n"] for item in items]


def written(ticket: int, seq: int) -> list[Any]:
    return ["", WRITTEN, [ticket, seq]]


def order() -> tuple[FactOrder, Clock]:
    clock = Clock()
    return FactOrder(WAIT, clock), clock


# -- the sender's stamps --------------------------------------------------------------------


def test_a_client_without_facts_stamps_nothing() -> None:
    marks = FactMarks()
    assert marks.stamp("alice", B) == 0
    assert marks.stamp(None, B) == 0


def test_a_joined_client_stamps_its_rooms_partitions_as_applied_at_its_join() -> None:
    marks = FactMarks()
    marks.joined("alice", {P: 12}, {P})
    assert marks.stamp("alice", B) == [P, 12]
    marks.joined("alice", {Q: 3}, {P, Q})
    assert marks.stamp("alice", B) == [P, 12, Q, 3]
    marks.joined("alice", {Q: 5}, {Q})  # left P's rooms: P is not waited for any more
    assert marks.stamp("alice", B) == [Q, 5]
    marks.joined("alice", {Q: 2}, {Q})  # asked again after Redis came back empty
    assert marks.stamp("alice", B) == [Q, 2]


def test_one_stamp_is_shared_by_relays_until_the_clients_facts_change() -> None:
    marks = FactMarks()
    marks.joined("alice", {P: 12}, {P})
    first = marks.stamp("alice", B)
    assert marks.stamp("alice", "c") is first  # no allocation per relay
    marks.posted("alice", P)
    assert marks.stamp("alice", B) is not first
    assert first == [P, 12]  # a relay queued before keeps what it was stamped with


def test_a_fact_being_written_is_a_ticket_told_to_the_nodes_relayed_to_once_written() -> None:
    marks = FactMarks()
    marks.joined("alice", {P: 12}, {P})
    ticket = marks.posted("alice", P)
    assert marks.stamp("alice", B) == [P, -ticket]
    assert marks.stamp("alice", "c") == [P, -ticket]
    assert marks.written(ticket, 20) == [B, "c"]
    assert marks.stamp("alice", B) == [P, 20]
    assert marks.written(ticket, 20) == []  # told once


def test_a_ticket_nobody_was_relayed_behind_tells_nobody() -> None:
    marks = FactMarks()
    marks.joined("alice", {P: 12}, {P})
    ticket = marks.posted("alice", P)
    assert marks.written(ticket, 0) == []  # its write failed: nothing to wait for
    assert marks.stamp("alice", B) == [P, 0]
    marks.posted("alice", P)  # the next one is waited for again
    assert marks.stamp("alice", B) == [P, -2]


def test_a_client_never_joined_or_closed_is_not_stamped_by_its_facts() -> None:
    marks = FactMarks()
    ticket = marks.posted("alice", P)  # a leave of a join that ended after its close
    assert marks.stamp("alice", B) == 0
    assert marks.written(ticket, 5) == []
    assert not marks._marks and not marks._open and not marks._unresolved


def test_a_closed_client_is_forgotten_though_its_leave_is_still_told() -> None:
    marks = FactMarks()
    marks.joined("alice", {P: 12}, {P})
    marks.stamp("alice", B)
    ticket = marks.posted("alice", P)
    marks.stamp("alice", B)
    marks.forget("alice")
    assert marks.written(ticket, 21) == [B]
    assert marks.stamp("alice", B) == 0
    assert not marks._marks and not marks._open and not marks._unresolved  # nothing kept


# -- the target's wait ----------------------------------------------------------------------


def test_a_relay_whose_facts_are_applied_goes_at_once() -> None:
    target, _ = order()
    reader = Reader()
    reader.at[P] = 12
    assert numbers(target.arrived(X, [[P, 12]], [relay(1)], reader)) == [1]
    assert numbers(target.arrived(X, [0], [relay(2)], reader)) == [2]
    assert target.holding == 0


def test_a_partition_not_read_here_is_not_waited_for() -> None:
    target, _ = order()
    assert numbers(target.arrived(X, [[P, 12]], [relay(1)], Reader())) == [1]


def test_a_relay_waits_until_its_senders_join_is_applied_then_goes_in_order() -> None:
    target, clock = order()
    reader = Reader()
    reader.at[P] = 10
    assert target.arrived(X, [[P, 12], 0], [relay(1), relay(2)], reader) == []
    assert target.arrived(X, [0], [relay(3)], reader) == []  # behind the held ones
    assert target.next_deadline() == clock.now + WAIT
    reader.at[P] = 11
    assert target.ready(reader) == []
    reader.at[P] = 12
    assert numbers(target.ready(reader)) == [1, 2, 3]
    assert target.holding == 0 and target.next_deadline() is None
    assert target.lates.relays == 0


def test_another_senders_relays_do_not_wait_behind_them() -> None:
    target, _ = order()
    reader = Reader()
    reader.at[P] = 10
    assert target.arrived(X, [[P, 12]], [relay(1)], reader) == []
    assert numbers(target.arrived("y", [[P, 9]], [relay(2)], reader)) == [2]


def test_a_ticket_is_waited_for_until_its_number_comes_and_is_applied() -> None:
    target, _ = order()
    reader = Reader()
    reader.at[P] = 30
    assert target.arrived(X, [[P, -4]], [relay(1)], reader) == []
    reader.at[P] = 40
    assert target.ready(reader) == []  # applied far, but which number is it?
    assert target.arrived(X, [0], [written(4, 41)], reader) == []
    reader.at[P] = 41
    assert numbers(target.ready(reader)) == [1]


def test_a_ticket_whose_fact_is_applied_already_goes_when_told() -> None:
    target, _ = order()
    reader = Reader()
    reader.at[P] = 30
    assert target.arrived(X, [[P, -4]], [relay(1)], reader) == []
    reader.at[P] = 41
    assert numbers(target.arrived(X, [0, 0], [written(4, 41), relay(2)], reader)) == [1, 2]


def test_a_ticket_whose_write_failed_is_not_waited_for() -> None:
    target, _ = order()
    reader = Reader()
    reader.at[P] = 30
    assert target.arrived(X, [[P, -4]], [relay(1)], reader) == []
    assert numbers(target.arrived(X, [0], [written(4, 0)], reader)) == [1]


def test_the_wait_runs_out_in_order_counted() -> None:
    target, clock = order()
    reader = Reader()
    reader.at[P] = 10
    target.arrived(X, [[P, 12], [P, 14], 0], [relay(1), relay(2), relay(3)], reader)
    clock.now += WAIT - 0.1
    assert target.expired(reader) == []
    reader.at[P] = 13
    clock.now += 0.1
    # the first's wait ran out: it goes, with those behind it (one arrival, one deadline)
    assert numbers(target.expired(reader)) == [1, 2, 3]
    assert target.lates.relays == 3
    assert target.holding == 0 and target.next_deadline() is None


def test_held_relays_behind_an_expired_one_that_are_met_go_with_it() -> None:
    target, clock = order()
    reader = Reader()
    reader.at[P] = 10
    target.arrived(X, [[P, 12]], [relay(1)], reader)
    clock.now += 1.0
    target.arrived(X, [[P, 11], [P, 15]], [relay(2), relay(3)], reader)
    reader.at[P] = 11
    clock.now += 1.0
    assert numbers(target.expired(reader)) == [1, 2]  # 3 waits on, its own deadline
    assert target.lates.relays == 1
    assert target.next_deadline() == clock.now + 1.0


def test_the_held_relays_are_bounded() -> None:
    clock = Clock()
    target = FactOrder(WAIT, clock, limit=3)
    reader = Reader()
    reader.at[P] = 0
    assert target.arrived(X, [[P, 5]] * 3, [relay(1), relay(2), relay(3)], reader) == []
    assert numbers(target.arrived(X, [[P, 5]], [relay(4)], reader)) == [1, 2, 3, 4]
    assert target.lates.relays == 4 and target.holding == 0


def test_a_dropped_relays_place_and_junk_stamps_are_not_waited_for() -> None:
    target, _ = order()
    reader = Reader()
    reader.at[P] = 10
    got = target.arrived(
        X, [DROPPED, ["junk", 3], [P], "x", 0], [relay(1), relay(2), relay(3), relay(4)], reader
    )
    assert numbers(got) == [1, 2, 3, 4]
    got = target.arrived(X, [0], [relay(5), relay(6)], reader)  # fewer stamps than items
    assert numbers(got) == [5, 6]
    assert target.arrived(X, [0], [written(4, 1)], reader) == []  # told for nothing held


def test_a_gone_sender_s_held_relays_go() -> None:
    target, _ = order()
    reader = Reader()
    reader.at[P] = 0
    target.arrived(X, [[P, 5]], [relay(1)], reader)
    assert numbers(target.forget(X)) == [1]
    assert target.holding == 0


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 3)), min_size=1, max_size=20),
    st.lists(st.integers(1, 6), max_size=10),
)
def test_every_relay_goes_once_in_order_and_never_before_its_facts(
    plan: list[tuple[int, int]], steps: list[int]
) -> None:
    """Relays stamped with rising numbers of one partition, in batches, while the reader
    advances by ``steps``: each goes once, in order, only once its number is applied (or
    when the wait runs out, counted)."""
    target, clock = order()
    reader = Reader()
    reader.at[P] = 0
    out: list[int] = []
    seq = 0
    n = 0
    for (more, batch), step in zip(plan, [*steps, *[0] * len(plan)], strict=False):
        seq += more
        stamps = [[P, seq]] * batch
        relays = [relay(n + i) for i in range(batch)]
        n += batch
        got = numbers(target.arrived(X, stamps, relays, reader))
        reader.at[P] = min(seq, reader.at[P] + step)
        got += numbers(target.ready(reader))
        assert all(seq_of(k, plan) <= reader.at[P] for k in got)
        out += got
    assert target.lates.relays == 0
    clock.now += WAIT
    late = numbers(target.expired(reader))
    assert out + late == list(range(n))
    assert target.lates.relays == len(late)
    assert all(seq_of(k, plan) > reader.at[P] for k in late[:1])


def seq_of(k: int, plan: list[tuple[int, int]]) -> int:
    """The stamp number of relay ``k`` in ``plan``."""
    seq = 0
    n = 0
    for more, batch in plan:
        seq += more
        if k < n + batch:
            return seq
        n += batch
    raise AssertionError(k)


def test_a_stopping_node_delivers_what_it_holds_and_holds_nothing_more() -> None:
    target, _ = order()
    reader = Reader()
    reader.at[P] = 0
    target.arrived(X, [[P, 5], 0], [relay(1), relay(2)], reader)
    target.arrived("y", [[P, 6]], [relay(3)], reader)
    assert numbers(target.drain()) == [1, 2, 3]
    assert numbers(target.arrived(X, [[P, 9]], [relay(4)], reader)) == [4]
    assert target.holding == 0 and target.next_deadline() is None
