"""The entries of the cluster's ordered log, and their encoding in one Redis Stream field.

The log carries the protocol core's *inputs*, not state diffs: every replica runs the same
``Core`` calls in the same order and so ends in the same state (``replica``). Each entry names
the node that appended it (``node``, the *origin*: the node the client is connected to), the
clock value the replicas use while applying it (``t``, ms), and a per-node sequence number the
origin uses to find its own entries when they come back (``seq``). The rest depends on the kind:

- ``recv`` ``{p, a, e, d}``: peer ``p`` (remote address ``a``) sent event ``e`` with payload
  ``d``; every replica calls ``core.receive``.
- ``accept`` ``{p, ...answer}``: the origin's hooks said yes to ``p``'s pending decision; the
  answer holds what the hooks decided or wrote (``ACCEPT_FIELDS``).
- ``refuse`` ``{p, code, text}``: they said no.
- ``close`` ``{p}``: ``p``'s socket closed.
- ``control`` ``{name, args, kwargs}``: server code changed the state (``replica.CONTROLS``).
- ``node-gone`` ``{node}``: every peer owned by that node is gone.

Only this module knows the wire form (orjson in the field ``e``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

FIELD: Final = b"e"
"""The stream field that holds an entry."""

RECV: Final = "recv"
ACCEPT: Final = "accept"
REFUSE: Final = "refuse"
CLOSE: Final = "close"
CONTROL: Final = "control"
NODE_GONE: Final = "node-gone"


class LogFormatError(ValueError):
    """A stream entry this version cannot read (skipped, logged once by the reader)."""


@dataclass(slots=True)
class LogEntry:
    """One entry: ``kind`` and its origin ``node``, clock ``t``, origin ``seq`` and ``body``."""

    kind: str
    node: str
    t: int
    body: dict[str, Any] = field(default_factory=dict)
    seq: int = 0

    @property
    def peer(self) -> str | None:
        """The easyrtcid the entry is about, if any."""
        p = self.body.get("p")
        return p if isinstance(p, str) else None

    def encode(self) -> bytes:
        """The entry as stream field bytes; raises ``TypeError`` for a payload that is not
        JSON (a client's binary attachment), which the origin then refuses."""
        head = {"k": self.kind, "n": self.node, "t": self.t, "s": self.seq}
        return orjson.dumps({**head, **self.body})

    @classmethod
    def decode(cls, raw: bytes | str) -> LogEntry:
        try:
            data = orjson.loads(raw)
            kind, node, t, seq = data.pop("k"), data.pop("n"), data.pop("t"), data.pop("s")
        except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise LogFormatError(f"unreadable log entry: {exc}") from None
        if not (isinstance(kind, str) and isinstance(node, str) and isinstance(t, int)):
            raise LogFormatError("log entry without kind, node or time")
        return cls(kind, node, t, data, seq if isinstance(seq, int) else 0)


def recv(node: str, t: int, peer: str, address: str | None, event: str, data: Any) -> LogEntry:
    return LogEntry(RECV, node, t, {"p": peer, "a": address, "e": event, "d": data})


def accept(node: str, t: int, peer: str, answer: dict[str, Any]) -> LogEntry:
    return LogEntry(ACCEPT, node, t, {"p": peer, **answer})


def refuse(node: str, t: int, peer: str, code: str, text: str | None) -> LogEntry:
    return LogEntry(REFUSE, node, t, {"p": peer, "code": code, "text": text})


def close(node: str, t: int, peer: str) -> LogEntry:
    return LogEntry(CLOSE, node, t, {"p": peer})


def control(node: str, t: int, name: str, args: list[Any], kwargs: dict[str, Any]) -> LogEntry:
    return LogEntry(CONTROL, node, t, {"name": name, "args": args, "kwargs": kwargs})


def node_gone(node: str, t: int, gone: str) -> LogEntry:
    return LogEntry(NODE_GONE, node, t, {"node": gone})
