"""Each sending node's order kept across its two paths to another node: the log and the inbox.

A node sends state changes through the log (every node applies them in the log's order) and
relays to another node's inbox (pub/sub, ``inbox``). Each path keeps its own order; nothing
orders one against the other at the target, so a client's last message and its ``roomLeave``
right after could reach a peer on another node the other way round. One process keeps the
sender's order; so does the cluster, with where each thing stands in its sender's sequence:

- a log entry carries ``s``, its place in its origin's sequence of entries (``Stamps.entry``),
  and ``r``: for each node the origin queued relays to since its previous entry, how many it
  had queued to that node so far;
- a relay carries ``after``, the sequence number of the last entry its node had appended before
  it, and its index among the relays its node queued to the target node (``Stamps.relay``).

The target node (``Arrivals``) delivers a relay once its replica has applied the sender's
entries up to ``after``, and applies an entry only once the relays its origin queued to it
before that entry have arrived (the node's reader delivers those still held before the entry).
Whichever side is ahead waits, per sending node, at most ``wait`` seconds: an entry that never
reached the log (Redis failed), relays lost on the way (pub/sub while a subscription was down),
a reader far behind. Then it goes on in the order it has, and the wait is counted (``lates``).

A node's id is its incarnation: a restarted node is a new node, its sequence starts again under
its new id. The replicas keep each node's last sequence number applied across snapshots, trims
and Redis restarts (``Replica.seqs``); ``node-gone`` forgets it, and ``forget`` what is held.

No I/O: the node calls these as it appends, publishes, receives and applies, and arms a timer
for ``next_deadline``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

Item = list[Any]
"""A relay as the target node delivers it: ``[easyrtcid, event, body]``."""
DROPPED: Final = -1
"""The ``after`` of a relay its sender could not encode (and left out of the message)."""


class Stamps:
    """The sending side: this node's sequence of log entries and its count of relays queued to
    each other node (since this process started: its node id is new)."""

    __slots__ = ("_told", "sent", "seq")

    def __init__(self) -> None:
        self.seq = 0
        """The sequence number of the last entry appended (0: none yet)."""
        self.sent: dict[str, int] = {}
        """node -> relays queued to it."""
        self._told: dict[str, int] = {}
        """node -> the count the last entry carried."""

    def entry(self) -> tuple[int, dict[str, int]]:
        """The next entry's sequence number, and the relay counts it carries: those that
        changed since the previous entry (the target waits for that many)."""
        self.seq += 1
        told = self._told
        changed = {node: n for node, n in self.sent.items() if told.get(node) != n}
        told.update(changed)
        return self.seq, changed

    def relay(self, node: str) -> int:
        """A relay queued to ``node`` (after entry ``seq``): its index among those."""
        n = self.sent.get(node, 0)
        self.sent[node] = n + 1
        return n

    def lost(self) -> None:
        """Entries did not reach the log: the next one carries every count again."""
        self._told.clear()

    def dropped(self, node: str, upto: int) -> None:
        """The relays queued to ``node`` before number ``upto`` did not reach it (Redis
        failed, or nobody listened): unless later ones are on their way (whose arrival tells
        the target the count), no entry announces them to be waited for."""
        if self.sent.get(node) == upto:
            self._told[node] = upto

    def forget(self, node: str) -> None:
        """``node`` is gone: no more relays to it (should it come back, counted from 0)."""
        self.sent.pop(node, None)
        self._told.pop(node, None)


@dataclass(slots=True)
class _Held:
    after: int
    item: Item
    due: float


@dataclass(slots=True)
class _Origin:
    """What the receiving node knows of one sending node's relays."""

    received: int = 0
    """Index after the last relay that arrived from it (the next one's)."""
    held: deque[_Held] = field(default_factory=deque)
    """Its relays waiting for its entries, in the order sent (``after`` never decreases)."""
    skipped: int = 0
    """Its entries up to this one are not waited for any more (a relay's wait ran out)."""


@dataclass(slots=True)
class Lates:
    """Waits that ran out (``easyrtc_cluster_order_timeouts_total``)."""

    relays: int = 0
    """Relays delivered before the entries they follow were applied."""
    entries: int = 0
    """Entries applied before relays they follow had arrived (lost, or later still)."""


