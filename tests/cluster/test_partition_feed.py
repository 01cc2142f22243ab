"""The fed partition reader's cursors (``partitionfeed.FeedCursors``), without Redis: a
partition is loaded only once its pushes are heard; pushes are applied in number order, none
twice, none skipped; a push that skips numbers, a lost subscription or a sweep that finds the
partition ahead make it read the stream after its last entry, and a stream trimmed past it
makes it load the snapshot again."""

from __future__ import annotations

import pytest

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.partitionfeed import FeedCursors, pushed_entries
from easyrtc_server.cluster.partitionlog import Entry, PartitionLayout, PartitionRead, Snapshot


def entry(seq: int) -> Entry:
    return Entry(f"{seq}-0", seq, f"fact {seq}".encode())


def entries(*seqs: int) -> list[Entry]:
    return [entry(seq) for seq in seqs]


def seqs(reads: list[PartitionRead]) -> list[int]:
    return [e.seq for read in reads for e in read.entries]


@pytest.fixture
def cursors() -> FeedCursors:
    return FeedCursors(PartitionLayout(ClusterKeys("feed"), 16, 4), count=3)


def loaded_at(cursors: FeedCursors, partition: int, seq: int) -> None:
    cursors.gain(partition)
    cursors.heard(partition)
    cursors.loaded(partition, Snapshot(f"{seq}-0", seq, b"{}"), [])
    cursors.ready()


def test_a_partition_is_loaded_once_its_pushes_are_heard(cursors: FeedCursors) -> None:
    cursors.gain(5)
    assert cursors.to_load() == []  # a load before the subscription could miss a fact
    cursors.heard(5)
    assert cursors.to_load() == [5]
    cursors.pushed(5, entries(3))  # appended after the load was sent: held
    cursors.loaded(5, Snapshot("1-0", 1, b"{}"), entries(2))
    (read,) = cursors.ready()
    assert read.reload is not None and read.reload.seq == 1 and not read.gap
    assert [e.seq for e in read.entries] == [2, 3]
    assert cursors.to_load() == [] and cursors.to_read() == []


def test_pushes_the_load_already_read_are_not_applied_twice(cursors: FeedCursors) -> None:
    cursors.gain(1)
    cursors.heard(1)
    cursors.pushed(1, entries(4, 5))
    cursors.loaded(1, Snapshot("3-0", 3, b"{}"), entries(4))
    assert seqs(cursors.ready()) == [4, 5]
    cursors.pushed(1, entries(5, 6))
    assert seqs(cursors.ready()) == [6]


def test_a_push_that_skips_numbers_reads_the_stream_and_then_the_held_pushes(
    cursors: FeedCursors,
) -> None:
    loaded_at(cursors, 2, 10)
    cursors.pushed(2, entries(11))
    assert seqs(cursors.ready()) == [11]
    cursors.pushed(2, entries(14))  # 12 and 13 never pushed (lost)
    assert cursors.ready() == []
    assert cursors.to_read() == [(2, "11-0")]
    cursors.pushed(2, entries(15))  # held while the stream is read
    cursors.read_on(2, "11-0", entries(12, 13))
    assert seqs(cursors.ready()) == [12, 13, 14, 15]
    assert cursors.to_read() == []


def test_a_full_read_of_the_stream_reads_on_before_the_held_pushes(cursors: FeedCursors) -> None:
    loaded_at(cursors, 2, 0)
    cursors.pushed(2, entries(6))
    cursors.read_on(2, "0-0", entries(1, 2, 3))  # count entries: maybe more
    assert seqs(cursors.ready()) == [1, 2, 3]
    assert cursors.to_read() == [(2, "3-0")]
    cursors.read_on(2, "3-0", entries(4, 5, 6))
    assert cursors.to_read() == [(2, "6-0")]
    cursors.read_on(2, "6-0", [])
    assert seqs(cursors.ready()) == [4, 5, 6] and cursors.to_read() == []


def test_a_stream_trimmed_past_the_reader_loads_the_snapshot_again(cursors: FeedCursors) -> None:
    loaded_at(cursors, 3, 4)
    cursors.missed(3)
    cursors.read_on(3, "4-0", entries(8, 9))  # 5 to 7 trimmed
    assert cursors.ready() == [] and cursors.to_load() == [3]
    cursors.loaded(3, Snapshot("9-0", 9, b"{}"), [])
    (read,) = cursors.ready()
    assert read.gap and read.reload is not None and read.reload.seq == 9


def test_a_lost_subscription_waits_to_be_heard_then_reads_on(cursors: FeedCursors) -> None:
    loaded_at(cursors, 4, 2)
    cursors.lost()
    cursors.pushed(4, entries(5))  # from before the loss, read late: held
    assert cursors.to_read() == []  # pushes after a read would be lost again
    cursors.heard(4)
    assert cursors.to_read() == [(4, "2-0")]
    cursors.read_on(4, "2-0", entries(3, 4))
    assert seqs(cursors.ready()) == [3, 4, 5]


def test_a_subscription_confirmed_anew_reads_on(cursors: FeedCursors) -> None:
    loaded_at(cursors, 4, 2)
    cursors.heard(4)  # redis-py reconnected and subscribed again by itself
    assert cursors.to_read() == [(4, "2-0")]


def test_a_sweep_that_finds_a_partition_ahead_reads_it_on(cursors: FeedCursors) -> None:
    loaded_at(cursors, 6, 7)
    loaded_at(cursors, 7, 7)
    cursors.ahead([(6, 7), (7, 9)])
    assert cursors.to_read() == [(7, "7-0")]


def test_a_read_that_no_longer_fits_is_ignored(cursors: FeedCursors) -> None:
    loaded_at(cursors, 8, 2)
    cursors.missed(8)
    cursors.drop(8)
    cursors.read_on(8, "2-0", entries(3))
    cursors.loaded(8, Snapshot("2-0", 2, b"{}"), [])
    cursors.pushed(8, entries(3))
    assert cursors.ready() == [] and cursors.interest == frozenset()
    loaded_at(cursors, 9, 2)
    cursors.missed(9)
    cursors.read_on(9, "1-0", entries(2))  # sent before the cursor moved
    assert cursors.ready() == [] and cursors.to_read() == [(9, "2-0")]


def test_a_reload_asked_for_loads_the_snapshot_as_after_a_gap(cursors: FeedCursors) -> None:
    loaded_at(cursors, 10, 5)
    cursors.reload(10)
    assert cursors.to_load() == [10]
    cursors.loaded(10, Snapshot("3-0", 3, b"{}"), entries(4))
    (read,) = cursors.ready()
    assert read.gap and read.reload is not None and [e.seq for e in read.entries] == [4]


def test_pushes_are_read_as_the_append_script_writes_them() -> None:
    facts = [b"plain", b"with spaces and 3 4 numbers", b"", b"\x00\xff binary"]
    data = b"".join(
        f"{i}-1 {i} {len(fact)} ".encode() + fact for i, fact in enumerate(facts, start=1)
    )
    assert pushed_entries(data) == [
        Entry(f"{i}-1", i, fact) for i, fact in enumerate(facts, start=1)
    ]
    with pytest.raises(ValueError):
        pushed_entries(b"1-1 1 10 short")
    with pytest.raises(ValueError):
        pushed_entries(b"1-1 x 1 a")
