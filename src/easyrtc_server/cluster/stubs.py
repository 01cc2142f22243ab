"""Other nodes' members in a node's core, known only by their entries (issue 23; ``partitioned``).

In the partitioned design a node's ``Core`` holds its own connections in full; a member of
another node, in a room whose partition the node reads, it knows only by the clientList entry
that member's node put in the room's facts (``facts``). ``Stubs.apply`` takes the effects of one
fact (``Partition.apply``) and makes them so in the core: such a member is a *stub*, a
``Connection`` of its application with no socket here (no ``Peer``: the core's scope never
counts it as here), whose username and presence, and per room join time and apiField, are its
entry's. It joins, changes and leaves rooms through the core's own paths (``State.join``,
``leave``, ``tell_peers``, ``rooms.change_api_field``), so this node's members get the
``roomData`` pushes a full replica gives them today, coalesced alike when ``room_update_tick``
is on. A stub is dropped when it is in no room here.

What one fact's effects are told as: a stub new here entering rooms is told as a login is (one
push per member with its entry in every room they share); a known stub entering a room, as a
``roomJoin`` (one push per room); an entry whose apiField changed, as ``setRoomApiField`` (that
room, with the apiField, ``{}`` when cleared); any other change, as ``setPresence`` (one push per
member, every room of the fact, without the apiField); a member leaving, as a leave or a
disconnect (one push per room). docs/cluster.md, "Stubs", says where this differs.

Effects about this node's own connections are skipped (``node`` is the reader's own, or the
easyrtcid is a connection of the core that is not a stub): the node's own joins, changes and
leaves go through its own core, as in one process (its driver answers its client's request
once its ``RoomRequest`` is granted). Hooks and events are the member's node's business: the
outcome holds sends only. Admission, the census and reservations are the partition's
(``partition``); this module decides nothing, does no I/O and knows nothing of how facts travel.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final

from ..protocol import control
from ..protocol.model import Application, Connection, Field, Group, fields_from_obj
from ..protocol.outcome import Json, Outcome
from ..protocol.rooms import change_api_field
from ..protocol.state import State
from .partition import (
    Admitted,
    Effect,
    FieldSet,
    Left,
    Partition,
    RoomCreated,
    RoomDeleted,
    RoomKept,
    RoomRemoved,
    Updated,
)

KEYED: Final = "k"
"""In a member's entry in its partitions: its connection is keyed (what is relayed to it is
kept until confirmed). Never shown to a client: a stub's entry is built from its identity."""
GROUPS: Final = "g"
"""In a member's entry in its partitions: the groups server code put its connection in (sorted;
absent when none), so that a room or peer message with ``targetGroup`` reaches the members of
other nodes that one process would reach. Never shown to a client; a change of groups alone
tells nobody (``Stubs._update``)."""


