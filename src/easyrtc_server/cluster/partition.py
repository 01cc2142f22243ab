"""One partition's rooms, decided from its facts in log order (issue 23; driven by ``partitioned``).

Every reader of a partition applies the same facts (``facts``) in the same order and so ends
in the same state with the same effects: ``Partition.apply`` is a pure function of the state
and the fact (no clock, no I/O, dicts iterated in insertion order). It owns, per application,
the rooms of the partition (members ``{cid: (node, login, entry)}`` in join order, fields),
the reservations in flight, and, in the application's own partition, the *census* that keeps
``max_rooms_per_app`` exact across partitions. It must not know who reads it, how facts are
carried, or what a driver does with the effects.

**Deciding without guessing.** A granted reservation holds a place in each of its rooms until
its ``commit`` or ``abort``: members plus held places never exceed ``room_max_connection``. A
later request whose outcome depends on whether a held place commits *waits* (in log order,
inside the partition) until it does: it is granted when it fits even if every held place
commits, denied when it does not fit even if none does (``"full"``: committed members
only), else decided at the ``commit``, ``abort``, ``leave`` or ``node-gone`` that settles it.
A denial therefore always comes from committed state, and every outcome matches a serial
order of the requests (the order of their last grants: docs/cluster.md, "Built: the
partition protocol"). Requests wait only on reservations held by requests acquiring partitions in
ascending order (``reservations``): no cycle, no request waits forever while nodes live.

**The census** (``max_rooms_per_app`` > 0) lives in the application's partition: a request
that creates rooms claims their names there (``count``); the names of rooms that exist, are
being created or were removed and not yet released count, each once. A removed room's place
comes back with a ``release`` appended by the node whose fact removed it (``ToRelease``).
A room created without a census claim where the application has a limit is denied
``"retry"``: the requester asks again, claiming it.

Entries (``{cid: entry}``, in effects too) are shared, never mutated: a driver copies one
before changing it. ``max_rooms_per_connection`` is not here: the member's node, the only
one adding its connection to rooms, checks it (``reservations.connection_refusal``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..options import ProtocolOptions
from ..protocol.model import fields_from_obj
from .facts import (
    Abort,
    Commit,
    Fact,
    FactError,
    Json,
    Keep,
    Leave,
    NodeBack,
    NodeGone,
    Release,
    Remove,
    Reserve,
    SetField,
    Update,
    from_json,
    to_json,
)
from .log import encode_fields

VERSION: Final = 1
GONE_KEPT: Final = 1024
"""Dead nodes remembered (their later facts refused: a node declared dead and still
writing); the oldest are forgotten past this many."""

FULL: Final = "full"
MISSING: Final = "missing"
TOO_MANY: Final = "too_many"
RETRY: Final = "retry"
"""A room to create that the request has no census claim for: ask again, claiming it."""
GONE: Final = "gone"
"""The requesting node was declared dead before its request was read."""
OCCUPIED: Final = "occupied"
"""A room server code asked to delete has members, or places held (``RoomDeleted``)."""


@dataclass(frozen=True, slots=True)
class RoomRules:
    """The room options of one application, as every reader of a partition reads them."""

    room_max_connection: int = 100
    room_auto_create_enable: bool = True
    max_rooms_per_app: int = 10_000
    default_room: str | None = "default"
    reclaim_empty_rooms: bool = True
    room_fields: Mapping[str, list[Any]] = field(default_factory=dict)
    """The fields a new room starts with (``room_default_field_obj``), ``{name: [value,
    shared]}``."""

    @classmethod
    def of(cls, opts: ProtocolOptions) -> RoomRules:
        return cls(
            opts.room_max_connection,
            opts.room_auto_create_enable,
            opts.max_rooms_per_app,
            opts.room_default_name if opts.room_default_enable else None,
            opts.reclaim_empty_rooms,
            encode_fields(fields_from_obj(opts.room_default_field_obj)),
        )

    def new_room(self, name: str) -> RoomState:
        return RoomState(
            fields={k: list(pair) for k, pair in self.room_fields.items()},
            persistent=name == self.default_room,
        )


# -- effects: what a driver turns into pushes, answers and further facts ----------------------


@dataclass(frozen=True, slots=True)
class Granted:
    """A request holds its places here (``committed``: a ``join``, admitted at once);
    ``creates``: the rooms it creates here."""

    rid: str
    node: str
    creates: tuple[str, ...] = ()
    committed: bool = False


@dataclass(frozen=True, slots=True)
class Denied:
    """A request refused here: ``full``, ``missing``, ``too_many`` (as ``check_joinable``),
    ``retry`` or ``gone``. Nothing of it is held."""

    rid: str
    node: str
    app: str
    cid: str
    reason: str


@dataclass(frozen=True, slots=True)
class Admitted:
    rid: str
    app: str
    room: str
    cid: str
    node: str
    entry: Json


@dataclass(frozen=True, slots=True)
class Updated:
    app: str
    room: str
    cid: str
    entry: Json


@dataclass(frozen=True, slots=True)
class Left:
    app: str
    room: str
    cid: str
    node: str


@dataclass(frozen=True, slots=True)
class RoomCreated:
    app: str
    room: str


@dataclass(frozen=True, slots=True)
class RoomRemoved:
    app: str
    room: str


@dataclass(frozen=True, slots=True)
class RoomKept:
    """Server code's ``keep`` (``rid``, by ``node``) settled: the room exists and is kept when
    empty; ``made``: this fact made it (a join did not: the room was there, or the join
    creating it committed)."""

    rid: str
    node: str
    app: str
    room: str
    made: bool


@dataclass(frozen=True, slots=True)
class RoomDeleted:
    """Server code's ``remove`` (``rid``, by ``node``) decided: ``result`` is ``""`` (the room
    is gone, even kept when empty), ``missing`` or ``occupied`` (nothing changed)."""

    rid: str
    node: str
    app: str
    room: str
    result: str


@dataclass(frozen=True, slots=True)
class ToRelease:
    """Node ``by`` (the writer of the fact that caused it) appends ``release {app, room,
    permit}`` to the application's census: a room created under that claim was removed, or
    its creation aborted by ``node-gone`` (the census may have committed the claim first)."""

    app: str
    room: str
    permit: str
    by: str


@dataclass(frozen=True, slots=True)
class FieldSet:
    app: str
    room: str
    name: str
    value: Any
    shared: bool


Effect = (
    Granted
    | Denied
    | Admitted
    | Updated
    | Left
    | RoomCreated
    | RoomRemoved
    | ToRelease
    | FieldSet
    | RoomKept
    | RoomDeleted
)


# -- state -------------------------------------------------------------------------------------


@dataclass(slots=True)
class RoomMember:
    node: str
    login: int
    entry: Json


@dataclass(slots=True, eq=False)
class RoomState:
    members: dict[str, RoomMember] = field(default_factory=dict)
    """In join order (a member joining again keeps its place)."""
    fields: dict[str, list[Any]] = field(default_factory=dict)
    """``{name: [value, shared]}``, as the log writes fields (``log.encode_fields``)."""
    persistent: bool = False
    created: bool = False
    """Committed; False while only the reservation creating it holds it."""
    permit: str | None = None
    """The census claim it was created under (released when it is removed)."""
    creator: str | None = None
    """The reservation creating it, until that commits or aborts."""
    holds: dict[str, str] = field(default_factory=dict)
    """Reservations holding a place: rid -> cid."""
    keeping: list[list[str]] = field(default_factory=list)
    """Server code's ``keep`` facts (``[rid, node]``) read while a join was creating the room:
    settled when that join commits, or made by the first of them when it aborts."""

    def taken(self) -> int:
        """Places taken: members and held places of connections not yet members."""
        return len(self.members) + sum(1 for cid in self.holds.values() if cid not in self.members)


@dataclass(slots=True, eq=False)
class Hold:
    """A reservation read, granted or waiting; ``entries`` kept current by ``update``."""

    fact: Reserve
    entries: dict[str, Json]
    granted: bool = False
    creates: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class Census:
    """An application's room names counted against ``max_rooms_per_app``."""

    committed: dict[str, list[str]] = field(default_factory=dict)
    """name -> the permits (creating rids) keeping it; ``""`` for the default room."""
    pending: dict[str, list[str]] = field(default_factory=dict)
    """rid -> names claimed by a reservation not yet committed."""

    def names(self) -> set[str]:
        out = set(self.committed)
        for names in self.pending.values():
            out.update(names)
        return out


