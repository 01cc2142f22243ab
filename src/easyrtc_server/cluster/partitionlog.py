"""The partition logs in Redis (issue 23): append facts, read the partitions of interest,
snapshot and trim them (driven by ``partitioned.PartitionedNode``).

Each of the cluster's N partitions is a log of its own (``keys.PartitionKeys``): a stream of
facts (``facts.encode``), each entry with the partition's next **sequence number** (``seq``,
given by the append script with ``INCR``), a snapshot (a hash: the state ``doc`` after entry
``id``, number ``seq``), the newest id a trim removed, and a snapshot lock. A reader knows the
number of the last entry it took, so the next one it reads must be that plus one: anything else
means entries it never saw were trimmed (or Redis lost them), and the partition is reloaded from
its snapshot. That is exact, needs no second read, and costs one short field per entry.

**Read groups.** Multi-key commands on a Redis Cluster need their keys in one slot
(``CROSSSLOT``), so one ``XREAD`` can only block on streams sharing a hash tag. The partitions are
dealt round-robin into G read groups (``PartitionLayout``, default 16), each group one hash tag,
the tags' slots evenly spaced over the slot range (``keys.group_tag``). A reader blocks with one
``XREAD`` per group holding partitions of interest, over just those streams: at most G blocked
connections, spread over the masters. One tag per partition would spread best but block on up
to N connections and wake with N calls; one tag for all would put every partition on one
master. G from a few times the masters up to N trades those; G = 16 spreads 3 masters 6/5/5
and 4 masters 4/4/4/4. On one Redis or Sentinel the keys are untagged and every partition of
interest is read by one ``XREAD`` (the keys say so: ``PartitionKeys.tag`` is None).

The sans-I/O part, ``ReadCursors``, decides what to read and checks what was read; the
drivers (``PartitionWriter``, ``PartitionReader``, ``PartitionSnapshots``) only talk to Redis
through the ``redisclient`` client, the same on every topology.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Protocol

from . import gaps
from .gaps import stream_id
from .keys import ClusterKeys, PartitionKeys
from .luascript import LuaScript
from .redisclient import REDIS_ERRORS, AsyncClient, text

PARTITIONS: Final = 128
"""Partitions of a cluster (fixed for its life: a room never moves between partitions)."""
GROUPS: Final = 16
"""Read groups (hash tags) the partitions are dealt into (fixed like N: it names the keys)."""
READ_COUNT: Final = 512
"""Entries read per partition per ``XREAD`` (and per load)."""
READ_BLOCK_MS: Final = 1000
"""How long one ``XREAD`` blocks: below the 5 s redis-py's clients wait for a reply."""
SEQ: Final = b"s"
"""The field of an entry holding its sequence number."""
FACT: Final = b"f"
"""The field of an entry holding the fact (``facts.encode``)."""

APPEND: Final = """
local n = #ARGV - 1
local seq = redis.call('INCRBY', KEYS[2], n) - n
local out = {}
for i = 1, n do
  seq = seq + 1
  out[i] = {redis.call('XADD', KEYS[1], '*', 's', seq, 'f', ARGV[i + 1]), seq}
end
return out
"""
"""KEYS: stream, sequence; ARGV: the partition's feed channel (``partitionfeed``'s script
publishes on it; not this one), the facts. Appends them in order, each with the next number;
returns ``[id, seq]`` of each."""

LOAD: Final = """
local snap = redis.call('HMGET', KEYS[1], 'id', 'seq', 'doc')
local from = snap[1] or '0-0'
local entries = redis.call('XRANGE', KEYS[2], '(' .. from, '+', 'COUNT', ARGV[1])
return {snap[1], snap[2], snap[3], entries}
"""
"""KEYS: snapshot, stream; ARGV: how many entries. The snapshot (id, seq, doc; nil when there
is none) and the entries after it, in one step (nothing can be trimmed in between)."""

WRITE_SNAPSHOT: Final = (
    gaps.TRIM_BEFORE
    + """
if tonumber(redis.call('GET', KEYS[4]) or '0') < tonumber(ARGV[2]) then return 0 end
local old = redis.call('HGET', KEYS[1], 'id')
if old and not older(old, ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'seq', ARGV[2], 'doc', ARGV[3])
if old then trim_before(KEYS[2], KEYS[3], old, ARGV[4]) end
return 1
"""
)
"""KEYS: snapshot, stream, trimmed mark, sequence counter; ARGV: id, seq, doc, retention ms.
Writes the snapshot unless one as new is there, or the partition has not numbered that many
facts (a reader's view from before Redis came back empty: its members would come back as
ghosts) (1 if written), and trims the stream to the snapshot before, or to
``retention`` ms ago by Redis's clock if that is older, recording the newest id trimmed (as
``node``'s snapshot of the single log does)."""