class Stubs:
    """The stubs of one node's core, changed by the effects of the partitions it reads."""

    def __init__(self, state: State, node: str) -> None:
        """``state``: the node's core's (its scope must count only the node's own sockets as
        here, ``replica.NodeSockets``); ``node``: this node's id, whose effects are skipped."""
        self.state = state
        self.node = node
        self.members: dict[tuple[str, str], Connection] = {}
        """(application, easyrtcid) -> its stub."""
        self.keyed: set[str] = set()
        """The stubs whose entries say they are keyed (``KEYED``): what this node relays to
        them is kept until their clients confirm it (``partitioned.route``)."""

    def load(self, partition: Partition) -> None:
        """A partition this node starts reading (restored from its snapshot): its rooms and
        their fields, its members of other nodes as stubs, nobody told (no member of this
        node is in its rooms before it reads them). Then ``apply`` the facts that follow."""
        state = self.state
        for app_name, rooms in partition.rooms.items():
            for name, room in rooms.items():
                if not room.created:
                    continue
                app = state.apps.get(app_name) or state.create_app(app_name)
                core_room = app.rooms.get(name) or state.create_room(app, name)
                for field_name, (value, shared) in room.fields.items():
                    core_room.fields[field_name] = Field(value, shared)
                core_room.persistent = core_room.persistent or room.persistent
                for cid, member in room.members.items():
                    stub = self._stub(app, cid) if member.node != self.node else None
                    if stub is not None:
                        entry = member.entry
                        self._take_identity(stub, entry)
                        when, api_field = _join_time(entry), _api_field(entry)
                        state.join(stub, name, None, joined_at=when, api_field=api_field)

    def unload(self, partition: Partition) -> None:
        """A partition this node stops reading (none of its members is in its rooms): its
        stubs leave those rooms, nobody told, and are dropped when in no room here; its rooms
        left empty go, even those kept when empty (the partition has them: this node no
        longer hears of their deletion), but for the application's default room."""
        state = self.state
        for app_name, rooms in partition.rooms.items():
            for name, room in rooms.items():
                for cid in room.members:
                    stub = self.members.get((app_name, cid))
                    if stub is not None and name in stub.rooms:
                        state.leave(stub, name, Outcome(), tell=False)
                        if not stub.rooms:
                            self._drop(stub)
                app = state.apps.get(app_name)
                if app is not None and name != _default_room(app):
                    self._forget_room(app, name)

    def _stub(self, app: Application, cid: str) -> Connection | None:
        """``cid``'s stub, made if need be; None if it is this node's own connection."""
        stub = self.members.get((app.name, cid))
        if stub is None:
            if cid in app.connections:
                return None
            stub = Connection(cid, app)
            app.connections[cid] = stub
            self.members[(app.name, cid)] = stub
        return stub

    def take(self, conn: Connection) -> None:
        """This node's own ``conn`` (a held connection another node took over) is another
        node's member from now on: a stub, with its rooms and entries as they are, nobody told
        (``partitionholds``)."""
        self.members[(conn.app.name, conn.easyrtcid)] = conn
        self.keyed.add(conn.easyrtcid)  # (only keyed connections are handed over)

    def give(self, app: str, cid: str) -> Connection | None:
        """The stub of ``cid`` becomes this node's own connection (a held connection handed
        over to this node), with its rooms and entries; None if there is no such stub."""
        self.keyed.discard(cid)
        return self.members.pop((app, cid), None)

    def apply(self, effects: Sequence[Effect]) -> Outcome:
        """The effects of one fact, in order: the pushes to this node's members (sends only).
        A request's admissions are told together, at the first, and so are one member's
        changed entries (``RoomCreated`` between them only makes a room they make anyway)."""
        out = Outcome()
        admitted: dict[str, list[Admitted]] = {}
        updated: dict[tuple[str, str], list[Updated]] = {}
        for effect in effects:
            match effect:
                case Admitted():
                    admitted.setdefault(effect.rid, []).append(effect)
                case Updated():
                    updated.setdefault((effect.app, effect.cid), []).append(effect)
        for effect in effects:
            match effect:
                case Admitted():
                    run = admitted.pop(effect.rid, None)
                    if run is not None:
                        self._admit(run, out)
                case Updated():
                    changes = updated.pop((effect.app, effect.cid), None)
                    if changes is not None:
                        self._update(changes, out)
                case Left():
                    self._leave(effect, out)
                case RoomCreated():
                    self._room_created(effect)
                case RoomRemoved():
                    self._room_removed(effect)
                case FieldSet():
                    self._field_set(effect, out)
                case RoomKept():
                    self._room_kept(effect)
                case RoomDeleted(result=""):
                    self._room_deleted(effect)
        out.left = None  # the room_left hooks run on the member's node
        out.happened = None
        return out

    # -- members ---------------------------------------------------------------------------

    def _admit(self, run: list[Admitted], out: Outcome) -> None:
        first = run[0]
        if first.node == self.node:
            return
        state = self.state
        app = state.apps.get(first.app) or state.create_app(first.app)
        arriving = (first.app, first.cid) not in self.members
        stub = self._stub(app, first.cid)
        if stub is None:
            return  # this node's own connection
        self._take_identity(stub, run[-1].entry)
        for effect in run:
            member = stub.rooms.get(effect.room)
            if member is not None:  # in it already: its entry as admitted now
                member.api_field = _api_field(effect.entry)
            state.join(
                stub,
                effect.room,
                None if arriving else out,
                early=out if arriving else None,
                joined_at=_join_time(effect.entry),
                api_field=_api_field(effect.entry),
            )
        if arriving:  # told as a login is: its entry in every room shared, one push each
            rooms = [effect.room for effect in run]
            state.tell_peers(stub, out, with_api_field=True, rooms=rooms)

    def _update(self, run: list[Updated], out: Outcome) -> None:
        stub = self.members.get((run[0].app, run[0].cid))
        if stub is None:
            return  # this node's own connection, or one not in a room here
        state = self.state
        presence: list[str] = []
        regrouped = groups_of(run[-1].entry) != stub.groups
        for effect in run:
            member = stub.rooms.get(effect.room)
            if member is None:
                continue
            unseen = regrouped and _seen_alike(stub, member.api_field, effect.entry)
            self._take_identity(stub, effect.entry)
            if unseen:  # its groups alone changed: nothing a client sees
                continue
            api_field = _api_field(effect.entry)
            if api_field != member.api_field:  # as setRoomApiField: this room
                self._tell_presence(stub, presence, out)
                presence = []
                change_api_field(state, member, api_field, out)
            else:
                state.refresh_entry(member)
                presence.append(effect.room)
        self._tell_presence(stub, presence, out)

    def _tell_presence(self, stub: Connection, rooms: list[str], out: Outcome) -> None:
        """As setPresence: one push per member, the stub's entry in ``rooms`` without
        apiField."""
        if rooms:
            self.state.tell_peers(stub, out, with_api_field=False, rooms=rooms)

    def _leave(self, effect: Left, out: Outcome) -> None:
        if effect.node == self.node:
            return
        stub = self.members.get((effect.app, effect.cid))
        if stub is None:
            return
        state = self.state
        state.leave(stub, effect.room, out)
        if not stub.rooms:
            self._drop(stub)

    def _drop(self, stub: Connection) -> None:
        """In no room here: forgotten (its departure is not remembered: it may only have
        left the rooms this node reads; who is connected is the directory's business)."""
        app = stub.app
        del self.members[(app.name, stub.easyrtcid)]
        self.keyed.discard(stub.easyrtcid)
        set_groups(stub, frozenset())
        if app.connections.get(stub.easyrtcid) is stub:
            del app.connections[stub.easyrtcid]
        self.state.reclaim_app(app)

    # -- rooms -----------------------------------------------------------------------------

    def _room_created(self, effect: RoomCreated) -> None:
        """Made here too if its application is (else the ``Admitted`` that follows makes
        both)."""
        app = self.state.apps.get(effect.app)
        if app is not None and effect.room not in app.rooms:
            self.state.create_room(app, effect.room)

    def _room_removed(self, effect: RoomRemoved) -> None:
        """Gone from the partition: gone here unless the core keeps it (a member of this
        node's own, or a room made persistent here)."""
        app = self.state.apps.get(effect.app)
        room = app.rooms.get(effect.room) if app is not None else None
        if app is None or room is None or room.members or room.persistent:
            return
        del app.rooms[effect.room]
        self.state.updates.forget(room)
        self.state.reclaim_app(app)

    def _room_kept(self, effect: RoomKept) -> None:
        """As ``control.create_room`` here: the room is in the core, kept when empty."""
        state = self.state
        app = state.apps.get(effect.app) or state.create_app(effect.app)
        room = app.rooms.get(effect.room) or state.create_room(app, effect.room)
        room.persistent = True

    def _room_deleted(self, effect: RoomDeleted) -> None:
        """As ``control.delete_room`` here. A room this node's own clients are joining (the
        core put them in first, their partition decides after: ``partitioned``) stays, as the
        new room their join makes: not kept when empty, its fields the defaults."""
        app = self.state.apps.get(effect.app)
        room = app.rooms.get(effect.room) if app is not None else None
        if app is None or room is None:
            return
        if room.members:
            room.persistent = False
            room.fields = fields_from_obj(app.options.room_default_field_obj)
            return
        self._forget_room(app, effect.room)

    def _forget_room(self, app: Application, name: str) -> None:
        """An empty room out of the core (one with members stays)."""
        room = app.rooms.get(name)
        if room is None or room.members:
            return
        del app.rooms[name]
        self.state.updates.forget(room)
        self.state.reclaim_app(app)

    def _field_set(self, effect: FieldSet, out: Outcome) -> None:
        """As server code setting it here: kept in the room, its members told."""
        state = self.state
        app = state.apps.get(effect.app) or state.create_app(effect.app)
        if effect.room not in app.rooms:
            state.create_room(app, effect.room)
        try:
            told = control.set_room_field(
                state, effect.app, effect.room, effect.name, effect.value, shared=effect.shared
            )
        except (KeyError, ValueError):  # a name this node's options refuse: not set here
            return
        out.extend(told)

    def _take_identity(self, stub: Connection, entry: Json) -> None:
        """The stub's username and presence, as its entry says them, whether it is keyed,
        and its groups."""
        if entry.get(KEYED):
            self.keyed.add(stub.easyrtcid)
        _take_names(stub, entry)
        set_groups(stub, groups_of(entry))


