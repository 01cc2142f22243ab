"""Partition facts pushed to their readers over pub/sub, on one Redis or Sentinel's master.

A reader blocked on one ``XREAD`` of every partition it reads (``partitionlog.PartitionReader``)
pays for all of them at every wake: Redis looks at each stream named and the reader sends every
name and id again. A node of a cluster whose clients are placed at random reads most of the
partitions, and a storm wakes it thousands of times. Here the append script also ``PUBLISH``es
what it appended on the partition's channel (``PartitionKeys.feed``), to the nodes subscribed to
it: those reading the partition. A node hears each fact of its partitions once, as the stream
holds it (id, number, bytes), without asking; Redis's work per fact is one message per node with
interest, and nothing for the partitions that were quiet.

The stream stays the record. A push is applied when its number follows the partition's last
one; one that skips numbers (a push lost: the pub/sub connection broke, or a node of before
appended without publishing) makes the reader read the stream after its last entry
(``XRANGE``), and a stream that no longer has the entries following it makes it load the
snapshot, as the blocking reader does. A partition gained is loaded only once its subscription
is confirmed, so every fact after what the load saw is pushed; pushes that arrive while it is
loaded or read are held and applied after it, those already read dropped. Every
``SWEEP_EVERY`` seconds the reader reads the partitions' numbers (one ``MGET``) and reads on in
those ahead of it: a push lost without a broken connection costs at most that long.

Plain ``PUBLISH`` on a Redis Cluster crosses the bus to every node of it: there the blocking
reader stays (``redisclient.ClusterTopology``; sharded pub/sub, with subscriptions following
their slots, is not built yet).

``FeedCursors`` is the sans-I/O part: what each partition waits for, and what is applied.
``PartitionFeed`` is its driver, with the same face as ``PartitionReader``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from .luascript import LuaScript
from .partitionlog import LOAD as LOAD_SCRIPT
from .partitionlog import (
    READ_BLOCK_MS,
    READ_COUNT,
    Entry,
    PartitionLayout,
    PartitionRead,
    Snapshot,
    entries_of,
    load_snapshots,
)
from .redisclient import REDIS_ERRORS, text

SWEEP_EVERY: Final = 1.0
"""Seconds between two readings of the partitions' numbers (``MGET``): what a push lost
without a broken connection costs at most (and how a node hears one of before, which does not
publish)."""

PUBLISHING_APPEND: Final = """
local n = #ARGV - 1
local seq = redis.call('INCRBY', KEYS[2], n) - n
local out = {}
local pushed = {}
for i = 1, n do
  seq = seq + 1
  local fact = ARGV[i + 1]
  local id = redis.call('XADD', KEYS[1], '*', 's', seq, 'f', fact)
  out[i] = {id, seq}
  pushed[i] = id .. ' ' .. seq .. ' ' .. #fact .. ' ' .. fact
end
redis.call('PUBLISH', ARGV[1], table.concat(pushed))
return out
"""
"""``partitionlog.APPEND`` that also publishes what it appended on the channel ``ARGV[1]``, one
message for the batch: per fact ``ID SEQ LENGTH FACT`` (``pushed_entries``)."""


def pushed_entries(data: bytes) -> list[Entry]:
    """A push's entries (``PUBLISHING_APPEND``). ``ValueError`` if it is not one."""
    out = []
    at, end = 0, len(data)
    while at < end:
        space = data.index(b" ", at)
        entry_id = data[at:space].decode()
        after = data.index(b" ", space + 1)
        seq = int(data[space + 1 : after])
        length_end = data.index(b" ", after + 1)
        length = int(data[after + 1 : length_end])
        fact = data[length_end + 1 : length_end + 1 + length]
        if len(fact) != length:
            raise ValueError("a push ends inside a fact")
        out.append(Entry(entry_id, seq, fact))
        at = length_end + 1 + length
    return out


@cache
def _channels_of(layout: PartitionLayout) -> dict[str, int]:
    """Channel name -> partition, named once per process."""
    return {layout.of(p).feed: p for p in range(layout.partitions)}


