"""Relayed messages to keyed connections, kept until their client confirms them.

A held connection's queue (``hold``) covers what is relayed to it *after* its socket dropped.
It cannot cover what was written to the socket just before (the server wrote it into a TCP
buffer that never reached the client), nor, in a cluster, what went to a node's inbox just
before that node was killed (``kill -9``): both were acknowledged to their sender and lost.

So a client that asks for it (``easyrtcResumeAcks`` beside its resume key) gets every relayed
message (``easyrtcMsg``/``easyrtcCmd`` from a peer) with a *stamp*, ``"easyrtcSeq": [origin,
n]`` in the message, and with a Socket.IO acknowledgement id; its acknowledgement confirms it.
The *origin* is the process (in a cluster: the node) that took the message from its sender; it
numbers the messages to each connection ``1, 2, 3, ...`` and keeps the unconfirmed ones here
(``Ledger``), bounded by ``resume_queue_messages`` and ``resume_queue_bytes`` (past them the
oldest is forgotten: it went out to a live socket long ago). When the connection's socket
drops, what is unconfirmed goes to the front of its hold's queue; when a new socket takes it
over (a resume, here or on another node), it is sent again; in a cluster, a node also sends
again what stays unconfirmed for ``RETRANSMIT_MS`` (a resend that raced the resume). The
client keeps the messages it has not seen and drops the others (``Seen``: per origin, the
numbers it has), so each arrives once.

A client that does not ask gets exactly the messages of before (no stamp, no acknowledgement
id); in a cluster its node confirms a message when it writes it to the socket.

Sans-I/O, on the core's clock (ms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

STAMP: Final = "easyrtcSeq"
"""The key of the stamp ``[origin, n]`` in a relayed message to a confirming client."""
ACKS_OPTION: Final = "easyrtcResumeAcks"
"""What a client gives beside its resume key (CONNECT auth, or the query) to confirm messages."""
RELAYED: Final = "senderEasyrtcid"
"""Every message a peer relayed has it (server pushes do not: the resume's token carries the
current state)."""
RETRANSMIT_MS: Final = 1000
"""A message unconfirmed this long is sent again (a cluster's resend that raced a resume)."""
MAX_RETRANSMITS: Final = 3
"""Times a message is sent again for want of a confirmation before it is forgotten."""
RELEASED_KEPT: Final = 10_000
"""Connections that live on elsewhere whose numbering a ledger keeps (``release``); past
this, the oldest are forgotten."""
SEEN_WINDOW: Final = 1024
"""Numbers a client remembers above its last contiguous one, per origin (a gap left by a
forgotten message is skipped past this many)."""


def wants_acks(value: Any) -> bool:
    """Whether a client's ``easyrtcResumeAcks`` asks for confirmed delivery."""
    return value is True or value in ("1", "true", 1)


def stamp_of(body: Any) -> tuple[str, int] | None:
    """The stamp of a relayed message, or None."""
    if type(body) is not dict:
        return None
    stamp = body.get(STAMP)
    if type(stamp) is list and len(stamp) == 2 and type(stamp[0]) is str and type(stamp[1]) is int:
        return stamp[0], stamp[1]
    return None


@dataclass(slots=True)
class Unconfirmed:
    event: str
    body: dict[str, Any]
    size: int
    sent: int
    """Clock ms of its last sending."""
    retransmits: int = 0


@dataclass(slots=True)
class Outstanding:
    """What one origin relayed to one connection and its client has not confirmed."""

    items: dict[int, Unconfirmed] = field(default_factory=dict)
    size: int = 0
    last: int = 0
    """The last number given."""


@dataclass(slots=True)
class LedgerCounts:
    stamped: int = 0
    resent: int = 0
    confirmed: int = 0
    forgotten: int = 0
    """Unconfirmed ones dropped past the bounds."""


class Ledger:
    """This origin's unconfirmed relayed messages, per connection."""

    def __init__(
        self, origin: str, max_messages: int, max_bytes: int, clock: Callable[[], int]
    ) -> None:
        self.origin = origin
        self.max_messages = max(1, max_messages)
        self.max_bytes = max_bytes
        self.now = clock
        self.out: dict[str, Outstanding] = {}
        self.counts = LedgerCounts()
        self._released: dict[str, None] = {}
        """Connections released (``release``), oldest first."""

    def stamp(self, to: str, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the next number of ``to`` (a copy: room messages share theirs)."""
        out = self.out.get(to)
        if out is None:
            out = self.out[to] = Outstanding()
        out.last += 1
        self.counts.stamped += 1
        stamped = dict(body)
        stamped[STAMP] = [self.origin, out.last]
        return stamped

    def keep(self, to: str, n: int, event: str, body: dict[str, Any]) -> None:
        """``body`` (stamped ``n``) is being sent to ``to``: kept until confirmed."""
        out = self.out.get(to)
        if out is None:
            out = self.out[to] = Outstanding(last=n)
        now = self.now()
        item = out.items.get(n)
        if item is not None:
            item.sent = now
            return
        try:
            size = len(orjson.dumps(body))
        except (TypeError, orjson.JSONEncodeError):
            size = self.max_bytes
        out.items[n] = Unconfirmed(event, body, size, now)
        out.size += size
        while out.items and (
            len(out.items) > self.max_messages or (out.size > self.max_bytes and len(out.items) > 1)
        ):
            oldest = min(out.items)
            out.size -= out.items.pop(oldest).size
            self.counts.forgotten += 1

    def confirm(self, to: str, n: int) -> None:
        out = self.out.get(to)
        if out is None:
            return
        item = out.items.pop(n, None)
        if item is not None:
            out.size -= item.size
            self.counts.confirmed += 1

    def pending(self, to: str, *, retransmit: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """What ``to``'s client has not confirmed, in order, marked sent now (to send again).
        ``retransmit``: sent again for want of a confirmation, not for a resume; a message
        sent so ``MAX_RETRANSMITS`` times is forgotten instead (a client that asked for
        confirmations and gives none)."""
        out = self.out.get(to)
        if out is None or not out.items:
            return []
        now = self.now()
        again = []
        for n in sorted(out.items):
            item = out.items[n]
            if retransmit:
                if item.retransmits >= MAX_RETRANSMITS:
                    out.size -= out.items.pop(n).size
                    self.counts.forgotten += 1
                    continue
                item.retransmits += 1
            item.sent = now
            again.append((item.event, item.body))
        self.counts.resent += len(again)
        return again

    def take(self, to: str) -> list[tuple[str, dict[str, Any]]]:
        """What ``to``'s client has not confirmed, in order, no longer kept here (its hold's
        queue has it now). The numbering goes on."""
        out = self.out.get(to)
        if out is None or not out.items:
            return []
        items, out.items, out.size = out.items, {}, 0
        return [(items[n].event, items[n].body) for n in sorted(items)]

    def forget(self, to: str) -> None:
        """``to`` is gone for good."""
        self.out.pop(to, None)
        self._released.pop(to, None)

    def release(self, to: str) -> None:
        """``to`` lives on where this origin no longer follows it (handed over, out of the
        rooms it shares): nothing kept for it, but its numbering goes on, should this origin
        relay to it again (its client drops numbers it has seen). The last ``RELEASED_KEPT``
        released are remembered so."""
        out = self.out.get(to)
        if out is None:
            return
        out.items, out.size = {}, 0
        released = self._released
        released.pop(to, None)
        released[to] = None
        while len(released) > RELEASED_KEPT:
            oldest = next(iter(released))
            del released[oldest]
            out = self.out.get(oldest)
            if out is not None and not out.items:
                del self.out[oldest]

    def due(self) -> list[str]:
        """The connections with a message unconfirmed for ``RETRANSMIT_MS``."""
        limit = self.now() - RETRANSMIT_MS
        return [
            to
            for to, out in self.out.items()
            if any(item.sent <= limit for item in out.items.values())
        ]


class Seen:
    """The client's side: which stamped messages it has, per origin, to drop a second copy.
    (Written in Python for the tests; the client script and the test clients do the same.)"""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.above: dict[str, set[int]] = {}

    def note(self, origin: str) -> None:
        """``origin`` relays to this connection (one to ask again after a resume)."""
        self.above.setdefault(origin, set())

    def origins(self) -> set[str]:
        return self.last.keys() | self.above.keys()

    def has(self, stamp: tuple[str, int]) -> bool:
        """Whether ``stamp`` was taken already (``first_time``)."""
        origin, n = stamp
        return n <= self.last.get(origin, 0) or n in self.above.get(origin, ())

    def first_time(self, stamp: tuple[str, int]) -> bool:
        origin, n = stamp
        last = self.last.get(origin, 0)
        above = self.above.setdefault(origin, set())
        if n <= last or n in above:
            return False
        above.add(n)
        while last + 1 in above:
            last += 1
            above.discard(last)
        if len(above) > SEEN_WINDOW:  # a gap that will not fill (a forgotten message)
            last = min(above)
            above.discard(last)
            while last + 1 in above:
                last += 1
                above.discard(last)
        self.last[origin] = last
        return True