# -- sans I/O ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionLayout:
    """Which keys hold partition ``p``, and which read group it is in."""

    keys: ClusterKeys
    partitions: int = PARTITIONS
    groups: int = GROUPS

    def __post_init__(self) -> None:
        if not 0 < self.groups <= self.partitions:
            raise ValueError("a partition layout needs 1 to N read groups")

    def group_of(self, partition: int) -> int:
        """Round-robin: neighbouring partitions land in different groups, so on masters."""
        return partition % self.groups

    def room_partition(self, app: str, room: str) -> int:
        """The partition holding room ``room`` of application ``app``: a hash of both, so an
        application's rooms spread over every partition."""
        return zlib.crc32(f"{app}\0{room}".encode()) % self.partitions

    def partition_of_stream(self, stream: str) -> int | None:
        """The partition whose stream is named ``stream`` (None: none of this layout's)."""
        return _streams_of(self).get(stream)

    def of(self, partition: int) -> PartitionKeys:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"no partition {partition} of {self.partitions}")
        return _keys_of(self, partition)


@cache
def _streams_of(layout: PartitionLayout) -> dict[str, int]:
    """Stream name -> partition, named once per process."""
    return {layout.of(p).stream: p for p in range(layout.partitions)}


@cache
def _keys_of(layout: PartitionLayout, partition: int) -> PartitionKeys:
    """Named once per process (every append and read names them)."""
    return layout.keys.partition(partition, layout.group_of(partition), layout.groups)


