"""What the state holds, and server code's actions on connections and rooms, for all of it.

The admin API (``operations/admin.py``) and server code's push API (``server.EasyRtcServer``:
``send_message``, ``disconnect``, ``set_room_field``) ask a ``Directory`` and never care where
the state lives. The engine picks it (``engine.Engine.directory``): where this process's core
holds the whole state (one process; the log cluster's nodes, each a full replica) it is the
``LocalDirectory``, reading and acting on the core as before; where each node holds only its
own connections (the partitioned cluster) it asks every node, each answering for its own
connections with its ``LocalDirectory``, and merges their answers
(``cluster.clusterqueries``).

Answers are JSON-shaped (the admin API's, ``OPENAPI``), so that a node can send its own over
the wire as they are; each list one node gives is cut at ``ANSWER_MAX_ITEMS`` (``truncated``).
A ``Found`` says which nodes did not answer in time (``missing``): the answer is then only
what the others hold.

A *connection* here is one with a socket in this process (or held for its client to resume):
another node's member a partitioned node knows only as a stub (``cluster.stubs``) is its own
node's to answer for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Protocol, TypeVar

from .protocol import control
from .protocol.model import Connection, Room

if TYPE_CHECKING:
    from .server import EasyRtcServer

Json = dict[str, Any]
T = TypeVar("T")

ANSWER_MAX_ITEMS: Final = 1000
"""Applications, rooms of an application, or occupants of a room one node lists at most in one
answer: a node's answer stays bounded however many clients it serves."""

Target = Literal["easyrtcid", "room", "group"]


@dataclass(slots=True)
class Found(Generic[T]):
    """An answer, and the nodes that did not give theirs in time (empty: a whole answer)."""

    value: T
    missing: list[str] = field(default_factory=list)
    truncated: bool = False
    """A list was cut at ``ANSWER_MAX_ITEMS`` (by a node, or in the merge)."""


