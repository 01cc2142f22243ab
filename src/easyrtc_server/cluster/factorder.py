"""A partitioned node's relays ordered against its clients' facts (issue 23).

In one process a client's message to a peer comes after what the client did before it: B is
told A joined (``roomData``) before A's offer reaches B. In the partitioned cluster the two
take different paths from A's node to B's: A's facts go to its rooms' partition logs, read by
B's node's reader; A's relays go to B's node's inbox (pub/sub), which can be faster. So each
relay carries where its sender's facts stand, and B's node holds it until it applied them.

**The stamp.** A relay's ``after`` (the inbox header's slot per relay, ``inbox``) is, for a
client whose node appended facts about it, a flat list ``[partition, seq, partition, seq...]``
(one pair per partition of its rooms, a client is usually in one room), else ``0``:

- ``seq > 0``: the target waits until it applied that partition up to ``seq``. After a join
  it is the partition's position on the sender's node when the join was admitted (the join
  is applied there before it is answered, so no client can relay before it is known).
- ``seq < 0``: ``-ticket``, a fact the sender's node posted (``update``, ``leave``) and Redis
  has not yet numbered. No relay waits for that write at the sender: once it is written, the
  sender's node tells each node that got a relay stamped with it the number, by an inbox item
  ``["", "fact-written", [ticket, seq]]`` (after the relay, in the same sender-to-node order);
  the target waits for it, then for ``seq`` (``0``: the write failed, nothing to wait for).

A partition the target node does not read is not waited for (no client of it sees those
rooms). The stamp list of a client is built when its facts change and shared by its relays
(never changed in place): a relay costs no allocation for it.

**The wait.** The target holds a relay, and those its sender's node sent after it (one
node's relays to another keep their order), until its stamp is met; at most ``wait`` seconds
(``cluster_order_wait``), then it is delivered anyway and counted (``Lates.relays``,
``easyrtc_cluster_order_timeouts_total``): a fact lost with Redis, a reader far behind. At
most ``limit`` relays are held; past that a sender's held relays go at once, counted alike.

No I/O: the node calls these as it posts facts, relays, receives and applies, and arms a
timer for ``next_deadline``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .ordering import DROPPED, Lates

Item = list[Any]
"""An inbox item as the target handles it: ``[easyrtcid, event, body]``."""
Position = Callable[[int], int | None]
"""partition -> the number of its last fact applied (and told) here; None: not read here."""

WRITTEN: Final = "fact-written"
"""The event of the inbox item that tells a ticket's number (to the node itself: ``""``)."""
HELD_LIMIT: Final = 10_000
"""Relays a node holds at most, over all senders."""


@dataclass(slots=True)
class _Ticket:
    cid: str
    partition: int
    nodes: set[str] = field(default_factory=set)
    """Nodes sent a relay stamped with it: told its number once written."""


class FactMarks:
    """The sending side: per client of this node, the stamp its relays carry."""

    __slots__ = ("_marks", "_next", "_open", "_unresolved")

    def __init__(self) -> None:
        self._marks: dict[str, list[int]] = {}
        """easyrtcid -> its stamp (flat ``[partition, seq...]``), replaced, never changed."""
        self._next = 0
        self._open: dict[int, _Ticket] = {}
        """Tickets of facts posted and not yet written."""
        self._unresolved: dict[str, list[int]] = {}
        """easyrtcid -> its open tickets."""

    def stamp(self, cid: Any, node: str) -> Any:
        """The ``after`` of a relay from ``cid`` to ``node`` (0: nothing to wait for)."""
        mark = self._marks.get(cid) if type(cid) is str else None
        if mark is None:
            return 0
        tickets = self._unresolved.get(cid)
        if tickets:
            for ticket in tickets:
                self._open[ticket].nodes.add(node)
        return mark

    def joined(self, cid: str, positions: Mapping[int, int], keep: set[int]) -> None:
        """``cid`` was admitted into rooms: ``positions``, the partitions' numbers applied here
        when it was; partitions not in ``keep`` (none of its rooms any more) are no longer
        waited for."""
        pairs = dict(self._pairs(cid))
        for partition, seq in positions.items():
            if pairs.get(partition, 0) >= 0:  # an open ticket there is waited for instead
                pairs[partition] = seq  # not the max: after Redis came back empty, numbers restart
        self._set(cid, {p: s for p, s in pairs.items() if p in keep or s < 0})

    def posted(self, cid: str, partition: int) -> int:
        """A fact about ``cid`` posted to ``partition``: its ticket, for ``written``. A
        client not stamped (never joined, or closed) stays so."""
        self._next += 1
        ticket = self._next
        self._open[ticket] = _Ticket(cid, partition)
        if cid in self._marks:
            self._unresolved.setdefault(cid, []).append(ticket)
            pairs = dict(self._pairs(cid))
            pairs[partition] = -ticket
            self._set(cid, pairs)
        return ticket

    def written(self, ticket: int, seq: int) -> list[str]:
        """The fact of ``ticket`` written as number ``seq`` (0: its write failed): the nodes
        to tell (``["", WRITTEN, [ticket, seq]]``)."""
        record = self._open.pop(ticket, None)
        if record is None:
            return []
        cid = record.cid
        tickets = self._unresolved.get(cid)
        if tickets is not None and ticket in tickets:
            tickets.remove(ticket)
            if not tickets:
                del self._unresolved[cid]
        pairs = dict(self._pairs(cid))
        if cid in self._marks and pairs.get(record.partition) == -ticket:
            pairs[record.partition] = seq
            self._set(cid, pairs)
        return sorted(record.nodes)

    def forget(self, cid: str) -> None:
        """``cid`` closed: it relays no more (its open tickets are still told)."""
        self._marks.pop(cid, None)
        self._unresolved.pop(cid, None)

    def _pairs(self, cid: str) -> list[tuple[int, int]]:
        mark = self._marks.get(cid, [])
        return list(zip(mark[::2], mark[1::2], strict=True))

    def _set(self, cid: str, pairs: Mapping[int, int]) -> None:
        self._marks[cid] = [n for partition in sorted(pairs) for n in (partition, pairs[partition])]