class Arrivals:
    """The receiving side: relays held until the entries they follow are applied here, and
    what an entry must wait for. ``clock``: monotonic seconds."""

    def __init__(
        self, node_id: str, wait: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.node_id = node_id
        self.wait = wait
        self.clock = clock
        self.lates = Lates()
        self.unusable = 0
        """Rows given to ``arrived`` that are not relays (junk published to the inbox)."""
        self._origins: dict[str, _Origin] = {}
        self._holding = 0
        """Relays held, over all origins."""

    def arrived(
        self, origin: str, first: int, afters: list[Any], items: list[Any], applied: int
    ) -> list[Item]:
        """Relays from ``origin`` arrived: ``items``, the first its relay number ``first`` to
        this node, each with its ``after`` (``DROPPED``: not encodable at the sender, counted
        there, not in ``items``); ``applied``: the sequence number of its last entry applied
        here. Returns those to deliver now, in order; the rest are held."""
        o = self._origins.get(origin)
        if o is None:
            o = self._origins[origin] = _Origin()
        o.received = first + len(afters)  # lower than before: its count started again
        ready: list[Item] = []
        held = o.held
        upto = max(applied, o.skipped)
        due = 0.0
        taken = 0
        for after in afters:
            if after == DROPPED:
                continue
            item = items[taken] if taken < len(items) else None
            taken += 1
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str | list)):
                self.unusable += 1
                continue
            if type(after) is not int:
                after = 0
            if not held and after <= upto:
                ready.append(item)
                continue
            if not due:
                due = self.clock() + self.wait
            held.append(_Held(after, item, due))
            self._holding += 1
        self.unusable += max(0, len(items) - taken)
        return ready

    def missing(self, origin: str, counts: Mapping[str, Any] | None) -> bool:
        """An entry of ``origin`` carrying relay ``counts`` follows relays to this node that
        have not arrived yet: it waits for them (at most ``wait``, then ``gave_up``)."""
        if not counts:
            return False
        need = counts.get(self.node_id)
        if not isinstance(need, int):
            return False
        o = self._origins.get(origin)
        return need > (o.received if o is not None else 0)

    def gave_up(self, origin: str, counts: Mapping[str, Any]) -> None:
        """The entry's relays did not come in time: counted, and not waited for again."""
        self.lates.entries += 1
        need = counts.get(self.node_id)
        o = self._origins.get(origin)
        if o is None:
            o = self._origins[origin] = _Origin()
        if isinstance(need, int):
            o.received = max(o.received, need)

    def release(self, origin: str, upto: int) -> list[Item]:
        """``origin``'s entries up to ``upto`` are applied here (or the next one is about to
        be): its held relays that follow no later entry, in order."""
        if not self._holding:
            return []
        o = self._origins.get(origin)
        if o is None or not o.held:
            return []
        held = o.held
        out: list[Item] = []
        while held and held[0].after <= upto:
            out.append(held.popleft().item)
        self._holding -= len(out)
        return out

    def next_deadline(self) -> float | None:
        """When (``clock``) the first held relay's wait runs out; None if none is held."""
        if not self._holding:
            return None
        return min(o.held[0].due for o in self._origins.values() if o.held)

    def expired(self, applied: Mapping[str, int]) -> list[Item]:
        """The held relays whose wait ran out, with those held behind them that follow no
        later entry (the entries they wait for are given up on: ``skipped``) or that follow
        entries applied here by now (``applied``: node -> its last sequence number applied);
        counted. Per origin, in order."""
        if not self._holding:
            return []
        now = self.clock()
        out: list[Item] = []
        late = 0
        for origin, o in self._origins.items():
            held = o.held
            if not held or held[0].due > now:
                continue
            while held and held[0].due <= now:
                o.skipped = max(o.skipped, held[0].after)
                out.append(held.popleft().item)
                late += 1
            done = applied.get(origin, 0)
            upto = max(o.skipped, done)
            while held and held[0].after <= upto:
                h = held.popleft()
                out.append(h.item)
                late += h.after > done
        self.lates.relays += late
        self._holding -= len(out)
        return out

    def drain(self) -> list[Item]:
        """Every held relay, per origin in order (this node stops: better out of order than
        lost, for a held connection's queue in the log)."""
        out = [h.item for o in self._origins.values() for h in o.held]
        for o in self._origins.values():
            o.held.clear()
        self._holding = 0
        return out

    def forget(self, origin: str) -> list[Item]:
        """``origin`` is gone (``node-gone``): its held relays, to deliver now (it sent them
        before its end); nothing of it is kept."""
        o = self._origins.pop(origin, None)
        if o is None:
            return []
        self._holding -= len(o.held)
        return [h.item for h in o.held]