def groups_of(entry: Json) -> set[str]:
    """The groups a member's entry names (``GROUPS``); junk left out."""
    names = entry.get(GROUPS)
    if type(names) is not list:
        return set()
    return {name for name in names if type(name) is str}


def set_groups(conn: Connection, names: AbstractSet[str]) -> None:
    """``conn`` in exactly the groups ``names`` of its application (made there if need be; a
    group left stays, as in one process)."""
    if conn.groups == names:
        return
    groups = conn.app.groups
    for name in conn.groups - set(names):
        group = groups.get(name)
        if group is not None:
            group.members.discard(conn.easyrtcid)
    for name in names:
        group = groups.get(name)
        if group is None:
            group = groups[name] = Group(name)
        group.members.add(conn.easyrtcid)
    conn.groups = set(names)


def _seen_alike(stub: Connection, api_field: Any, entry: Json) -> bool:
    """What ``entry`` shows a client (username, presence, apiField) is what it showed."""
    username = entry.get("username")
    return (
        (username if isinstance(username, str) and username else None) == stub.username
        and entry.get("presence") == stub.presence
        and _api_field(entry) == api_field
    )


def _take_names(stub: Connection, entry: Json) -> None:
    username = entry.get("username")
    stub.username = username if isinstance(username, str) and username else None
    presence = entry.get("presence")
    if isinstance(presence, dict):
        stub.presence = dict(presence)


def _default_room(app: Application) -> str | None:
    opts = app.options
    return opts.room_default_name if opts.room_default_enable else None


def _join_time(entry: Json) -> int | None:
    when = entry.get("roomJoinTime")
    return when if isinstance(when, int) and not isinstance(when, bool) else None


def _api_field(entry: Json) -> Any:
    return entry.get("apiField") or None