def partition_of_channel(layout: PartitionLayout, channel: str) -> int | None:
    return _channels_of(layout).get(channel)


# -- sans I/O ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Partition:
    """What a reader has of one partition it reads."""

    at: tuple[str, int] | None = None
    """The id and number of the last entry applied (None: not loaded yet)."""
    heard: bool = False
    """Its subscription is confirmed: every fact appended from now on is pushed."""
    gap: bool = False
    """Loaded again because its stream lost entries this reader never took."""
    behind: bool = False
    """Pushes may be missing: the stream is read after ``at``."""
    held: list[Entry] = field(default_factory=list)
    """Pushes not applied yet (loading, or read after a gap), in order."""


@dataclass(slots=True)
class FeedCursors:
    """Where a reader is in each partition it reads, and what it asks Redis next.

    A partition gained waits for its subscription (``heard``), then for its load (``to_load``,
    ``loaded``). A push (``pushed``) that follows the last number is applied; one that skips
    numbers puts the partition *behind*: its stream is read after the last entry
    (``to_read``, ``read_on``), the pushes held meanwhile applied after what that read. A
    subscription lost (``lost``) is waited for again, and then the partition is read on."""

    layout: PartitionLayout
    count: int = READ_COUNT
    _parts: dict[int, _Partition] = field(default_factory=dict)
    _ready: list[PartitionRead] = field(default_factory=list)

    @property
    def interest(self) -> frozenset[int]:
        return frozenset(self._parts)

    def gain(self, partition: int) -> None:
        self.layout.of(partition)  # refuses a partition that is not one
        self._parts.setdefault(partition, _Partition())

    def drop(self, partition: int) -> None:
        self._parts.pop(partition, None)

    def reload(self, partition: int) -> None:
        """Load ``partition`` again from its snapshot, as after a gap."""
        part = self._parts.get(partition)
        if part is not None and part.at is not None:
            part.at, part.gap, part.behind = None, True, False

    def heard(self, partition: int) -> None:
        """Its subscription is confirmed (again: then pushes may have been lost before)."""
        part = self._parts.get(partition)
        if part is None:
            return
        if part.heard and part.at is not None:
            part.behind = True  # confirmed anew (redis-py reconnected): read what was missed
        part.heard = True

    def lost(self) -> None:
        """The subscriptions are gone (the connection broke): every partition waits for its
        subscription again, and is then read after its last entry."""
        for part in self._parts.values():
            part.heard = False
            if part.at is not None:
                part.behind = True

    def pushed(self, partition: int, entries: Sequence[Entry]) -> None:
        part = self._parts.get(partition)
        if part is None or not entries:
            return
        if part.at is None or part.behind:
            part.held.extend(entries)
            return
        self._apply(partition, part, (), entries)

    def to_load(self) -> list[int]:
        """Partitions to load (``partitionlog.LOAD``): heard, and not loaded."""
        return sorted(p for p, part in self._parts.items() if part.heard and part.at is None)

    def loaded(self, partition: int, snap: Snapshot, entries: Sequence[Entry]) -> None:
        """``LOAD``'s answer for ``partition`` (ignored if it is no longer to load)."""
        part = self._parts.get(partition)
        if part is None or part.at is not None or not part.heard:
            return
        part.at = (snap.id, snap.seq)
        gap, part.gap = part.gap, False
        self._apply(partition, part, entries, (), reload=snap, gap=gap)

    def to_read(self) -> list[tuple[int, str]]:
        """Partitions behind, heard, and the id to read their stream after."""
        return sorted(
            (p, part.at[0])
            for p, part in self._parts.items()
            if part.behind and part.heard and part.at is not None
        )

    def read_on(self, partition: int, after: str, entries: Sequence[Entry]) -> None:
        """The stream of a partition ``to_read`` after ``after`` (at most ``count`` entries)."""
        part = self._parts.get(partition)
        if part is None or part.at is None or part.at[0] != after or not part.behind:
            return
        if entries and entries[0].seq != part.at[1] + 1:  # trimmed past this reader
            part.at, part.gap, part.behind = None, True, False
            return
        if len(entries) < self.count:
            part.behind = False  # read to its end: what is held follows
        self._apply(partition, part, entries, ())

    def ahead(self, numbers: Iterable[tuple[int, int]]) -> None:
        """The partitions' numbers as Redis has them now: one ahead of what was applied is
        read on (a push lost; or in flight, and then dropped as already read)."""
        for partition, number in numbers:
            part = self._parts.get(partition)
            if part is not None and part.at is not None and number > part.at[1]:
                part.behind = True

    def missed(self, partition: int) -> None:
        """A push of ``partition`` could not be read: its stream is read on instead."""
        part = self._parts.get(partition)
        if part is not None:  # (loading: read on once loaded)
            part.behind = True

    def ready(self) -> list[PartitionRead]:
        """What was applied since the last call, in order per partition."""
        out, self._ready = self._ready, []
        return out

    def _apply(
        self,
        partition: int,
        part: _Partition,
        read: Sequence[Entry],
        pushed: Sequence[Entry],
        *,
        reload: Snapshot | None = None,
        gap: bool = False,
    ) -> None:
        """Apply ``read`` (taken as they are: read in one step after ``at``), then the held
        pushes and ``pushed`` that follow, until one skips numbers (then: behind)."""
        assert part.at is not None
        taken = list(read)
        seq = taken[-1].seq if taken else part.at[1]
        if not part.behind:
            held, part.held = [*part.held, *pushed], []
            for i, entry in enumerate(held):
                if entry.seq <= seq:
                    continue  # read already
                if entry.seq != seq + 1:
                    part.behind = True
                    part.held = held[i:]
                    break
                taken.append(entry)
                seq = entry.seq
        else:
            part.held.extend(pushed)
        if taken:
            part.at = (taken[-1].id, seq)
        if taken or reload is not None:
            self._ready.append(PartitionRead(partition, tuple(taken), reload, gap))