@dataclass(slots=True)
class _Held:
    stamp: Any
    item: Item
    due: float


class FactOrder:
    """The receiving side: relays held until this node applied the facts their stamps name.
    ``clock``: monotonic seconds."""

    def __init__(
        self,
        wait: float,
        clock: Callable[[], float] = time.monotonic,
        limit: int = HELD_LIMIT,
    ) -> None:
        self.wait = wait
        self.clock = clock
        self.limit = limit
        self.lates = Lates()
        self._held: dict[str, deque[_Held]] = {}
        """sender node -> its relays held, in the order sent."""
        self.holding = 0
        """Relays held, over all senders."""
        self.draining = False
        """This node stops: nothing is held any more (``drain``)."""

    def arrived(
        self, sender: str, afters: list[Any], items: list[Any], position: Position
    ) -> list[Item]:
        """An inbox message from ``sender``: its items (``afters``: each one's stamp,
        ``DROPPED`` for one left out at the sender). Returns those to handle now, in order;
        the rest are held. Items not a list of 3 are passed on (the caller refuses them)."""
        held = self._held.get(sender)
        ready: list[Item] = []
        taken = 0
        for after in afters:
            if type(after) is int and after == DROPPED:
                continue
            if taken >= len(items):
                break
            item = items[taken]
            taken += 1
            if type(item) is list and len(item) == 3 and item[0] == "" and item[1] == WRITTEN:
                self._written(held, item[2])
                continue
            if not held and (self.draining or _met(after, position)):
                ready.append(item)
                continue
            if held is None:
                held = self._held[sender] = deque()
            held.append(_Held(after, item, self.clock() + self.wait))
            self.holding += 1
        ready.extend(items[taken:])  # a message without stamps for some: as they come
        if held:
            ready.extend(self._release(held, position))
            if self.holding > self.limit:  # too many held: this sender's go now, counted
                self.lates.relays += len(held)
                ready.extend(self._take_all(held))
        return ready

    def ready(self, position: Position) -> list[Item]:
        """This node applied more facts (or reads fewer partitions): the held relays whose
        stamps are met now, per sender in order."""
        if not self.holding:
            return []
        out: list[Item] = []
        for held in self._held.values():
            if held:
                out.extend(self._release(held, position))
        return out

    def next_deadline(self) -> float | None:
        """When (``clock``) the first held relay's wait runs out; None if none is held."""
        if not self.holding:
            return None
        return min(held[0].due for held in self._held.values() if held)

    def expired(self, position: Position) -> list[Item]:
        """The held relays whose wait ran out (counted), and those behind them met by now."""
        if not self.holding:
            return []
        now = self.clock()
        out: list[Item] = []
        for held in self._held.values():
            if not held or held[0].due > now:
                continue
            while held and held[0].due <= now:
                out.append(held.popleft().item)
                self.holding -= 1
                self.lates.relays += 1
            out.extend(self._release(held, position))
        for sender in [s for s, held in self._held.items() if not held]:
            del self._held[sender]
        return out

    def drain(self) -> list[Item]:
        """This node stops: every held relay, per sender in order, and none held from now on
        (better out of order than lost: a stopping node's held clients are handed over with
        what was queued for them)."""
        self.draining = True
        out: list[Item] = []
        for held in self._held.values():
            out.extend(self._take_all(held))
        return out

    def forget(self, sender: str) -> list[Item]:
        """``sender`` is gone: its held relays, to deliver now (it sent them before its end)."""
        held = self._held.pop(sender, None)
        return self._take_all(held) if held else []

    def _release(self, held: deque[_Held], position: Position) -> list[Item]:
        out: list[Item] = []
        while held and _met(held[0].stamp, position):
            out.append(held.popleft().item)
        self.holding -= len(out)
        return out

    def _take_all(self, held: deque[_Held]) -> list[Item]:
        out = [h.item for h in held]
        self.holding -= len(out)
        held.clear()
        return out

    def _written(self, held: deque[_Held] | None, body: Any) -> None:
        """A ticket's number: in the stamps of the held relays that wait for it."""
        if not held or not (
            type(body) is list and len(body) == 2 and type(body[0]) is int and type(body[1]) is int
        ):
            return
        ticket, seq = body
        for h in held:
            stamp = h.stamp
            if type(stamp) is list and -ticket in stamp:
                h.stamp = [seq if n == -ticket and i % 2 else n for i, n in enumerate(stamp)]


def _met(stamp: Any, position: Position) -> bool:
    """Whether this node applied what ``stamp`` names (junk in it is not waited for)."""
    if type(stamp) is not list:
        return True
    for i in range(0, len(stamp) - 1, 2):
        partition, seq = stamp[i], stamp[i + 1]
        if type(partition) is not int or type(seq) is not int or seq == 0:
            continue
        at = position(partition)
        if at is None:
            continue
        if seq < 0 or at < seq:
            return False
    return True
