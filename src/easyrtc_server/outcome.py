"""What the core returns for one event: an ordered list of sends, and whether to close.

A send is a ``Reply`` (the acknowledgement to the sender of the event) or a ``Push`` (an event
to one easyrtcid). ``refusal`` is the error reply every handler uses, logged once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .errors import error_message

if TYPE_CHECKING:
    from .model import Connection

log = logging.getLogger("easyrtc_server")

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


Send = Reply | Push

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

    def reply(self, body: Json) -> Outcome:
        self.sends.append(Reply(body))
        return self

    def push(self, easyrtcid: str, event: str, body: Json) -> None:
        self.sends.append(Push(easyrtcid, event, body))

    def extend(self, other: Outcome) -> Outcome:
        """Append ``other``'s sends and left rooms; close if either closes."""
        self.sends.extend(other.sends)
        self.close = self.close or other.close
        if other.left:
            self.left = [*(self.left or ()), *other.left]
        return self


def refusal(
    now: int, easyrtcid: str, what: Any, code: str, *, text: str | None = None, close: bool = False
) -> Outcome:
    """The error reply for one refused event, logged once (client text escaped, truncated)."""
    log.info("rejected %s from %s: %s", loggable(what), easyrtcid, code)
    return Outcome(close=close).reply(error_message(code, now, text))


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
