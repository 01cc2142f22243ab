"""What the core returns for one event: an ordered list of sends, whether to close, and what
happened.

A send is a ``Reply`` (the acknowledgement to the sender of the event), a ``Push`` (an event
to one easyrtcid) or a ``Fanout`` (one event to several, each addressed to its recipient: a room
or group message, a member-list update several members get alike). What happened is told as
records where it happens (``LoggedIn``, ``Joined``, ``Rejected``; rooms left are
``Outcome.left``), so the operating side (``events``) never reads it back out of wire bodies.
``refusal`` is the error reply every handler uses, logged once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .errors import error_message

if TYPE_CHECKING:
    from .model import Connection

Json = dict[str, Any]


@dataclass(slots=True)
class Reply:
    """The acknowledgement of the event being handled."""

    body: Json


@dataclass(slots=True)
class Push:
    """An event pushed to one socket, asking for no acknowledgement."""

    to: str
    event: str
    body: Json
    settled: bool = False
    """Already in order where it stands (a member-list catch-up built into an outcome):
    ``coalescing.Coalescer.settle`` puts nothing before it."""


ADDRESS: Final = "easyrtcid"
"""The key a ``Fanout``'s body gets per recipient: its own easyrtcid."""


@dataclass(slots=True)
class Fanout:
    """One event to several easyrtcids: each gets ``body`` with its own easyrtcid added as the
    last key (then ``after``'s: ``body_for``), as the reference addresses a room message to
    each member. One send rather than a ``Push`` each, so that the server encodes the shared
    part once (``transport.SharedEvent``): a room or group message, or the member-list update
    of a tick for the members told the same changes."""

    to: list[str]
    event: str
    body: Json
    """Without ``easyrtcid``; the same object for every recipient, so never mutate it."""
    settled: bool = False
    """As ``Push.settled`` (a member-list update built into an outcome)."""
    after: Json | None = None
    """Keys that follow the easyrtcid, the same for everyone (a member-list update's
    ``serverTime``); None for none."""

    def body_for(self, easyrtcid: str) -> Json:
        """The body ``easyrtcid`` gets."""
        if self.after:
            return {**self.body, ADDRESS: easyrtcid, **self.after}
        return {**self.body, ADDRESS: easyrtcid}

    def pushes(self) -> list[Push]:
        """One ``Push`` per recipient, for what handles sends one by one."""
        event = self.event
        return [Push(cid, event, self.body_for(cid)) for cid in self.to]


Send = Reply | Push | Fanout


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """A login succeeded: ``conn`` has its token."""

    conn: Connection


@dataclass(frozen=True, slots=True)
class Joined:
    """``conn`` entered room ``room`` (a new membership, not a join again)."""

    conn: Connection
    room: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event of ``easyrtcid`` was refused with EasyRTC error ``code``; ``what`` says what
    was refused, already fit for a log line (``loggable``). The operating side logs it,
    throttled per client (``events``, ``logsafe.RefusalLog``)."""

    code: str
    what: str = ""
    easyrtcid: str = ""


Happened = LoggedIn | Joined | Rejected

ACK: Final[Json] = {"msgType": "ack"}
"""The plain success reply. Shared, so never mutate it."""

ACKED: Final = Reply(ACK)


@dataclass(slots=True)
class Outcome:
    """What one event makes the server do, in order."""

    sends: list[Send] = field(default_factory=list)
    close: bool = False
    """Close the sender's socket after the sends (failed authentication)."""
    left: list[tuple[Connection, str]] | None = None
    """Rooms connections left (for the ``room_left`` hook), in order."""
    happened: list[Happened] | None = None
    """What else happened, in order (None when nothing did: no list on the relay path)."""

    def reply(self, body: Json) -> Outcome:
        self.sends.append(Reply(body))
        return self

    def replace_reply(self, body: Json) -> None:
        """The reply given ``body`` instead (a reply rebuilt as things are now)."""
        for i, send in enumerate(self.sends):
            if isinstance(send, Reply):
                self.sends[i] = Reply(body)
                return
        raise ValueError("no reply to replace")

    def push(self, easyrtcid: str, event: str, body: Json) -> None:
        self.sends.append(Push(easyrtcid, event, body))

    def note(self, event: Happened) -> Outcome:
        if self.happened is None:
            self.happened = []
        self.happened.append(event)
        return self

    def extend(self, other: Outcome) -> Outcome:
        """Append ``other``'s sends and left rooms; close if either closes."""
        self.sends.extend(other.sends)
        self.close = self.close or other.close
        if other.left:
            self.left = [*(self.left or ()), *other.left]
        if other.happened:
            self.happened = [*(self.happened or ()), *other.happened]
        return self


def pushes_to(easyrtcid: str, sends: Iterable[tuple[str, Json]]) -> Outcome:
    """Each ``(event, body)`` pushed to ``easyrtcid``, in order (what its client had not
    confirmed, sent again)."""
    out = Outcome()
    for event, body in sends:
        out.push(easyrtcid, event, body)
    return out


def refusal(
    now: int, easyrtcid: str, what: Any, code: str, *, text: str | None = None, close: bool = False
) -> Outcome:
    """The error reply for one refused event, with the refusal recorded (``Rejected``: the
    server logs it once, client text escaped and truncated)."""
    out = Outcome(close=close).reply(error_message(code, now, text))
    return out.note(Rejected(code, loggable(what), easyrtcid))


def loggable(value: Any, limit: int = 80) -> str:
    """``value`` as it can go into a log line: repr-escaped, at most ``limit`` characters."""
    if isinstance(value, str) and value.isidentifier():
        text = value
    else:
        try:
            text = repr(value)
        except RecursionError:  # a msgType nested ~1,000 deep (JSON allows 1,024)
            text = f"<{type(value).__name__} nested too deep to show>"
    return text if len(text) <= limit else text[: limit - 1] + "…"