class Directory(Protocol):
    """The state's connections and rooms as the admin API and the push API see them."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def applications(self) -> Found[list[Json]]:
        """``{name, rooms, connections}`` per application."""
        ...

    async def rooms(self, app: str) -> Found[list[Json] | None]:
        """``{name, members, fields}`` per room of ``app``; None: no such application."""
        ...

    async def room(self, app: str, room: str) -> Found[Json | None]:
        """One room with its ``occupants`` (``occupant``); None: no such room."""
        ...

    async def connection(self, easyrtcid: str) -> Found[Json | None]:
        """One authenticated connection (``occupant``); None: nobody has it."""
        ...

    async def disconnect(self, easyrtcid: str) -> Found[bool]:
        """Close its socket (a held connection leaves at once); False: nobody has it."""
        ...

    async def send_message(
        self, msg_type: str, msg_data: Any, app: str, target: Target, name: str
    ) -> Found[int]:
        """A server ``easyrtcMsg`` to the connection, room or group ``name``: how many got it.
        KeyError: no such application (or room)."""
        ...

    async def set_room_field(
        self, app: str, room: str, name: str, value: Any, *, shared: bool
    ) -> None:
        """Set a room field; its members are told. KeyError: no such application or room;
        ValueError: an improper field name."""
        ...


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


class LocalDirectory:
    """What this process's core holds: its connections, and the rooms it knows with the
    members among them. The whole state where the core is a full replica."""

    def __init__(self, server: EasyRtcServer) -> None:
        self.server = server

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def _here(self, conn: Connection) -> bool:
        """A connection of this process, not a stub of another node's (it has no peer)."""
        peer = self.server.core.peers.get(conn.easyrtcid)
        return peer is not None and peer.connection is conn

    def _members(self, room: Room) -> list[Connection]:
        return [m.connection for m in room.members.values() if self._here(m.connection)]

    # -- one node's answers (plain values; a cluster sends them as they are) ---------------

    def applications_here(self) -> tuple[list[Json], bool]:
        """Per application: ``{name, connections, rooms: [room names]}``; cut?"""
        here = self._here
        found = []
        apps = list(self.server.core.apps.values())
        for app in apps[:ANSWER_MAX_ITEMS]:
            found.append(
                {
                    "name": app.name,
                    "connections": sum(1 for conn in app.connections.values() if here(conn)),
                    "rooms": list(app.rooms)[:ANSWER_MAX_ITEMS],
                }
            )
        cut = len(apps) > ANSWER_MAX_ITEMS or any(len(app.rooms) > ANSWER_MAX_ITEMS for app in apps)
        return found, cut

    def rooms_here(self, app_name: str) -> tuple[list[Json] | None, bool]:
        app = self.server.core.apps.get(app_name)
        if app is None:
            return None, False
        rooms = list(app.rooms.values())
        cut = len(rooms) > ANSWER_MAX_ITEMS
        return [self._room(room) for room in rooms[:ANSWER_MAX_ITEMS]], cut

    def room_here(self, app_name: str, room_name: str) -> tuple[Json | None, bool]:
        app = self.server.core.apps.get(app_name)
        room = app.rooms.get(room_name) if app is not None else None
        if room is None:
            return None, False
        body = self._room(room)
        members = self._members(room)
        body["occupants"] = [self.occupant(conn) for conn in members[:ANSWER_MAX_ITEMS]]
        return body, len(members) > ANSWER_MAX_ITEMS

    def connection_here(self, easyrtcid: str) -> Json | None:
        conn = self.server.connection(easyrtcid)
        return self.occupant(conn) if conn is not None else None

    async def disconnect_here(self, easyrtcid: str) -> bool:
        """Close a socket of this process, or end a hold here; False if neither."""
        return await self.server.disconnect_here(easyrtcid)

    async def send_message_here(
        self, msg_type: str, msg_data: Any, app: str, target: Target, name: str
    ) -> int | None:
        """To the connections of this process only; None: the application (or room) is not
        known here."""
        state = self.server.core.state
        if target == "easyrtcid":
            peer = state.peers.get(name)
            recipients = [name] if peer is not None and peer.connection is not None else []
            extra = {}
        else:
            try:
                if target == "room":
                    everyone = control.room_members(state, app, name)
                    extra = {"targetRoom": name}
                else:
                    everyone = control.group_members(state, app, name)
                    extra = {"targetGroup": name}
            except KeyError:
                return None
            peers = state.peers
            recipients = [cid for cid in everyone if cid in peers]
        out = control.message_to(state, recipients, msg_type, msg_data, **extra)
        await self.server.apply(out)
        return len(recipients)

    def _room(self, room: Room) -> Json:
        return {
            "name": room.name,
            "members": len(self._members(room)),
            "fields": {name: f.value for name, f in room.fields.items()},
        }

    def occupant(self, conn: Connection) -> Json:
        """``conn`` as the admin API shows it: who, where from, since when, over what."""
        server = self.server
        link = server.links.get(conn.easyrtcid)
        return {
            "easyrtcid": conn.easyrtcid,
            "app": conn.app.name,
            "username": conn.username,
            "presence": dict(conn.presence),
            "rooms": list(conn.rooms),
            "remoteAddress": link.remote_address if link is not None else None,
            "connectedSince": iso(server.events.connected_since.get(conn.easyrtcid)),
            "transport": link.transport if link is not None else None,
        }

    # -- the Directory: this core is the whole state ---------------------------------------

    async def applications(self) -> Found[list[Json]]:
        found, cut = self.applications_here()
        apps = [
            {"name": a["name"], "rooms": len(a["rooms"]), "connections": a["connections"]}
            for a in found
        ]
        return Found(apps, truncated=cut)

    async def rooms(self, app: str) -> Found[list[Json] | None]:
        found, cut = self.rooms_here(app)
        return Found(found, truncated=cut)

    async def room(self, app: str, room: str) -> Found[Json | None]:
        found, cut = self.room_here(app, room)
        return Found(found, truncated=cut)

    async def connection(self, easyrtcid: str) -> Found[Json | None]:
        return Found(self.connection_here(easyrtcid))

    async def disconnect(self, easyrtcid: str) -> Found[bool]:
        """This process's socket or hold, else the engine's (a full replica's node closes
        another node's socket through it)."""
        if await self.disconnect_here(easyrtcid):
            return Found(True)
        return Found(self.server.engine.disconnect(easyrtcid))

    async def send_message(
        self, msg_type: str, msg_data: Any, app: str, target: Target, name: str
    ) -> Found[int]:
        """To every recipient this core knows (a full replica's engine routes the pushes for
        other nodes' sockets there)."""
        state = self.server.core.state
        extra: Json = {}
        if target == "easyrtcid":
            recipients = [name] if name in state.peers else []
        elif target == "room":
            recipients = control.room_members(state, app, name)
            extra["targetRoom"] = name
        else:
            recipients = control.group_members(state, app, name)
            extra["targetGroup"] = name
        await self.server.apply(control.message_to(state, recipients, msg_type, msg_data, **extra))
        return Found(len(recipients))

    async def set_room_field(
        self, app: str, room: str, name: str, value: Any, *, shared: bool
    ) -> None:
        await self.server.change("set_room_field", app, room, name, value, shared=shared)