# -- I/O ------------------------------------------------------------------------------------


class PartitionFeed:
    """Reads the partitions of interest from their pushes (``FeedCursors``): the face of
    ``partitionlog.PartitionReader``. One subscription per partition on one pub/sub connection,
    changed as interest changes; ``read`` blocks until something was applied, the interest
    changed, or ``block_ms`` passed (then it returns nothing). A broken pub/sub connection is
    raised by ``read`` once; the next ``read`` subscribes again on a new one."""

    append_script: Final = PUBLISHING_APPEND

    def __init__(
        self,
        client: Redis,
        layout: PartitionLayout,
        *,
        count: int = READ_COUNT,
        block_ms: int = READ_BLOCK_MS,
        sweep_every: float = SWEEP_EVERY,
    ) -> None:
        self.client = client
        self.layout = layout
        self.cursors = FeedCursors(layout, count)
        self.count = count
        self.block_ms = block_ms
        self.sweep_every = sweep_every
        self._load = LuaScript(client, LOAD_SCRIPT)
        self._pubsub: PubSub | None = None
        self._listening: asyncio.Task[None] | None = None
        self._subscribed: set[int] = set()
        self._confirming: Counter[int] = Counter()
        """Per partition, the confirmations of subscriptions sent and not heard yet."""
        self._woken = asyncio.Event()
        self._broken: BaseException | None = None
        self._swept = 0.0

    @property
    def interest(self) -> frozenset[int]:
        return self.cursors.interest

    def gain(self, partition: int) -> None:
        regained = partition not in self.cursors.interest and partition in self._subscribed
        self.cursors.gain(partition)
        if regained and not self._confirming[partition]:
            self.cursors.heard(partition)  # dropped and gained between two reads: still heard
        self._woken.set()

    def drop(self, partition: int) -> None:
        self.cursors.drop(partition)
        self._woken.set()

    def reload(self, partition: int) -> None:
        self.cursors.reload(partition)
        self._woken.set()

    async def read(self) -> list[PartitionRead]:
        """What the partitions of interest have next, per partition in order (empty after
        ``block_ms`` without any). Raises what Redis answered when nothing could be read (the
        caller retries after a pause)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.block_ms / 1000
        while True:
            self._woken.clear()
            out = await self._step()
            if out:
                return out
            wait = min(deadline, self._swept + self.sweep_every) - loop.time()
            if deadline - loop.time() <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0)):
                    await self._woken.wait()

    async def aclose(self) -> None:
        await self._close_pubsub()

    async def _step(self) -> list[PartitionRead]:
        broken, self._broken = self._broken, None
        if broken is not None:
            await self._close_pubsub()
            self.cursors.lost()
            raise broken
        await self._subscribe()
        error: BaseException | None = None
        try:
            if asyncio.get_running_loop().time() - self._swept >= self.sweep_every:
                await self._sweep()
            await self._load_due()
            await self._read_on()
        except REDIS_ERRORS as exc:  # what was applied is given; the rest stays due
            error = exc
        out = self.cursors.ready()
        if not out and error is not None:
            raise error
        return out

    async def _subscribe(self) -> None:
        """(Un)subscribe the partitions whose interest changed since the last call."""
        wanted = self.cursors.interest
        gained, dropped = wanted - self._subscribed, self._subscribed - wanted
        if not gained and not dropped:
            return
        pubsub = self._pubsub
        if pubsub is None:
            pubsub = self._pubsub = self.client.pubsub()
        layout = self.layout
        try:
            if dropped:
                self._subscribed -= dropped
                await pubsub.unsubscribe(*(layout.of(p).feed for p in dropped))
            if gained:
                self._subscribed |= gained
                for partition in gained:
                    self._confirming[partition] += 1
                await pubsub.subscribe(*(layout.of(p).feed for p in sorted(gained)))
        except BaseException:  # Redis away: subscribed to everything anew on a new connection
            await self._close_pubsub()
            self.cursors.lost()
            raise
        if self._listening is None:
            self._listening = asyncio.ensure_future(self._listen(pubsub))

    async def _listen(self, pubsub: PubSub) -> None:
        """Hand each push and confirmation to the cursors, until the connection breaks."""
        layout, cursors = self.layout, self.cursors
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                partition = partition_of_channel(layout, text(message["channel"]))
                if partition is None:
                    continue
                kind = message["type"]
                if kind == "message":
                    try:
                        entries = pushed_entries(message["data"])
                    except ValueError:
                        cursors.missed(partition)  # unreadable: read the stream instead
                    else:
                        cursors.pushed(partition, entries)
                elif kind == "subscribe":
                    if self._confirming[partition] > 0:
                        self._confirming[partition] -= 1
                        if self._confirming[partition] == 0:
                            del self._confirming[partition]
                            cursors.heard(partition)
                    else:
                        cursors.heard(partition)  # subscribed anew after a reconnection
                else:
                    continue
                self._woken.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection broke: ``read`` raises it once
            self._broken = exc
            self._woken.set()

    async def _close_pubsub(self) -> None:
        listening, self._listening = self._listening, None
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed = set()
        self._confirming = Counter()
        if listening is not None:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                await listening
        if pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()

    async def _sweep(self) -> None:
        self._swept = asyncio.get_running_loop().time()
        partitions = sorted(self.cursors.interest)
        if not partitions:
            return
        numbers = await self.client.mget([self.layout.of(p).seq for p in partitions])
        self.cursors.ahead(
            (p, int(n)) for p, n in zip(partitions, numbers, strict=True) if n is not None
        )

    async def _load_due(self) -> None:
        loaded, error = await load_snapshots(
            self._load, self.layout, self.cursors.to_load(), self.count
        )
        for partition, snap, entries in loaded:
            self.cursors.loaded(partition, snap, entries)
        if error is not None:
            raise error

    async def _read_on(self) -> None:
        due = self.cursors.to_read()
        if not due:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for partition, after in due:
                pipe.xrange(self.layout.of(partition).stream, f"({after}", "+", self.count)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        error: BaseException | None = None
        for (partition, after), reply in zip(due, replies, strict=True):
            if isinstance(reply, BaseException):
                error = reply
                continue
            self.cursors.read_on(partition, after, entries_of(reply))
        if error is not None:
            raise error