_GRANT, _CREATE, _WAIT = "grant", "create", "wait"


class Partition:
    """The rooms of one partition, with ``apply`` the only way they change."""

    def __init__(self, rules: Callable[[str], RoomRules]) -> None:
        self.rules = rules
        self.rooms: dict[str, dict[str, RoomState]] = {}
        self.holds: dict[str, Hold] = {}
        """Reservations read and not ended, in log order."""
        self.waiting: dict[str, Hold] = {}
        """Those not decided yet, in log order (the order they are decided in)."""
        self.census: dict[str, Census] = {}
        self.gone: dict[str, None] = {}

    # -- reading ---------------------------------------------------------------------------

    def room(self, app: str, name: str) -> RoomState | None:
        """A room that exists (committed), or None."""
        room = self.rooms.get(app, {}).get(name)
        return room if room is not None and room.created else None

    def counted(self, app: str) -> set[str]:
        """The room names the census of ``app`` counts (here, if it lives here)."""
        census = self.census.get(app)
        return census.names() if census is not None else set()

    # -- applying --------------------------------------------------------------------------

    def apply(self, fact: Fact) -> list[Effect]:
        """Apply one fact in log order; what happened, for a driver to act on."""
        out: list[Effect] = []
        match fact:
            case Reserve():
                self._reserve(fact, out)
            case Commit():
                self._commit(fact.rid, fact.created, out)
            case Abort():
                self._abort(fact.rid, fact.by, out)
            case Update():
                self._update(fact, out)
            case Leave():
                self._leave(fact, out)
            case SetField():
                self._set_field(fact, out)
            case Keep():
                self._keep(fact, out)
            case Remove():
                self._remove(fact, out)
            case Release():
                self._release(fact)
            case NodeGone():
                self._node_gone(fact, out)
            case NodeBack():
                self.gone.pop(fact.node, None)
        self._wake(out)
        return out

    def _reserve(self, fact: Reserve, out: list[Effect]) -> None:
        if fact.rid in self.holds:
            return  # a reservation appended twice: the first one stands
        if fact.node in self.gone:
            out.append(Denied(fact.rid, fact.node, fact.app, fact.cid, GONE))
            return
        hold = Hold(fact, dict(fact.rooms))
        self.holds[fact.rid] = hold
        if not self._decide(hold, out):
            self.waiting[fact.rid] = hold

    def _wake(self, out: list[Effect]) -> None:
        """Decide the waiting reservations, oldest first, until none can be."""
        progress = bool(self.waiting)
        while progress:
            progress = False
            for hold in list(self.waiting.values()):
                if self._decide(hold, out):
                    progress = True

    def _decide(self, hold: Hold, out: list[Effect]) -> bool:
        """Grant, refuse or leave waiting; True when decided."""
        fact = hold.fact
        rules = self.rules(fact.app)
        rooms = self.rooms.get(fact.app, {})
        verdicts = {
            name: self._verdict(rules, rooms.get(name), name, fact) for name in hold.entries
        }
        found = list(verdicts.values())
        definite = [v for v in found if v in (FULL, MISSING)]
        if definite:
            reason = definite[0]
        elif RETRY in found:
            reason = RETRY
        elif _WAIT in found:
            return False
        else:
            creates = tuple(n for n, v in verdicts.items() if v == _CREATE)
            census = self._census_verdict(rules, fact, creates)
            if census == _WAIT:
                return False
            reason = census if census != _GRANT else ""
        self.waiting.pop(fact.rid, None)
        if reason:
            del self.holds[fact.rid]
            out.append(Denied(fact.rid, fact.node, fact.app, fact.cid, reason))
            return True
        hold.granted = True
        hold.creates = creates
        app_rooms = self.rooms.setdefault(fact.app, {})
        for name in hold.entries:
            room = app_rooms.get(name)
            if room is None:
                room = app_rooms[name] = rules.new_room(name)
                room.creator = fact.rid
            room.holds[fact.rid] = fact.cid
        if fact.count is not None and rules.max_rooms_per_app:
            claimed = dict.fromkeys([*fact.count, *self._counted_creates(rules, creates)])
            self._census_of(fact.app, rules).pending[fact.rid] = list(claimed)
        out.append(Granted(fact.rid, fact.node, hold.creates, committed=fact.join))
        if fact.join:
            self._commit(fact.rid, (), out)
        return True

    def _verdict(self, rules: RoomRules, room: RoomState | None, name: str, fact: Reserve) -> str:
        if room is None:
            if name == rules.default_room:
                return _CREATE
            if not rules.room_auto_create_enable:
                return MISSING
            limited = rules.max_rooms_per_app > 0
            if limited and name not in fact.covered and fact.count is None:
                return RETRY
            return _CREATE
        if room.creator is not None or fact.cid in room.holds.values():
            return _WAIT  # a creation, or this connection's own other request, not settled
        if fact.cid in room.members:
            return _GRANT  # joining again is not counted twice
        limit = rules.room_max_connection
        if not limit or room.taken() < limit:
            return _GRANT
        if len(room.members) >= limit:
            return FULL
        return _WAIT

    def _census_verdict(self, rules: RoomRules, fact: Reserve, creates: tuple[str, ...]) -> str:
        limit = rules.max_rooms_per_app
        if fact.count is None or not limit:
            return _GRANT
        census = self._census_of(fact.app, rules)
        claimed = {*fact.count, *self._counted_creates(rules, creates)}
        if len(census.names() | claimed) <= limit:
            return _GRANT
        if len(set(census.committed) | claimed) > limit:
            return TOO_MANY
        return _WAIT

    @staticmethod
    def _counted_creates(rules: RoomRules, creates: tuple[str, ...]) -> list[str]:
        """The default room is counted from the start: creating it claims nothing."""
        return [name for name in creates if name != rules.default_room]

    def _census_of(self, app: str, rules: RoomRules) -> Census:
        census = self.census.get(app)
        if census is None:
            census = self.census[app] = Census()
            if rules.default_room is not None:
                census.committed[rules.default_room] = [""]
        return census

    def _commit(self, rid: str, created: Iterable[str], out: list[Effect]) -> None:
        hold = self.holds.get(rid)
        if hold is None or not hold.granted:
            return  # ended already (aborted by node-gone), or never granted
        del self.holds[rid]
        fact = hold.fact
        rules = self.rules(fact.app)
        app_rooms = self.rooms.get(fact.app, {})
        for name, entry in hold.entries.items():
            room = app_rooms[name]
            room.holds.pop(rid, None)
            if room.creator == rid:
                room.creator = None
                room.created = True
                if rules.max_rooms_per_app and name != rules.default_room:
                    room.permit = rid
                out.append(RoomCreated(fact.app, name))
                self._kept(fact.app, name, room, made_here=False, out=out)
            member = room.members.get(fact.cid)
            if member is None:
                room.members[fact.cid] = RoomMember(fact.node, fact.login, entry)
            else:
                member.node, member.login, member.entry = fact.node, fact.login, entry
            out.append(Admitted(rid, fact.app, name, fact.cid, fact.node, entry))
        census = self.census.get(fact.app)
        names = census.pending.pop(rid, None) if census is not None else None
        if census is not None and names is not None:
            made = {*created, *hold.creates}
            for name in names:
                if name in made:
                    census.committed.setdefault(name, []).append(rid)

    def _abort(self, rid: str, by: str, out: list[Effect], *, reaped: bool = False) -> None:
        hold = self.holds.pop(rid, None)
        if hold is None:
            return
        self.waiting.pop(rid, None)
        fact = hold.fact
        census = self.census.get(fact.app)
        if census is not None:
            census.pending.pop(rid, None)
        if not hold.granted:
            return
        app_rooms = self.rooms.get(fact.app, {})
        for name in hold.entries:
            room = app_rooms[name]
            room.holds.pop(rid, None)
            if room.creator == rid:
                room.creator = None
                rules = self.rules(fact.app)
                if room.keeping:  # server code kept it meanwhile: made by that, not the join
                    room.created = True
                    out.append(RoomCreated(fact.app, name))
                    self._kept(fact.app, name, room, made_here=True, out=out)
                elif reaped and rules.max_rooms_per_app and name != rules.default_room:
                    room.permit = rid  # its node may have committed the census claim first
            self._reclaim(fact.app, name, by, out)

    def _update(self, fact: Update, out: list[Effect]) -> None:
        app_rooms = self.rooms.get(fact.app, {})
        for name, entry in fact.rooms.items():
            room = app_rooms.get(name)
            if room is None:
                continue
            member = room.members.get(fact.cid)
            if member is not None and member.login == fact.login:
                member.entry = entry
                out.append(Updated(fact.app, name, fact.cid, entry))
        for hold in self.holds.values():  # admitted with the new entry when committed
            if (hold.fact.app, hold.fact.cid, hold.fact.login) == (fact.app, fact.cid, fact.login):
                for name, entry in fact.rooms.items():
                    if name in hold.entries:
                        hold.entries[name] = entry

    def _leave(self, fact: Leave, out: list[Effect]) -> None:
        app_rooms = self.rooms.get(fact.app, {})
        for name in fact.rooms:
            room = app_rooms.get(name)
            member = room.members.get(fact.cid) if room is not None else None
            if room is None or member is None or member.login != fact.login:
                continue  # left already, or a later login's membership
            del room.members[fact.cid]
            out.append(Left(fact.app, name, fact.cid, member.node))
            self._reclaim(fact.app, name, fact.by, out)

    def _set_field(self, fact: SetField, out: list[Effect]) -> None:
        rules = self.rules(fact.app)
        room = self.rooms.get(fact.app, {}).get(fact.room)
        if room is None and fact.room == rules.default_room:
            room = self.rooms.setdefault(fact.app, {})[fact.room] = rules.new_room(fact.room)
            room.created = True
        if room is None or not room.created:
            return  # no such room (server code raced its removal): nothing to set
        room.fields[fact.name] = [fact.value, fact.shared]
        room.persistent = True
        out.append(FieldSet(fact.app, fact.room, fact.name, fact.value, fact.shared))

    def _keep(self, fact: Keep, out: list[Effect]) -> None:
        """As ``control.create_room``: the room made if missing, kept when empty from now on.
        A room a join is creating is settled with it (``_kept``)."""
        app_rooms = self.rooms.setdefault(fact.app, {})
        room = app_rooms.get(fact.room)
        made = room is None
        if room is None:
            room = app_rooms[fact.room] = self.rules(fact.app).new_room(fact.room)
            room.created = True
            out.append(RoomCreated(fact.app, fact.room))
        room.persistent = True
        if room.created:
            out.append(RoomKept(fact.rid, fact.node, fact.app, fact.room, made))
        else:
            room.keeping.append([fact.rid, fact.node])

    @staticmethod
    def _kept(app: str, name: str, room: RoomState, *, made_here: bool, out: list[Effect]) -> None:
        """The ``keep`` facts waiting on a room's creation settled (``made_here``: the first
        one made it)."""
        for n, (rid, node) in enumerate(room.keeping):
            out.append(RoomKept(rid, node, app, name, made_here and n == 0))
        room.keeping.clear()

    def _remove(self, fact: Remove, out: list[Effect]) -> None:
        """As ``control.delete_room``: an empty room gone, even kept when empty; a room with
        members, or places held (a join committed after this would find it), stays."""
        app_rooms = self.rooms.get(fact.app, {})
        room = app_rooms.get(fact.room)
        result = ""
        if room is None:
            if fact.room != self.rules(fact.app).default_room:  # the default room: always there
                result = MISSING
        elif room.members or room.holds or room.creator is not None:
            result = OCCUPIED
        else:
            del app_rooms[fact.room]
            if not app_rooms:
                del self.rooms[fact.app]
            out.append(RoomRemoved(fact.app, fact.room))
            if room.permit is not None:
                out.append(ToRelease(fact.app, fact.room, room.permit, fact.node))
        out.append(RoomDeleted(fact.rid, fact.node, fact.app, fact.room, result))

    def _release(self, fact: Release) -> None:
        census = self.census.get(fact.app)
        permits = census.committed.get(fact.room) if census is not None else None
        if census is None or permits is None or fact.permit not in permits:
            return
        permits.remove(fact.permit)
        if not permits:
            del census.committed[fact.room]

    def _node_gone(self, fact: NodeGone, out: list[Effect]) -> None:
        if fact.node not in self.gone:
            self.gone[fact.node] = None
            while len(self.gone) > GONE_KEPT:
                del self.gone[next(iter(self.gone))]
        for rid in [rid for rid, h in self.holds.items() if h.fact.node == fact.node]:
            self._abort(rid, fact.by, out, reaped=True)
        for app, app_rooms in list(self.rooms.items()):
            for name, room in list(app_rooms.items()):
                gone = [cid for cid, m in room.members.items() if m.node == fact.node]
                for cid in gone:
                    del room.members[cid]
                    out.append(Left(app, name, cid, fact.node))
                if gone:
                    self._reclaim(app, name, fact.by, out)

    def _reclaim(self, app: str, name: str, by: str, out: list[Effect]) -> None:
        """Forget a room nobody is in or holds a place in, unless it is kept when empty."""
        app_rooms = self.rooms[app]
        room = app_rooms[name]
        if room.members or room.holds or room.creator is not None:
            return
        if room.created and (room.persistent or not self.rules(app).reclaim_empty_rooms):
            return
        del app_rooms[name]
        if not app_rooms:
            del self.rooms[app]
        if room.created:
            out.append(RoomRemoved(app, name))
        if room.permit is not None:
            out.append(ToRelease(app, name, room.permit, by))

    # -- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> Json:
        """The whole state as JSON-ready data: ``restore`` of it, then the rest of the log,
        ends where the whole log does."""
        return {
            "v": VERSION,
            "rooms": {
                app: {
                    name: {
                        "m": [[cid, m.node, m.login, m.entry] for cid, m in room.members.items()],
                        "f": {name: list(pair) for name, pair in room.fields.items()},
                        "p": room.persistent,
                        "c": room.created,
                        "permit": room.permit,
                        "k": [list(pair) for pair in room.keeping],
                    }
                    for name, room in app_rooms.items()
                }
                for app, app_rooms in self.rooms.items()
            },
            "holds": [
                [to_json(h.fact), dict(h.entries), h.granted, list(h.creates)]
                for h in self.holds.values()
            ],
            "census": {
                app: {
                    "c": {name: list(permits) for name, permits in census.committed.items()},
                    "p": {rid: list(names) for rid, names in census.pending.items()},
                }
                for app, census in self.census.items()
            },
            "gone": list(self.gone),
        }

    @classmethod
    def restore(cls, data: Any, rules: Callable[[str], RoomRules]) -> Partition:
        """A partition from ``snapshot``'s data; ``FactError`` for data it cannot read."""
        try:
            return cls._restore(data, rules)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, FactError):
                raise
            raise FactError(f"unreadable partition snapshot: {exc!r}") from None

    @classmethod
    def _restore(cls, data: Any, rules: Callable[[str], RoomRules]) -> Partition:
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise FactError("not a partition snapshot of this version")
        part = cls(rules)
        for app, app_rooms in _object(data["rooms"]).items():
            rooms = part.rooms[app] = {}
            for name, raw in _object(app_rooms).items():
                raw = _object(raw)
                room = rooms[name] = RoomState(
                    fields={str(k): _pair(v) for k, v in _object(raw["f"]).items()},
                    persistent=_flag(raw["p"]),
                    created=_flag(raw["c"]),
                    permit=_optional_text(raw.get("permit")),
                    keeping=[[_str(r), _str(n)] for r, n in map(_list, _list(raw.get("k", [])))],
                )
                for item in _list(raw["m"]):
                    cid, node, login, entry = _list(item)
                    room.members[_str(cid)] = RoomMember(_str(node), _int(login), _object(entry))
        for item in _list(data["holds"]):
            raw_fact, entries, granted, creates = _list(item)
            fact = from_json(raw_fact)
            if not isinstance(fact, Reserve):
                raise FactError("a held reservation is not a reservation")
            hold = Hold(fact, {_str(k): _object(v) for k, v in _object(entries).items()})
            hold.granted = _flag(granted)
            hold.creates = tuple(_str(n) for n in _list(creates))
            part.holds[fact.rid] = hold
            if not hold.granted:
                part.waiting[fact.rid] = hold
            if hold.granted:
                for name in hold.entries:
                    room = part.rooms[fact.app][name]
                    room.holds[fact.rid] = fact.cid
                    if name in hold.creates:
                        room.creator = fact.rid
        for app, raw in _object(data["census"]).items():
            raw = _object(raw)
            census = part.census[app] = Census()
            for name, permits in _object(raw["c"]).items():
                census.committed[name] = [_str(p, empty=True) for p in _list(permits)]
            for rid, names in _object(raw["p"]).items():
                census.pending[rid] = [_str(n) for n in _list(names)]
        part.gone = dict.fromkeys(_str(n) for n in _list(data["gone"]))
        return part


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FactError("snapshot: an object expected")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise FactError("snapshot: a list expected")
    return value


def _str(value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str) or not (value or empty):
        raise FactError("snapshot: a name expected")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FactError("snapshot: an integer expected")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FactError("snapshot: a boolean expected")
    return value


def _pair(value: Any) -> list[Any]:
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], bool):
        raise FactError("snapshot: a field [value, shared] expected")
    return value
