"""Room facts: what a partition's log carries (issue 23), and their wire form.

A partition log holds *facts about rooms*, each decided in that partition's one total order by
every reader alike (``partition``), instead of the protocol core's inputs (``log``). The node
holding a connection is its authority: it appends the facts about it. The kinds:

- ``join`` / ``reserve`` ``{rid, node, app, cid, login, rooms, covered, count?}``: connection
  ``cid`` (login number ``login``, on ``node``) asks into ``rooms`` (``{room: entry}``, the
  clientList entry peers will see). ``join`` is decided and committed in one step (a request
  whose rooms all live in this partition); ``reserve`` only holds the places, for a request
  spanning partitions, until its ``commit`` or ``abort``. ``covered``: rooms whose creation the
  request has a census claim for; ``count``: present when this partition holds the
  application's census (``max_rooms_per_app``), the room names claimed there.
- ``commit {rid, created}`` / ``abort {rid, by}``: the end of a reservation; ``created``: every
  room the request created, in any partition (the census keeps those).
- ``update {app, cid, login, rooms}``: the member's entry in ``rooms`` (``{room: entry}``)
  replaced (presence, username, apiField).
- ``leave {app, cid, login, rooms, by}``: the member out of ``rooms``; idempotent: a member of
  another login is left alone. ``by``: the node that wrote it (the member's, or a reaper).
- ``field {app, room, name, value, shared}``: server code set a room field.
- ``keep {rid, node, app, room}`` / ``remove {rid, node, app, room}``: server code created the
  room (kept when empty: ``control.create_room``) or deleted it (``control.delete_room``:
  only an empty room); ``node`` waits for the outcome (``partition.RoomKept``,
  ``RoomDeleted``).
- ``release {app, room, permit}``: a removed room's census place given back.
- ``node-gone {node, by}``: every member of a dead node leaves, its reservations abort.
- ``node-back {node}``: a node taken for dead that lived (paused, or cut off from Redis past
  its alive TTL) is back: its later requests are decided again (it asks its members' rooms
  anew, ``partitioned``).

Only this module knows the wire form (an orjson object with the kind in ``k``). Nodes write
facts, but entries and values came from clients: ``decode`` checks every shape and refuses
(``FactError``) what it cannot read; it never crashes on junk. Sizes are bounded before a fact
is written (the options' limits on presence, apiField, rooms per join), not here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

Json = dict[str, Any]

JOIN: Final = "join"
RESERVE: Final = "reserve"
COMMIT: Final = "commit"
ABORT: Final = "abort"
UPDATE: Final = "update"
LEAVE: Final = "leave"
FIELD: Final = "field"
KEEP: Final = "keep"
REMOVE: Final = "remove"
RELEASE: Final = "release"
NODE_GONE: Final = "node-gone"
NODE_BACK: Final = "node-back"


class FactError(ValueError):
    """A fact this version cannot read: refused alike by every reader (skipped, logged)."""


@dataclass(frozen=True, slots=True)
class Reserve:
    """A connection asking into rooms of one partition (``join``: committed when granted)."""

    rid: str
    node: str
    app: str
    cid: str
    login: int
    rooms: Mapping[str, Json]
    covered: frozenset[str] = frozenset()
    count: tuple[str, ...] | None = None
    join: bool = False


@dataclass(frozen=True, slots=True)
class Commit:
    rid: str
    created: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Abort:
    rid: str
    by: str


@dataclass(frozen=True, slots=True)
class Update:
    app: str
    cid: str
    login: int
    rooms: Mapping[str, Json]


@dataclass(frozen=True, slots=True)
class Leave:
    app: str
    cid: str
    login: int
    rooms: tuple[str, ...]
    by: str


@dataclass(frozen=True, slots=True)
class SetField:
    app: str
    room: str
    name: str
    value: Any
    shared: bool = True


@dataclass(frozen=True, slots=True)
class Keep:
    """Server code's ``create_room``: the room made if missing, kept when empty."""

    rid: str
    node: str
    app: str
    room: str


@dataclass(frozen=True, slots=True)
class Remove:
    """Server code's ``delete_room``: the room gone, if it is empty."""

    rid: str
    node: str
    app: str
    room: str


@dataclass(frozen=True, slots=True)
class Release:
    app: str
    room: str
    permit: str


@dataclass(frozen=True, slots=True)
class NodeGone:
    node: str
    by: str


@dataclass(frozen=True, slots=True)
class NodeBack:
    node: str


Fact = (
    Reserve
    | Commit
    | Abort
    | Update
    | Leave
    | SetField
    | Keep
    | Remove
    | Release
    | NodeGone
    | NodeBack
)


