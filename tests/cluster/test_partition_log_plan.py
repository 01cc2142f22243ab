"""The partition logs' keys and read plan, without Redis: which keys a partition has on each
kind of Redis, how the read groups spread over a Redis Cluster's slots, and how a reader's
cursors decide what to read and notice a gap. ``test_partition_log_redis.py`` runs them on
real Redis and a real Redis Cluster."""

from __future__ import annotations

import pytest
from redis.cluster import key_slot

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.partitionlog import (
    Entry,
    PartitionLayout,
    PartitionRead,
    ReadCursors,
    Snapshot,
    StreamRead,
    entries_of,
    snapshot_of,
)


def test_on_one_redis_a_partitions_keys_are_untagged_and_read_together() -> None:
    layout = PartitionLayout(ClusterKeys("easyrtc"), partitions=128, groups=16)
    keys = layout.of(7)
    assert (keys.stream, keys.snapshot, keys.trimmed, keys.seq) == (
        "easyrtc:p7:log",
        "easyrtc:p7:snapshot",
        "easyrtc:p7:trimmed",
        "easyrtc:p7:seq",
    )
    cursors = ReadCursors(layout)
    for partition in (1, 2, 77):
        cursors.gain(partition)
        cursors.loaded(partition, Snapshot("0-0", 0, None), [])
    assert list(cursors.plan()) == [None]  # one XREAD for all of them


def test_on_a_redis_cluster_a_partitions_keys_share_its_groups_slot() -> None:
    layout = PartitionLayout(ClusterKeys("easyrtc", hash_tags=True), partitions=128, groups=16)
    for partition in (0, 5, 21, 127):
        keys = layout.of(partition)
        names = [keys.stream, keys.snapshot, keys.trimmed, keys.seq, keys.snapshot_lock]
        assert len({key_slot(name.encode()) for name in names}) == 1
        assert keys.tag is not None and keys.stream.startswith(keys.tag)
    assert layout.of(5).tag == layout.of(21).tag  # 5 and 21 are both in group 5
    assert layout.of(5).tag != layout.of(6).tag


@pytest.mark.parametrize("groups", [3, 16, 64, 128])
def test_the_groups_slots_are_evenly_spaced_so_contiguous_masters_share_them(groups: int) -> None:
    layout = PartitionLayout(ClusterKeys("some-cluster", hash_tags=True), 128, groups)
    slots = sorted({key_slot(layout.of(p).stream.encode()) for p in range(128)})
    assert len(slots) == groups
    for masters in range(2, 11):  # as redis-cli --cluster create deals the slots
        counts = [0] * masters
        for slot in slots:
            counts[slot * masters // 16384] += 1
        assert max(counts) - min(counts) <= 1, (masters, counts)


def test_a_layout_refuses_what_is_not_a_partition() -> None:
    layout = PartitionLayout(ClusterKeys("c"), partitions=8, groups=2)
    with pytest.raises(ValueError):
        layout.of(8)
    with pytest.raises(ValueError):
        PartitionLayout(ClusterKeys("c"), partitions=8, groups=9)


def entries(first_seq: int, *facts: bytes) -> list[Entry]:
    return [Entry(f"100-{first_seq + i}", first_seq + i, fact) for i, fact in enumerate(facts)]


def test_a_gained_partition_is_loaded_then_read_on_from_its_last_entry() -> None:
    layout = PartitionLayout(ClusterKeys("c", hash_tags=True), partitions=8, groups=2)
    cursors = ReadCursors(layout)
    cursors.gain(3)
    assert cursors.to_load() == [3]
    assert cursors.plan() == {}  # not read on before its snapshot is in
    snap = Snapshot("100-4", 4, b"state")
    assert cursors.loaded(3, snap, entries(5, b"e")) == PartitionRead(
        3, tuple(entries(5, b"e")), snap, gap=False
    )
    (reads,) = cursors.plan().values()
    assert reads == (StreamRead(3, layout.of(3).stream, "100-5"),)
    assert cursors.took(reads[0], entries(6, b"f", b"g")) == PartitionRead(
        3, tuple(entries(6, b"f", b"g"))
    )
    assert cursors.plan()[layout.of(3).tag][0].after == "100-7"


def test_a_number_that_does_not_follow_is_a_gap_and_the_partition_is_reloaded() -> None:
    cursors = ReadCursors(PartitionLayout(ClusterKeys("c"), partitions=8, groups=2))
    cursors.gain(1)
    cursors.loaded(1, Snapshot("0-0", 0, None), entries(1, b"a"))
    (read,) = cursors.plan()[None]
    assert cursors.took(read, entries(3, b"c")) is None  # entry 2 was trimmed unseen
    assert cursors.to_load() == [1] and cursors.plan() == {}
    loaded = cursors.loaded(1, Snapshot("100-9", 9, b"s"), [])
    assert loaded is not None and loaded.gap and loaded.reload == Snapshot("100-9", 9, b"s")


def test_a_read_started_before_a_drop_or_a_reload_is_not_given() -> None:
    cursors = ReadCursors(PartitionLayout(ClusterKeys("c"), partitions=8, groups=2))
    cursors.gain(1)
    cursors.loaded(1, Snapshot("0-0", 0, None), [])
    (stale,) = cursors.plan()[None]
    cursors.drop(1)
    assert cursors.took(stale, entries(1, b"a")) is None
    assert cursors.interest == frozenset()
    cursors.gain(1)
    assert cursors.loaded(1, Snapshot("100-1", 1, b"s"), []) is not None
    assert cursors.took(stale, entries(1, b"a")) is None  # read from before the reload
    cursors.drop(2)  # never gained: nothing happens
    assert cursors.loaded(2, Snapshot("0-0", 0, None), []) is None  # dropped while loading


def test_entries_are_read_as_xread_and_a_script_give_them() -> None:
    assert entries_of([(b"1-0", {b"s": b"1", b"f": b"x"})]) == [Entry("1-0", 1, b"x")]
    assert entries_of([[b"1-1", [b"s", b"2", b"f", b"y"]]]) == [Entry("1-1", 2, b"y")]
    assert entries_of([(b"1-2", {b"f": b"z"})]) == [Entry("1-2", -1, b"z")]  # never follows
    assert snapshot_of([None, None, None, []]) == (Snapshot("0-0", 0, None), [])
    assert snapshot_of([b"5-0", b"7", b"doc", [[b"6-0", [b"s", b"8", b"f", b"n"]]]]) == (
        Snapshot("5-0", 7, b"doc"),
        [Entry("6-0", 8, b"n")],
    )