@dataclass(frozen=True, slots=True)
class Entry:
    """One fact of a partition as read: its stream id, sequence number and bytes."""

    id: str
    seq: int
    fact: bytes


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A partition's state after its entry ``id`` (number ``seq``); ``doc`` None: no snapshot
    was written yet, the state is the empty one."""

    id: str
    seq: int
    doc: bytes | None


@dataclass(frozen=True, slots=True)
class PartitionRead:
    """What a read gives of one partition: when ``reload`` is there, the caller replaces the
    partition's state with it first (interest just gained, or, with ``gap``, entries were
    trimmed before this reader took them); then it applies ``entries`` in order."""

    partition: int
    entries: tuple[Entry, ...]
    reload: Snapshot | None = None
    gap: bool = False


@dataclass(frozen=True, slots=True)
class StreamRead:
    """One stream of a planned ``XREAD``: partition, key, and the id read after."""

    partition: int
    stream: str
    after: str


class GroupRead:
    """One hash tag's ``XREAD``: its streams and the id each is read after, as two lists an
    ``XREAD`` takes whole (``STREAMS k1 k2 … id1 id2 …``). ``added`` counts the streams added:
    a blocked read of an older count misses one and is sent again; a stream removed only
    leaves its entries unread (``took`` ignores them)."""

    __slots__ = ("added", "ids", "index", "keys")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.added = 0

    def add(self, stream: str, after: str) -> None:
        at = self.index.get(stream)
        if at is not None:
            self.ids[at] = after
            return
        self.index = {**self.index, stream: len(self.keys)}  # a read in flight keeps its own
        self.keys = [*self.keys, stream]
        self.ids = [*self.ids, after]
        self.added += 1

    def remove(self, stream: str) -> None:
        at = self.index.get(stream)
        if at is None:
            return
        keys = self.keys[:at] + self.keys[at + 1 :]
        self.ids = self.ids[:at] + self.ids[at + 1 :]
        self.keys = keys
        self.index = {key: i for i, key in enumerate(keys)}

    def moved(self, stream: str, after: str) -> None:
        at = self.index.get(stream)
        if at is not None:
            self.ids[at] = after


@dataclass(slots=True)
class ReadCursors:
    """Where a reader is in each partition of interest, and what it reads next.

    A partition gained (or found with a gap) is *to load*: its snapshot and what follows it are
    read (``LOAD``), then it is read on from its last entry. ``plan`` groups the partitions
    read on by their keys' hash tag: one ``XREAD`` each. ``took`` checks a read's entries
    against the cursor: a read started before the partition was dropped or reloaded is
    ignored; a first number that does not follow the cursor's is a gap."""

    layout: PartitionLayout
    _at: dict[int, tuple[str, int]] = field(default_factory=dict)
    _to_load: dict[int, bool] = field(default_factory=dict)
    """partition -> whether it is reloaded because of a gap."""
    _groups: dict[str | None, GroupRead] = field(default_factory=dict)
    """Per hash tag, the ``XREAD`` of its partitions read on, kept as they move
    (``group``): a reader's wake costs what it read, not what it reads from."""

    @property
    def interest(self) -> frozenset[int]:
        return frozenset(self._at) | frozenset(self._to_load)

    def gain(self, partition: int) -> None:
        self.layout.of(partition)  # refuses a partition that is not one
        if partition not in self._at:
            self._to_load.setdefault(partition, False)

    def drop(self, partition: int) -> None:
        if self._at.pop(partition, None) is not None:
            self._leave_group(partition)
        self._to_load.pop(partition, None)

    def reload(self, partition: int) -> None:
        """Read ``partition`` again from its snapshot, as after a gap (Redis came back
        empty: what was read of it is no longer there)."""
        if self._at.pop(partition, None) is not None:
            self._leave_group(partition)
            self._to_load[partition] = True

    def groups(self) -> list[str | None]:
        """The hash tags with partitions read on (one ``XREAD`` each)."""
        return [tag for tag, group in self._groups.items() if group.keys]

    def group(self, tag: str | None) -> GroupRead:
        return self._groups[tag]

    def took_stream(
        self, stream: str, after: str, entries: Sequence[Entry]
    ) -> PartitionRead | None:
        """``took`` for the entries of ``stream`` an ``XREAD`` sent with ``after`` returned."""
        partition = self.layout.partition_of_stream(stream)
        if partition is None:
            return None
        return self.took(StreamRead(partition, stream, after), entries)

    def _join_group(self, partition: int) -> None:
        keys = self.layout.of(partition)
        group = self._groups.get(keys.tag)
        if group is None:
            group = self._groups[keys.tag] = GroupRead()
        group.add(keys.stream, self._at[partition][0])

    def _leave_group(self, partition: int) -> None:
        keys = self.layout.of(partition)
        group = self._groups.get(keys.tag)
        if group is not None:
            group.remove(keys.stream)

    def to_load(self) -> list[int]:
        return sorted(self._to_load)

    def loaded(
        self, partition: int, snap: Snapshot, entries: Sequence[Entry]
    ) -> PartitionRead | None:
        """``LOAD``'s answer for a partition of ``to_load`` (None if it was dropped
        meanwhile). Read in one step, the entries follow the snapshot: their numbers are taken
        as they are."""
        gap = self._to_load.pop(partition, None)
        if gap is None:
            return None
        last = entries[-1] if entries else snap
        self._at[partition] = (last.id, last.seq)
        self._join_group(partition)
        return PartitionRead(partition, tuple(entries), snap, gap)

    def plan(self) -> dict[str | None, tuple[StreamRead, ...]]:
        """The ``XREAD``s to block on: per hash tag, the streams of interest and where."""
        out: dict[str | None, list[StreamRead]] = {}
        for partition in sorted(self._at):
            keys = self.layout.of(partition)
            at, _seq = self._at[partition]
            out.setdefault(keys.tag, []).append(StreamRead(partition, keys.stream, at))
        return {tag: tuple(reads) for tag, reads in out.items()}

    def took(self, read: StreamRead, entries: Sequence[Entry]) -> PartitionRead | None:
        """Entries an ``XREAD`` of ``read`` returned: the partition's read, or None when they
        are not to be applied (dropped, reloaded since, or a gap: then it is to load)."""
        cursor = self._at.get(read.partition)
        if cursor is None or cursor[0] != read.after or not entries:
            return None
        seq = cursor[1]
        for entry in entries:
            if entry.seq != seq + 1:
                del self._at[read.partition]
                self._leave_group(read.partition)
                self._to_load[read.partition] = True
                return None
            seq = entry.seq
        last = entries[-1].id
        self._at[read.partition] = (last, seq)
        group = self._groups.get(self.layout.of(read.partition).tag)
        if group is not None:
            group.moved(read.stream, last)
        return PartitionRead(read.partition, tuple(entries))


