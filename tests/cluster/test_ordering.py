"""One sending node's order, kept at a target node across the log and the inbox (``ordering``).

The sender (``Stamps``) stamps what it appends and what it relays; the target (``Arrivals``)
gets the two streams in whatever interleaving the network gives (Hypothesis picks it, and how
the relays are batched into inbox messages) and must hand out relays and entries in the order
the sender made them; a wait that runs out (an injected clock) ends in the order it has, counted.
No Redis, no event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.cluster import snapshot
from easyrtc_server.cluster.log import LogEntry, control, node_gone
from easyrtc_server.cluster.ordering import DROPPED, Arrivals, Stamps
from easyrtc_server.cluster.replica import Replica
from easyrtc_server.options import Options

SENDER, TARGET, OTHER = "x", "b", "c"
WAIT = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def relay(n: int) -> list[Any]:
    """A relay as the inbox carries it: ``[easyrtcid, event, body]``."""
    return ["bob", "easyrtcMsg", {"n": n}]


def numbers(items: list[list[Any]]) -> list[int]:
    return [item[2]["n"] for item in items]


@dataclass
class Sender:
    """Node x: its stamps, and what it sent, in order, on each path."""

    stamps: Stamps = field(default_factory=Stamps)
    made: list[tuple[str, int]] = field(default_factory=list)
    """("relay", n) to the target and ("entry", seq), in the order the sender made them."""
    log: list[LogEntry] = field(default_factory=list)
    inbox: list[tuple[int, list[Any], list[Any]]] = field(default_factory=list)
    """Messages to the target: (first index, afters, relays)."""
    _open: tuple[int, list[Any], list[Any]] | None = None

    def send_relay(self, n: int, to: str = TARGET) -> None:
        after = self.stamps.seq
        index = self.stamps.relay(to)
        if to != TARGET:
            return
        self.made.append(("relay", n))
        if self._open is None:
            self._open = (index, [], [])
        self._open[1].append(after)
        self._open[2].append(relay(n))

    def append(self) -> None:
        seq, counts = self.stamps.entry()
        entry = control(SENDER, 0, "create_app", [f"a{seq}"], {})
        entry.seq, entry.relays = seq, counts or None
        self.log.append(entry)
        self.made.append(("entry", seq))

    def publish(self) -> None:
        """End of a loop pass: the queued relays go out as one message."""
        if self._open is not None:
            self.inbox.append(self._open)
            self._open = None


@dataclass
class Target:
    """Node b: what it handed out, in order, by the rules the node follows."""

    arrivals: Arrivals
    seqs: dict[str, int] = field(default_factory=dict)
    out: list[tuple[str, int]] = field(default_factory=list)

    def message(self, first: int, afters: list[Any], items: list[Any]) -> None:
        ready = self.arrivals.arrived(SENDER, first, afters, items, self.seqs.get(SENDER, 0))
        self.out.extend(("relay", n) for n in numbers(ready))

    def can_apply(self, entry: LogEntry) -> bool:
        return not self.arrivals.missing(entry.node, entry.relays)

    def apply(self, entry: LogEntry) -> None:
        """What ``ClusterNode._apply`` does around an entry."""
        self.out.extend(("relay", n) for n in numbers(self.arrivals.release(SENDER, entry.seq - 1)))
        self.seqs[entry.node] = entry.seq
        self.out.append(("entry", entry.seq))
        self.out.extend(("relay", n) for n in numbers(self.arrivals.release(SENDER, entry.seq)))


def target(clock: Clock | None = None) -> Target:
    return Target(Arrivals(TARGET, WAIT, clock or Clock()))


steps = st.lists(st.sampled_from(["relay", "other", "entry", "publish"]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(steps, st.data())
def test_the_target_hands_out_relays_and_entries_in_the_order_the_sender_made_them(
    made: list[str], data: st.DataObject
) -> None:
    sender = Sender()
    for n, step in enumerate(made):
        if step == "relay":
            sender.send_relay(n)
        elif step == "other":  # a relay to another node: counted, never seen here
            sender.send_relay(n, to=OTHER)
        elif step == "entry":
            sender.append()
        else:
            sender.publish()
    sender.publish()
    b = target()
    log, inbox = list(sender.log), list(sender.inbox)
    while log or inbox:  # the network: any interleaving, each path in its own order
        choices = (["inbox"] if inbox else []) + (["log"] if log and b.can_apply(log[0]) else [])
        assert choices, "the reader waits for relays that are not on their way"
        if data.draw(st.sampled_from(choices)) == "inbox":
            b.message(*inbox.pop(0))
        else:
            b.apply(log.pop(0))
    assert b.out == sender.made
    assert b.arrivals.lates.relays == b.arrivals.lates.entries == 0
    assert b.arrivals.next_deadline() is None


def test_a_relay_before_a_room_leave_is_handed_out_first_though_the_log_came_first() -> None:
    sender = Sender()
    sender.send_relay(1)  # "bye"
    sender.append()  # roomLeave
    sender.publish()
    b = target()
    (leave,) = sender.log
    assert not b.can_apply(leave)  # the reader waits for the relay
    b.message(*sender.inbox[0])
    assert b.can_apply(leave)
    b.apply(leave)
    assert b.out == [("relay", 1), ("entry", 1)]


def test_a_relay_after_a_join_waits_for_the_join() -> None:
    sender = Sender()
    sender.append()  # roomJoin
    sender.send_relay(1)  # "hello"
    sender.publish()
    b = target()
    b.message(*sender.inbox[0])
    assert b.out == []  # held
    b.apply(sender.log[0])
    assert b.out == [("entry", 1), ("relay", 1)]


def test_a_relay_whose_entry_never_comes_goes_out_after_the_wait_counted() -> None:
    clock = Clock()
    b = target(clock)
    assert b.arrivals.arrived(SENDER, 0, [7], [relay(1)], applied=6) == []
    assert b.arrivals.next_deadline() == clock.now + WAIT
    clock.now += WAIT - 0.01
    assert b.arrivals.expired({}) == []
    clock.now += 0.01
    assert numbers(b.arrivals.expired({})) == [1]
    assert b.arrivals.lates.relays == 1
    assert b.arrivals.next_deadline() is None
    # the entry is given up on: the next relay after it is not held again
    assert numbers(b.arrivals.arrived(SENDER, 1, [7], [relay(2)], applied=6)) == [2]


def test_relays_held_behind_a_late_one_follow_it_when_they_wait_for_no_later_entry() -> None:
    clock = Clock()
    b = target(clock)
    b.arrivals.arrived(SENDER, 0, [7], [relay(1)], applied=6)
    clock.now += 1
    b.arrivals.arrived(SENDER, 1, [7, 8], [relay(2), relay(3)], applied=6)
    clock.now += WAIT - 1
    assert numbers(b.arrivals.expired({})) == [1, 2]  # 3 waits for entry 8
    assert b.arrivals.next_deadline() == clock.now + 1
    assert numbers(b.arrivals.release(SENDER, 8)) == [3]
    assert b.arrivals.lates.relays == 2


def test_relays_held_behind_a_late_one_follow_it_when_their_entries_were_applied() -> None:
    clock = Clock()
    b = target(clock)
    b.arrivals.arrived(SENDER, 0, [7], [relay(1)], applied=6)  # entry 7 was never written
    clock.now += 1
    b.arrivals.arrived(SENDER, 1, [8, 9], [relay(2), relay(3)], applied=6)  # held behind it
    clock.now += WAIT - 1
    assert numbers(b.arrivals.expired({SENDER: 8})) == [1, 2]  # entry 8 applied meanwhile
    assert b.arrivals.lates.relays == 1
    assert numbers(b.arrivals.release(SENDER, 9)) == [3]


def test_an_entry_whose_relays_were_lost_is_applied_after_the_wait_counted() -> None:
    b = target()
    counts = {TARGET: 3, OTHER: 9}
    assert b.arrivals.missing(SENDER, counts)
    b.arrivals.gave_up(SENDER, counts)
    assert not b.arrivals.missing(SENDER, counts)
    assert b.arrivals.lates.entries == 1
    assert not b.arrivals.missing(SENDER, {OTHER: 12})  # counts for other nodes: not ours


def test_a_gone_node_s_held_relays_go_out_before_its_end_and_nothing_of_it_stays() -> None:
    b = target()
    b.arrivals.arrived(SENDER, 0, [3, 4], [relay(1), relay(2)], applied=2)
    assert numbers(b.arrivals.forget(SENDER)) == [1, 2]
    assert b.arrivals.next_deadline() is None
    assert not b.arrivals.missing(SENDER, {TARGET: 0})
    assert b.arrivals.missing(SENDER, {TARGET: 1})  # a new count, from 0


def test_a_stopping_node_hands_out_every_held_relay() -> None:
    b = target()
    b.arrivals.arrived(SENDER, 0, [3, 4], [relay(1), relay(2)], applied=2)
    b.arrivals.arrived("y", 0, [9], [relay(3)], applied=0)
    assert sorted(numbers(b.arrivals.drain())) == [1, 2, 3]
    assert b.arrivals.next_deadline() is None
    assert b.arrivals.lates.relays == 0


def test_a_sender_whose_count_started_again_is_followed() -> None:
    b = target()
    b.arrivals.arrived(SENDER, 40, [0], [relay(1)], applied=0)
    b.arrivals.arrived(SENDER, 0, [0], [relay(2)], applied=0)  # it forgot this node (reaped)
    assert b.arrivals.missing(SENDER, {TARGET: 2})
    assert not b.arrivals.missing(SENDER, {TARGET: 1})


def test_relays_dropped_at_the_sender_count_and_junk_is_skipped_and_counted() -> None:
    b = target()
    afters: list[Any] = [DROPPED, 0, 0, "x", 0, 0]
    items: list[Any] = [[1, 2], ["bob", "e"], ["bob", "e", {}], relay(1), "extra"]
    ready = b.arrivals.arrived(SENDER, 0, afters, items, applied=0)
    assert ready == [["bob", "e", {}], relay(1)]  # a junk "after" counts as 0
    assert b.arrivals.unusable == 3  # DROPPED: counted by its sender
    assert not b.arrivals.missing(SENDER, {TARGET: 6})
    assert b.arrivals.missing(SENDER, {TARGET: 7})


def test_a_room_message_to_several_sockets_of_the_node_is_a_relay_like_any() -> None:
    """A fan-out row (its recipients' easyrtcids in a list, the body once) and a confirmation
    (``delivery``) are ordered as relays, not taken for junk."""
    b = target()
    fanout: list[Any] = [["bob", "carol"], "easyrtcMsg", {"msgData": "hi"}]
    confirmation: list[Any] = ["bob", None, 7]
    ready = b.arrivals.arrived(SENDER, 0, [0, 0], [fanout, confirmation], applied=0)
    assert ready == [fanout, confirmation]
    assert b.arrivals.unusable == 0


def test_an_entry_carries_only_the_counts_that_changed_unless_entries_were_lost() -> None:
    stamps = Stamps()
    assert stamps.entry() == (1, {})
    stamps.relay(TARGET)
    stamps.relay(TARGET)
    stamps.relay(OTHER)
    assert stamps.entry() == (2, {TARGET: 2, OTHER: 1})
    stamps.relay(OTHER)
    assert stamps.entry() == (3, {OTHER: 2})
    assert stamps.entry() == (4, {})
    stamps.lost()  # entries 3 and 4 may not be in the log
    assert stamps.entry() == (5, {TARGET: 2, OTHER: 2})
    stamps.relay(TARGET)
    stamps.dropped(TARGET, 3)  # nobody heard it: nothing to wait for
    assert stamps.entry() == (6, {})
    stamps.relay(TARGET)
    stamps.relay(TARGET)
    stamps.dropped(TARGET, 4)  # the 5th is on its way: its arrival tells the count
    assert stamps.entry() == (7, {TARGET: 5})
    stamps.forget(OTHER)
    assert stamps.relay(OTHER) == 0


def test_an_entry_s_relay_counts_survive_the_log_s_encoding() -> None:
    entry = control(SENDER, 5, "create_app", ["a"], {})
    entry.seq, entry.relays = 9, {TARGET: 4}
    back = LogEntry.decode(entry.encode())
    assert (back.seq, back.relays, back.body) == (9, {TARGET: 4}, entry.body)
    plain = LogEntry.decode(control(SENDER, 5, "create_app", ["a"], {}).encode())
    assert plain.relays is None
    assert (
        LogEntry.decode(b'{"k": "close", "n": "x", "t": 1, "s": 2, "r": 5, "p": "a"}').relays
        is None
    )


def test_each_node_s_last_sequence_survives_a_snapshot_and_ends_with_the_node() -> None:
    replica = Replica.new(Options(), TARGET)
    for seq in (1, 2, 5):
        entry = control(SENDER, 1, "create_app", [f"a{seq}"], {})
        entry.seq = seq
        replica.apply(entry)
    assert replica.seqs == {SENDER: 5}
    late = Replica.new(Options(), OTHER)
    snapshot.load(late, snapshot.dump(replica))
    assert late.seqs == {SENDER: 5}
    gone = node_gone(OTHER, 2, SENDER)
    gone.seq = 1
    late.apply(gone)
    assert late.seqs == {OTHER: 1}
