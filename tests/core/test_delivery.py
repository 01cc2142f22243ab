"""Confirmed delivery to keyed clients (``delivery``): the origin's ledger and the client's
dedup, on an injected clock."""

from __future__ import annotations

from typing import Any

from easyrtc_server.protocol.delivery import (
    MAX_RETRANSMITS,
    RELEASED_KEPT,
    RETRANSMIT_MS,
    SEEN_WINDOW,
    STAMP,
    Ledger,
    Seen,
    stamp_of,
    wants_acks,
)


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000

    def __call__(self) -> int:
        return self.ms


def msg(n: int) -> dict[str, Any]:
    return {"msgType": "chat", "senderEasyrtcid": "S", "msgData": n}


def sent(ledger: Ledger, to: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a node does with a relay it sends to a confirming client: stamp and keep it."""
    stamped = ledger.stamp(to, body)
    ledger.keep(to, stamped[STAMP][1], "easyrtcMsg", stamped)
    return stamped


def test_messages_are_numbered_per_connection_and_the_original_is_untouched() -> None:
    ledger = Ledger("node-a", 100, 1 << 20, Clock())
    body = msg(0)  # a room message: one body for every member
    first, second = ledger.stamp("A", body), ledger.stamp("A", body)
    other = ledger.stamp("B", body)
    stamps = [first[STAMP], second[STAMP], other[STAMP]]
    assert stamps == [["node-a", 1], ["node-a", 2], ["node-a", 1]]
    assert STAMP not in body
    assert stamp_of(second) == ("node-a", 2)
    assert stamp_of(body) is None
    assert stamp_of({STAMP: ["x", "1"]}) is None  # a forged or broken stamp is no stamp
    assert stamp_of([1]) is None


def test_what_is_not_confirmed_is_sent_again_in_order_and_nothing_else() -> None:
    ledger = Ledger("o", 100, 1 << 20, Clock())
    bodies = [sent(ledger, "A", msg(n)) for n in range(4)]
    ledger.confirm("A", 1)
    ledger.confirm("A", 3)
    ledger.confirm("A", 3)  # twice: nothing more happens
    ledger.confirm("nobody", 1)
    assert ledger.pending("A") == [("easyrtcMsg", bodies[1]), ("easyrtcMsg", bodies[3])]
    assert ledger.pending("A") == [("easyrtcMsg", bodies[1]), ("easyrtcMsg", bodies[3])]
    ledger.confirm("A", 2)
    ledger.confirm("A", 4)
    assert ledger.pending("A") == []


def test_a_drop_takes_the_unconfirmed_for_the_hold_and_numbering_goes_on() -> None:
    ledger = Ledger("o", 100, 1 << 20, Clock())
    bodies = [sent(ledger, "A", msg(n)) for n in range(3)]
    ledger.confirm("A", 1)
    assert [body for _event, body in ledger.take("A")] == bodies[1:]
    assert ledger.take("A") == []
    assert ledger.stamp("A", msg(9))[STAMP] == ["o", 4]  # a client remembers 2 and 3: not 1 again


def test_a_connection_that_lives_on_elsewhere_keeps_its_numbering_forgotten_ones_do_not() -> None:
    """Released (handed over, out of the rooms this origin shares with it): nothing kept, and
    a later relay to it is numbered after what its client has seen; the oldest released past
    ``RELEASED_KEPT`` and one gone for good start again."""
    ledger = Ledger("o", 100, 1 << 20, Clock())
    for _ in range(3):
        sent(ledger, "A", msg(0))
    ledger.release("A")
    assert ledger.pending("A") == []
    assert ledger.stamp("A", msg(1))[STAMP] == ["o", 4]
    sent(ledger, "B", msg(0))
    ledger.forget("B")
    assert ledger.stamp("B", msg(1))[STAMP] == ["o", 1]
    ledger.release("A")
    for n in range(RELEASED_KEPT):
        sent(ledger, f"C{n}", msg(0))
        ledger.release(f"C{n}")
    assert ledger.stamp(f"C{RELEASED_KEPT - 1}", msg(2))[STAMP] == ["o", 2]
    assert ledger.stamp("A", msg(2))[STAMP] == ["o", 1]  # the oldest released: forgotten


def test_unconfirmed_messages_are_bounded_by_count_and_bytes_oldest_first() -> None:
    ledger = Ledger("o", 3, 1 << 20, Clock())
    for n in range(5):
        sent(ledger, "A", msg(n))
    assert [body["msgData"] for _e, body in ledger.pending("A")] == [2, 3, 4]
    assert ledger.counts.forgotten == 2
    small = Ledger("o", 100, 200, Clock())
    for n in range(5):
        sent(small, "A", {**msg(n), "pad": "x" * 60})
    kept = small.pending("A")
    assert 1 <= len(kept) <= 2
    assert kept[-1][1]["msgData"] == 4  # the newest is always kept
    assert small.out["A"].size <= 200


def test_messages_unconfirmed_for_the_retransmit_time_are_due_until_sent_again() -> None:
    clock = Clock()
    ledger = Ledger("o", 100, 1 << 20, clock)
    sent(ledger, "A", msg(0))
    clock.ms += RETRANSMIT_MS // 2
    sent(ledger, "B", msg(0))
    assert ledger.due() == []
    clock.ms += RETRANSMIT_MS // 2
    assert ledger.due() == ["A"]
    ledger.pending("A")  # sent again now
    assert ledger.due() == []
    clock.ms += RETRANSMIT_MS
    assert sorted(ledger.due()) == ["A", "B"]
    ledger.confirm("A", 1)
    ledger.forget("B")
    assert ledger.due() == []
    assert "B" not in ledger.out


def test_a_message_never_confirmed_is_retransmitted_a_few_times_then_forgotten() -> None:
    ledger = Ledger("o", 100, 1 << 20, Clock())
    body = sent(ledger, "A", msg(0))
    for _ in range(MAX_RETRANSMITS):
        assert ledger.pending("A", retransmit=True) == [("easyrtcMsg", body)]
    assert ledger.pending("A", retransmit=True) == []
    assert ledger.counts.forgotten == 1
    assert ledger.out["A"].size == 0
    sent(ledger, "A", msg(1))
    for _ in range(5):  # resumes are not counted
        assert len(ledger.pending("A")) == 1


def test_keeping_a_message_again_only_renews_its_time() -> None:
    clock = Clock()
    ledger = Ledger("o", 100, 1 << 20, clock)
    body = sent(ledger, "A", msg(0))
    size = ledger.out["A"].size
    clock.ms += RETRANSMIT_MS
    ledger.keep("A", 1, "easyrtcMsg", body)  # delivered again after a resume
    assert ledger.out["A"].size == size
    assert ledger.due() == []


def test_the_client_keeps_each_message_once_whatever_the_order() -> None:
    seen = Seen()
    arrivals = [("a", 1), ("a", 2), ("b", 1), ("a", 2), ("a", 4), ("a", 3), ("a", 4), ("a", 1)]
    assert [seen.first_time(s) for s in arrivals] == [
        True, True, True, False, True, True, False, False
    ]  # fmt: skip
    assert seen.last == {"a": 4, "b": 1}
    assert seen.above == {"a": set(), "b": set()}


def test_a_gap_that_never_fills_costs_the_client_bounded_memory() -> None:
    seen = Seen()
    assert seen.first_time(("a", 1))
    for n in range(3, 3 + SEEN_WINDOW + 10):  # 2 was forgotten by its origin
        assert seen.first_time(("a", n))
    assert len(seen.above["a"]) <= SEEN_WINDOW
    assert not seen.first_time(("a", 3))
    assert seen.last["a"] == 2 + SEEN_WINDOW + 10


def test_only_a_clear_yes_asks_for_acks() -> None:
    assert all(wants_acks(v) for v in (True, "1", "true", 1))
    assert not any(wants_acks(v) for v in (None, False, "0", "yes please", 2, [], {}))


def test_a_node_knows_the_copies_it_is_done_with_and_who_sends_them() -> None:
    """The target's node side (``partitioned``): a stamp taken once is known after (a second
    copy from an origin sending again is dropped), a noted origin is one to ask again."""
    seen = Seen()
    assert not seen.has(("b", 1))
    seen.note("c")
    assert seen.first_time(("b", 1))
    assert seen.has(("b", 1)) and not seen.has(("b", 2))
    assert not seen.first_time(("b", 1))
    assert seen.origins() == {"b", "c"}
