"""The entries of the cluster's ordered log, and their encoding in one Redis Stream field.

The log carries the protocol core's *inputs*, not state diffs: every replica runs the same
``Core`` calls in the same order and so ends in the same state (``replica``). Each entry names
the node that appended it (``node``, the *origin*: the node the client is connected to), the
clock value the replicas use while applying it (``t``, ms), and a per-node sequence number the
origin uses to find its own entries when they come back (``seq``). The rest depends on the kind:

- ``recv`` ``{p, a, e, d, rk}``: peer ``p`` (remote address ``a``) sent event ``e`` with payload
  ``d``; every replica calls ``core.receive``. A keyed login carries ``rk``, the hex digest of
  the socket's resume key (never the key: ``hold``).
- ``answer`` ``{p, a, ...}``: the origin's hooks answered ``p``'s pending decision with the
  answer record of kind ``a`` (``decisions``: ``login``, ``join``, ``token``, ``refused``…),
  its fields alongside (``answer``, ``answer_of``).
- ``close`` ``{p}``: ``p``'s socket closed.
- ``control`` ``{name, args, kwargs}``: server code changed the state (``replica.CONTROLS``).
- ``node-gone`` ``{node}``: every peer owned by that node is gone (a keyed one is held).
- ``hold`` ``{p}``: ``p``'s socket dropped without a goodbye: held (``cluster.holds``).
- ``queue`` ``{p, e, b, u}``: a push (event ``e``, body ``b``) relayed to ``p`` while it is held:
  queued for its resume (delivered by its node if it resumed meanwhile); ``u``: one its client
  had not confirmed when it dropped (``delivery``), queued past the bounds.
- ``expire`` ``{p}``: ``p``'s hold ends if its grace is over by the entry's time.
- ``release`` ``{p}``: server code disconnected ``p`` while held: its hold ends now.
- ``rejoin`` ``{p, c}``: connection ``p`` rebuilt from its ``snapshot`` ``c`` (``rebuild``).
- ``stock`` ``{p, a, e, d, rk}``: as ``recv``, from a node whose hooks decide as the stock ones:
  every replica answers the event's decisions itself (``protocol.stock``), so a login is one
  entry, not four. Written only while every live node reads it (``registry.NodeInfo``).

Fields (apiFields) travel one way everywhere in the cluster, log and snapshots alike:
``{name: [value, shared]}`` (``encode_fields``, ``decode_fields``).

Only this module knows the wire form (orjson in the field ``e``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ..protocol.decisions import (
    Answer,
    IceAnswer,
    JoinAnswer,
    LoginAnswer,
    Refused,
    ReplyAnswer,
    TokenAnswer,
)
from ..protocol.model import Field, Fields
from ..protocol.validation import MISSING

FIELD: Final = b"e"
"""The stream field that holds an entry."""

RECV: Final = "recv"
ANSWER: Final = "answer"
CLOSE: Final = "close"
CONTROL: Final = "control"
NODE_GONE: Final = "node-gone"
HOLD: Final = "hold"
QUEUE: Final = "queue"
EXPIRE: Final = "expire"
RELEASE: Final = "release"
REJOIN: Final = "rejoin"
STOCK: Final = "stock"


def encode_fields(fields: Fields) -> dict[str, list[Any]]:
    """Fields as JSON: ``{name: [value, shared]}``."""
    if not fields:  # most connections have none: a snapshot encodes one per connection
        return {}
    return {name: [f.value, f.shared] for name, f in fields.items()}


def decode_fields(raw: Any) -> Fields:
    """``encode_fields``' output read back; pairs that are not ``[value, shared]`` are left out
    (junk from Redis must not crash a reader)."""
    if not isinstance(raw, dict):
        return {}
    return {
        str(name): Field(pair[0], bool(pair[1]))
        for name, pair in raw.items()
        if isinstance(pair, list) and len(pair) == 2
    }


class LogFormatError(ValueError):
    """A stream entry this version cannot read (skipped, logged once by the reader)."""


@dataclass(slots=True)
class LogEntry:
    """One entry: ``kind`` and its origin ``node``, clock ``t``, origin ``seq`` and ``body``;
    ``relays``: node -> relays the origin had queued to it before this entry."""

    kind: str
    node: str
    t: int
    body: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    relays: dict[str, int] | None = None

    @property
    def peer(self) -> str | None:
        """The easyrtcid the entry is about, if any."""
        p = self.body.get("p")
        return p if isinstance(p, str) else None

    def encode(self) -> bytes:
        """The entry as stream field bytes; raises ``TypeError`` for a payload that is not
        JSON (a client's binary attachment), which the origin then refuses."""
        head: dict[str, Any] = {"k": self.kind, "n": self.node, "t": self.t, "s": self.seq}
        if self.relays:
            head["r"] = self.relays
        return orjson.dumps({**head, **self.body})

    @classmethod
    def decode(cls, raw: bytes | str) -> LogEntry:
        try:
            data = orjson.loads(raw)
            kind, node, t, seq = data.pop("k"), data.pop("n"), data.pop("t"), data.pop("s")
            relays = data.pop("r", None)
        except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise LogFormatError(f"unreadable log entry: {exc}") from None
        if not (isinstance(kind, str) and isinstance(node, str) and isinstance(t, int)):
            raise LogFormatError("log entry without kind, node or time")
        return cls(
            kind,
            node,
            t,
            data,
            seq if isinstance(seq, int) else 0,
            relays if isinstance(relays, dict) else None,
        )


def recv(
    node: str,
    t: int,
    peer: str,
    address: str | None,
    event: str,
    data: Any,
    key: bytes | None = None,
    *,
    stock: bool = False,
) -> LogEntry:
    """``stock``: the replicas answer its decisions themselves (a ``stock`` entry)."""
    body = {"p": peer, "a": address, "e": event, "d": data}
    if key is not None:
        body["rk"] = key.hex()
    return LogEntry(STOCK if stock else RECV, node, t, body)


def answer(node: str, t: int, peer: str, record: Answer) -> LogEntry:
    """The origin's hooks' ``record`` for ``peer``'s pending decision."""
    body: dict[str, Any] = {"p": peer}
    match record:
        case Refused(code=code, text=text):
            body.update(a="refused", code=code, text=text)
        case LoginAnswer(app_name=app, username=user, rooms=rooms):
            body.update(a="login", app=app, rooms=rooms)
            if user is not MISSING:
                body["user"] = user
        case JoinAnswer():
            body["a"] = "join"
        case TokenAnswer():
            fields = encode_fields(record.fields)
            body.update(
                a="token",
                ice=record.ice_servers,
                user=record.username,
                presence=record.presence,
                fields=fields,
            )
        case IceAnswer(ice_servers=servers):
            body.update(a="ice", ice=servers)
        case ReplyAnswer(body=reply):
            body.update(a="reply", body=reply)
    return LogEntry(ANSWER, node, t, body)


def answer_of(body: dict[str, Any]) -> Answer | None:
    """The answer record an ``answer`` entry's body carries; None if it is unreadable (a
    value the core reads is checked again by the core)."""
    kind = body.get("a")
    if kind == "refused":
        text = body.get("text")
        return Refused(str(body.get("code")), text if isinstance(text, str) else None)
    if kind == "login":
        return LoginAnswer(body.get("app"), body.get("user", MISSING), body.get("rooms"))
    if kind == "join":
        return JoinAnswer()
    if kind == "token":
        ice, user, presence = body.get("ice"), body.get("user"), body.get("presence")
        fields = decode_fields(body.get("fields"))
        return TokenAnswer(
            ice if isinstance(ice, list) else [],
            user if isinstance(user, str) else None,
            presence if isinstance(presence, dict) else {"show": "chat", "status": None},
            fields,
        )
    if kind == "ice":
        ice = body.get("ice")
        return IceAnswer(ice if isinstance(ice, list) else [])
    if kind == "reply":
        reply = body.get("body")
        return ReplyAnswer(reply if isinstance(reply, dict) else None)
    return None


def close(node: str, t: int, peer: str) -> LogEntry:
    return LogEntry(CLOSE, node, t, {"p": peer})


def control(node: str, t: int, name: str, args: list[Any], kwargs: dict[str, Any]) -> LogEntry:
    return LogEntry(CONTROL, node, t, {"name": name, "args": args, "kwargs": kwargs})


def node_gone(node: str, t: int, gone: str) -> LogEntry:
    return LogEntry(NODE_GONE, node, t, {"node": gone})


def hold(node: str, t: int, peer: str) -> LogEntry:
    return LogEntry(HOLD, node, t, {"p": peer})


def queue(
    node: str, t: int, peer: str, event: str, body: Any, *, unconfirmed: bool = False
) -> LogEntry:
    """``unconfirmed``: sent before the hold, its client never confirmed it (``delivery``):
    queued past the bounds."""
    entry = {"p": peer, "e": event, "b": body}
    if unconfirmed:
        entry["u"] = 1
    return LogEntry(QUEUE, node, t, entry)


def expire(node: str, t: int, peer: str) -> LogEntry:
    return LogEntry(EXPIRE, node, t, {"p": peer})


def release(node: str, t: int, peer: str) -> LogEntry:
    return LogEntry(RELEASE, node, t, {"p": peer})


def rejoin(node: str, t: int, peer: str, snapshot: dict[str, Any]) -> LogEntry:
    return LogEntry(REJOIN, node, t, {"p": peer, "c": snapshot})