def to_json(fact: Fact) -> Json:
    """The fact as a JSON object (what ``encode`` writes)."""
    match fact:
        case Reserve():
            data: Json = {
                "k": JOIN if fact.join else RESERVE,
                "rid": fact.rid,
                "node": fact.node,
                "app": fact.app,
                "cid": fact.cid,
                "login": fact.login,
                "rooms": dict(fact.rooms),
                "covered": sorted(fact.covered),
            }
            if fact.count is not None:
                data["count"] = list(fact.count)
            return data
        case Commit():
            return {"k": COMMIT, "rid": fact.rid, "created": list(fact.created)}
        case Abort():
            return {"k": ABORT, "rid": fact.rid, "by": fact.by}
        case Update():
            return {
                "k": UPDATE,
                "app": fact.app,
                "cid": fact.cid,
                "login": fact.login,
                "rooms": dict(fact.rooms),
            }
        case Leave():
            return {
                "k": LEAVE,
                "app": fact.app,
                "cid": fact.cid,
                "login": fact.login,
                "rooms": list(fact.rooms),
                "by": fact.by,
            }
        case SetField():
            return {
                "k": FIELD,
                "app": fact.app,
                "room": fact.room,
                "name": fact.name,
                "value": fact.value,
                "shared": fact.shared,
            }
        case Keep():
            return {
                "k": KEEP,
                "rid": fact.rid,
                "node": fact.node,
                "app": fact.app,
                "room": fact.room,
            }
        case Remove():
            return {
                "k": REMOVE,
                "rid": fact.rid,
                "node": fact.node,
                "app": fact.app,
                "room": fact.room,
            }
        case Release():
            return {"k": RELEASE, "app": fact.app, "room": fact.room, "permit": fact.permit}
        case NodeGone():
            return {"k": NODE_GONE, "node": fact.node, "by": fact.by}
        case NodeBack():
            return {"k": NODE_BACK, "node": fact.node}


def encode(fact: Fact) -> bytes:
    """The fact's bytes; ``TypeError`` for a value JSON cannot carry (an integer past 64
    bits, bytes): its writer refuses it, as ``log.LogEntry.encode``'s do."""
    return orjson.dumps(to_json(fact))


def decode(raw: bytes | str) -> Fact:
    """A fact read back from its bytes; ``FactError`` for anything else."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FactError(f"unreadable fact: {exc}") from None
    return from_json(data)


def from_json(data: Any) -> Fact:
    """A fact from its JSON object, every shape checked; ``FactError`` when one is wrong."""
    if not isinstance(data, dict):
        raise FactError("a fact is an object")
    kind = data.get("k")
    read = _READERS.get(kind) if isinstance(kind, str) else None
    if read is None:
        raise FactError(f"unknown fact kind {kind!r}")
    return read(data)


def _text(data: Json, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise FactError(f"fact field {key!r} is not a non-empty string")
    return value


def _number(data: Json, key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FactError(f"fact field {key!r} is not an integer")
    return value


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        raise FactError(f"fact field {key!r} is not a list of names")
    return tuple(dict.fromkeys(value))


def _entries(data: Json, key: str) -> dict[str, Json]:
    value = data.get(key)
    if not isinstance(value, dict) or not all(
        isinstance(name, str) and name and isinstance(entry, dict) for name, entry in value.items()
    ):
        raise FactError(f"fact field {key!r} is not an object of room entries")
    return value


def _reserve(data: Json) -> Reserve:
    count = data.get("count")
    return Reserve(
        rid=_text(data, "rid"),
        node=_text(data, "node"),
        app=_text(data, "app"),
        cid=_text(data, "cid"),
        login=_number(data, "login"),
        rooms=_entries(data, "rooms"),
        covered=frozenset(_names(data.get("covered", []), "covered")),
        count=None if count is None else _names(count, "count"),
        join=data["k"] == JOIN,
    )


def _commit(data: Json) -> Commit:
    return Commit(_text(data, "rid"), _names(data.get("created", []), "created"))


def _abort(data: Json) -> Abort:
    return Abort(_text(data, "rid"), _text(data, "by"))


def _update(data: Json) -> Update:
    return Update(
        _text(data, "app"), _text(data, "cid"), _number(data, "login"), _entries(data, "rooms")
    )


def _leave(data: Json) -> Leave:
    return Leave(
        _text(data, "app"),
        _text(data, "cid"),
        _number(data, "login"),
        _names(data.get("rooms"), "rooms"),
        _text(data, "by"),
    )


def _field(data: Json) -> SetField:
    if "value" not in data:
        raise FactError("fact field 'value' is missing")
    shared = data.get("shared", True)
    if not isinstance(shared, bool):
        raise FactError("fact field 'shared' is not a boolean")
    return SetField(
        _text(data, "app"), _text(data, "room"), _text(data, "name"), data["value"], shared
    )


def _keep(data: Json) -> Keep:
    return Keep(_text(data, "rid"), _text(data, "node"), _text(data, "app"), _text(data, "room"))


def _remove(data: Json) -> Remove:
    return Remove(_text(data, "rid"), _text(data, "node"), _text(data, "app"), _text(data, "room"))


def _release(data: Json) -> Release:
    return Release(_text(data, "app"), _text(data, "room"), _text(data, "permit"))


def _node_gone(data: Json) -> NodeGone:
    return NodeGone(_text(data, "node"), _text(data, "by"))


_READERS: Final[dict[str, Callable[[Json], Fact]]] = {
    JOIN: _reserve,
    RESERVE: _reserve,
    COMMIT: _commit,
    ABORT: _abort,
    UPDATE: _update,
    LEAVE: _leave,
    FIELD: _field,
    KEEP: _keep,
    REMOVE: _remove,
    RELEASE: _release,
    NODE_GONE: _node_gone,
    NODE_BACK: lambda data: NodeBack(_text(data, "node")),
}