def _number(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return -1  # never follows a cursor: read as a gap


def entries_of(items: Iterable[Any]) -> list[Entry]:
    """Stream entries as ``XREAD``/``XRANGE`` give them (fields as a dict, or flat from a
    script) read as ``Entry``s."""
    out = []
    for entry_id, fields in items:
        if not isinstance(fields, Mapping):
            flat = list(fields or ())
            fields = dict(zip(flat[::2], flat[1::2], strict=False))
        fact = fields.get(FACT)
        seq = _number(fields.get(SEQ))
        out.append(Entry(text(entry_id), seq, fact if isinstance(fact, bytes) else b""))
    return out


def snapshot_of(reply: Sequence[Any]) -> tuple[Snapshot, list[Entry]]:
    """``LOAD``'s reply: the snapshot (the empty one if none) and the entries after it."""
    snap_id, seq, doc, items = reply
    if snap_id is None:
        snap = Snapshot("0-0", 0, None)
    else:
        snap = Snapshot(text(snap_id), _number(seq), doc if isinstance(doc, bytes) else None)
    return snap, entries_of(items or ())


# -- I/O ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an append landed: its partition, stream id and sequence number."""

    partition: int
    id: str
    seq: int


class PartitionWriter:
    """Appends facts. Everything appended in one event-loop pass goes in one pipeline, one
    ``APPEND`` call per partition with that partition's facts in the order appended; a pass is
    written once the one before is answered, so a partition's facts land in the order they
    were appended. Appends to different partitions have no order between them: a caller
    needing one awaits each append before the next (``reservations``)."""

    def __init__(self, client: AsyncClient, layout: PartitionLayout, script: str = APPEND) -> None:
        self.layout = layout
        self._append = LuaScript(client, script)
        """``APPEND``, or the one the partitions' reader needs (``PartitionSource``)."""
        self._queue: list[tuple[int, bytes, asyncio.Future[Appended]]] = []
        self._due = asyncio.Event()

    async def append(self, partition: int, fact: bytes) -> Appended:
        """Append ``fact`` to ``partition``: its id and number once Redis took it. Raises what
        Redis answered (``redisclient.REDIS_ERRORS``): then it may or may not be written."""
        return await self.post(partition, fact)

    def post(self, partition: int, fact: bytes) -> asyncio.Future[Appended]:
        """``append`` queued now, in the caller's step: facts posted one after the other land
        in that order in their partition, without awaiting each."""
        self.layout.of(partition)
        written: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._queue.append((partition, fact, written))
        self._due.set()
        return written

    async def run(self) -> None:
        """The writer's loop (the owner runs it as a task and cancels it)."""
        while True:
            await self._due.wait()
            await asyncio.sleep(0)  # one more loop pass: appends made in it join the batch
            self._due.clear()
            batch, self._queue = self._queue, []
            await self._write(batch)

    async def _write(self, batch: list[tuple[int, bytes, asyncio.Future[Appended]]]) -> None:
        by_partition: dict[int, list[tuple[bytes, asyncio.Future[Appended]]]] = {}
        for partition, fact, written in batch:
            by_partition.setdefault(partition, []).append((fact, written))
        calls = []
        for partition, items in by_partition.items():
            keys = self.layout.of(partition)
            calls.append(([keys.stream, keys.seq], [keys.feed, *(fact for fact, _ in items)]))
        try:
            replies = await self._append.run_all(calls)
        except Exception as exc:  # the whole pipeline failed (connection, slot map)
            replies = [exc] * len(calls)
        for (partition, items), reply in zip(by_partition.items(), replies, strict=True):
            for i, (_fact, written) in enumerate(items):
                if written.done():  # its caller gave up waiting
                    continue
                if isinstance(reply, BaseException):
                    written.set_exception(reply)
                else:
                    entry_id, seq = reply[i]
                    written.set_result(Appended(partition, text(entry_id), int(seq)))


REPLAN_GRACE: Final = 0.01
"""Seconds a group's blocked read that misses a partition just gained may go on before it is
cancelled and sent again: in a storm of logins into new rooms it ends by itself meanwhile
(cancelling costs a reconnection: redis-py drops a connection cancelled mid-command); at a
quiet time the gain waits this long more."""


@dataclass(frozen=True, slots=True)
class _Sent:
    """What a group's ``XREAD`` in flight was sent with."""

    added: int
    keys: list[str]
    ids: list[str]
    index: dict[str, int]


class PartitionSource(Protocol):
    """How a node reads the partitions of interest: blocked on their streams
    (``PartitionReader``, a Redis Cluster), or from what their appends publish
    (``partitionfeed.PartitionFeed``, one Redis or Sentinel)."""

    @property
    def append_script(self) -> str:
        """The append script the writers must run for this reader to hear them."""
        ...

    @property
    def interest(self) -> frozenset[int]: ...

    def gain(self, partition: int) -> None:
        """The next ``read``s give the partition's snapshot (``PartitionRead.reload``) and the
        entries after it; from then on its new entries."""
        ...

    def drop(self, partition: int) -> None: ...

    def reload(self, partition: int) -> None:
        """Read ``partition`` again from its snapshot (Redis may have lost what was read)."""
        ...

    async def read(self) -> list[PartitionRead]:
        """What the partitions of interest have next, per partition in order (empty after a
        while without any). Raises what Redis answered when nothing could be read."""
        ...

    async def aclose(self) -> None: ...


class PartitionReader:
    """Reads the partitions of interest. ``gain(p)``: the next ``read`` gives the partition's
    snapshot (``PartitionRead.reload``) and the entries after it; from then on its new
    entries. ``drop(p)``: no more of it. ``read`` blocks (one ``XREAD BLOCK`` per read group
    with interest, each on a connection of its own) until some partition of interest has
    entries, or ``block_ms`` passed (then it returns nothing); a change of interest wakes it.

    A group's blocked ``XREAD`` that must also cover a partition just gained (or reloaded) is
    cancelled and sent again: redis-py drops a connection cancelled in the middle of a command,
    so that costs a reconnection per gain, and a node gains at most N partitions at a time.
    A drop leaves a group's read to end by itself; what it brings of the dropped partition is
    not given."""

    append_script: Final = APPEND

    def __init__(
        self,
        client: AsyncClient,
        layout: PartitionLayout,
        *,
        count: int = READ_COUNT,
        block_ms: int = READ_BLOCK_MS,
    ) -> None:
        self.client = client
        self.cursors = ReadCursors(layout)
        self.count = count
        self.block_ms = block_ms
        self._load = LuaScript(client, LOAD)
        self._reads: dict[str | None, tuple[asyncio.Future[Any], _Sent]] = {}
        self._stale: dict[str | None, float] = {}
        """Groups whose read in flight misses a partition gained, since when (loop time)."""
        self._changed = asyncio.Event()

    @property
    def interest(self) -> frozenset[int]:
        return self.cursors.interest

    def gain(self, partition: int) -> None:
        self.cursors.gain(partition)
        self._changed.set()

    def drop(self, partition: int) -> None:
        self.cursors.drop(partition)
        self._changed.set()

    def reload(self, partition: int) -> None:
        self.cursors.reload(partition)
        self._changed.set()

    async def read(self) -> list[PartitionRead]:
        """What the partitions of interest have next, per partition in order (empty after
        ``block_ms`` without any, or when the interest changed). Raises what Redis answered
        when nothing could be read (the caller retries after a pause)."""
        if self.cursors.to_load():
            return await self._load_due()
        self._changed.clear()
        await self._start_reads()
        if not self._reads:
            try:
                async with asyncio.timeout(self.block_ms / 1000):
                    await self._changed.wait()
            except TimeoutError:
                pass
            return await self._load_due()
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait(
                [changed, *(task for task, _ in self._reads.values())],
                timeout=REPLAN_GRACE if self._stale else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            changed.cancel()
        out: list[PartitionRead] = []
        error: BaseException | None = None
        for tag, (task, reads) in list(self._reads.items()):
            if not task.done():
                continue
            del self._reads[tag]
            self._stale.pop(tag, None)
            if task.exception() is not None:
                error = task.exception()
                continue
            out.extend(self._take(reads, task.result()))  # reads: what it was sent with
        try:
            out.extend(await self._load_due())
        except REDIS_ERRORS as exc:  # the loads stay due; what was taken must be given
            error = exc
        if not out and error is not None:
            raise error
        return out

    async def aclose(self) -> None:
        """Stop the blocked reads."""
        tasks = [task for task, _ in self._reads.values()]
        self._reads.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _start_reads(self) -> None:
        cursors = self.cursors
        tags = cursors.groups()
        now = asyncio.get_running_loop().time()
        for tag, (task, sent) in list(self._reads.items()):
            if tag in tags and cursors.group(tag).added == sent.added:
                self._stale.pop(tag, None)
                continue
            since = self._stale.setdefault(tag, now)
            if tag in tags and now - since < REPLAN_GRACE:
                continue  # one gained: a busy group's read ends by itself in a moment
            self._stale.pop(tag, None)
            del self._reads[tag]
            task.cancel()  # redis-py drops the connection: one reconnection
            await asyncio.wait([task])
        for tag in tags:
            if tag not in self._reads:
                group = cursors.group(tag)
                sent = _Sent(group.added, group.keys, list(group.ids), group.index)
                self._reads[tag] = (asyncio.ensure_future(self._xread(sent)), sent)

    async def _xread(self, sent: _Sent) -> Any:
        """One ``XREAD`` of a group's streams, sent as the lists it keeps (no per-stream work
        in Python: a reader of hundreds of partitions wakes for what it read)."""
        return await self.client.execute_command(
            "XREAD",
            "COUNT",
            self.count,
            "BLOCK",
            self.block_ms,
            "STREAMS",
            *sent.keys,
            *sent.ids,
            keys=sent.keys,
        )

    def _take(self, sent: _Sent, reply: Any) -> list[PartitionRead]:
        out = []
        items = reply.items() if isinstance(reply, dict) else reply or ()
        for stream, entries in items:
            name = text(stream)
            at = sent.index.get(name)
            if at is None:
                continue
            taken = self.cursors.took_stream(name, sent.ids[at], entries_of(entries))
            if taken is not None:
                out.append(taken)
        return out

    async def _load_due(self) -> list[PartitionRead]:
        """Load every partition waiting for its snapshot, in one pipeline."""
        loaded, error = await load_snapshots(
            self._load, self.cursors.layout, self.cursors.to_load(), self.count
        )
        out = []
        for partition, snap, entries in loaded:
            taken = self.cursors.loaded(partition, snap, entries)
            if taken is not None:
                out.append(taken)
        if not out and error is not None:
            raise error
        return out


async def load_snapshots(
    script: LuaScript, layout: PartitionLayout, partitions: Sequence[int], count: int
) -> tuple[list[tuple[int, Snapshot, list[Entry]]], BaseException | None]:
    """``LOAD`` of each of ``partitions`` (at most ``count`` entries after the snapshot), in
    one pipeline: what was loaded, and an error one of them failed with (the others are
    loaded all the same)."""
    if not partitions:
        return [], None
    calls = []
    for partition in partitions:
        keys = layout.of(partition)
        calls.append(([keys.snapshot, keys.stream], [count]))
    replies = await script.run_all(calls)
    out = []
    error: BaseException | None = None
    for partition, reply in zip(partitions, replies, strict=True):
        if isinstance(reply, BaseException):
            error = reply
            continue
        snap, entries = snapshot_of(reply)
        out.append((partition, snap, entries))
    return out, error


class PartitionSnapshots:
    """Writes partitions' snapshots and trims their streams (``WRITE_SNAPSHOT``)."""

    def __init__(self, client: AsyncClient, layout: PartitionLayout) -> None:
        self.client = client
        self.layout = layout
        self._write = LuaScript(client, WRITE_SNAPSHOT)

    async def claim(self, partition: int, node_id: str, ms: int) -> bool:
        """Whether this node writes the partition's next snapshot: at most one per ``ms``
        (every reader of a partition would write the same)."""
        keys = self.layout.of(partition)
        return bool(await self.client.set(keys.snapshot_lock, node_id, nx=True, px=ms))

    async def write(self, partition: int, snap: Snapshot, *, retention_ms: int) -> bool:
        """Write ``snap`` (its ``doc`` the partition's state after entry ``id``, number ``seq``)
        unless one as new is there; trim the stream to the snapshot before it, keeping
        ``retention_ms`` of entries at least. True if written."""
        keys = self.layout.of(partition)
        written = await self._write.run(
            [keys.snapshot, keys.stream, keys.trimmed, keys.seq],
            [snap.id, snap.seq, snap.doc or b"", retention_ms],
        )
        return bool(written)

    async def trimmed(self, partition: int) -> tuple[int, int]:
        """The newest stream id a trim removed from the partition, as a pair (``gaps``)."""
        raw = await self.client.get(self.layout.of(partition).trimmed)
        return stream_id(raw) if raw is not None else (0, 0)
