"""The state of one EasyRTC server and every change to it that more than one rule makes.

``State`` owns the sockets (``peers``) and the applications with their rooms, connections,
sessions and groups (``model``), the clock and the id source. Creating applications and rooms,
joining and leaving rooms and removing a connection happen here and nowhere else, and each
records the ``roomData`` pushes that tell the other members. The protocol rules (``auth``,
``rooms``, ``relay``, ``ice``) and server code (``control``) build on these; this module knows
nothing of them, of messages or of sockets.

Every rule about an application reads that application's options (``app.options``); the
server-wide ``options`` only decide what happens before an application is known.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from .model import Application, Connection, Membership, Peer, Room, fields_from_obj
from .options import Options, ProtocolOptions
from .outcome import Json, Outcome
from .roomdata import client_entry, peers_of, remove_delta, update_delta

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def random_id() -> str:
    """16 unpredictable characters, the reference's length and alphabet."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


class State:
    """All applications and sockets of one server, with the clock and id source injected."""

    def __init__(
        self,
        options: Options | None = None,
        *,
        clock: Callable[[], int] | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.options = options or Options()
        self.now: Callable[[], int] = clock or (lambda: int(time.time() * 1000))
        self._new_id = new_id or random_id
        self.apps: dict[str, Application] = {}
        self.peers: dict[str, Peer] = {}
        self.create_app(self.options.app_default_name, persistent=True)

    # -- sockets -----------------------------------------------------------------------------

    def add_peer(self, remote_address: str | None = None) -> Peer:
        """A socket connected: give it an easyrtcid, unique among open sockets."""
        easyrtcid = self._new_id()
        while easyrtcid in self.peers:
            easyrtcid = self._new_id()
        peer = Peer(easyrtcid, remote_address)
        self.peers[easyrtcid] = peer
        return peer

    def is_open(self, peer: Peer) -> bool:
        """``peer``'s socket has not closed."""
        return self.peers.get(peer.easyrtcid) is peer

    def remove_peer(self, peer: Peer) -> Outcome:
        """The socket is gone: leave every room and forget the connection."""
        out = Outcome()
        if self.peers.get(peer.easyrtcid) is peer:
            del self.peers[peer.easyrtcid]
        if peer.connection is not None:
            self.remove_connection(peer.connection, out)
            peer.connection = None
        return out

    # -- applications and rooms --------------------------------------------------------------

    def create_app(
        self, name: str, *, options: ProtocolOptions | None = None, persistent: bool = False
    ) -> Application:
        """A new application with its fields and, when enabled, its default room."""
        opts = options or self.options.protocol
        app = Application(name, opts, fields_from_obj(opts.app_default_field_obj))
        app.persistent = persistent
        self.apps[name] = app
        if opts.room_default_enable:
            self.create_room(app, opts.room_default_name, persistent=True)
        return app

    def create_room(self, app: Application, name: str, *, persistent: bool = False) -> Room:
        room = Room(name, fields_from_obj(app.options.room_default_field_obj))
        room.persistent = persistent
        app.rooms[name] = room
        return room

    def reclaim_app(self, app: Application) -> None:
        """Forget an application that clients created once nobody uses it."""
        if not app.persistent and not app.connections and self.apps.get(app.name) is app:
            del self.apps[app.name]

    # -- membership --------------------------------------------------------------------------

    def join(self, conn: Connection, room_name: str, out: Outcome | None) -> Membership:
        """Put ``conn`` in a room (created if needed); tell its other members when ``out`` is
        given. Joining a room again keeps the membership and its join time, and tells the others
        again."""
        app = conn.app
        room = app.rooms.get(room_name) or self.create_room(app, room_name)
        member = room.members.get(conn.easyrtcid)
        if member is None:
            member = Membership(conn, room, self.now())
            room.members[conn.easyrtcid] = member
            conn.rooms[room_name] = member
        if out is not None:
            delta = update_delta(room_name, client_entry(member))
            self.tell_room(room, conn.easyrtcid, delta, out)
        return member

    def leave(self, conn: Connection, room_name: str, out: Outcome) -> bool:
        """Take ``conn`` out of a room and tell the members left; False if it was not in it."""
        member = conn.rooms.pop(room_name, None)
        if member is None:
            return False
        room = member.room
        del room.members[conn.easyrtcid]
        self.tell_room(room, conn.easyrtcid, remove_delta(room_name, conn.easyrtcid), out)
        if out.left is None:
            out.left = []
        out.left.append((conn, room_name))
        app = conn.app
        if (
            not room.members
            and not room.persistent
            and app.options.reclaim_empty_rooms
            and app.rooms.get(room_name) is room
        ):
            del app.rooms[room_name]
        return True

    def remove_connection(self, conn: Connection, out: Outcome) -> None:
        """Take ``conn`` out of every room (peers are told), its session, groups and app."""
        for room_name in list(conn.rooms):
            self.leave(conn, room_name, out)
        app = conn.app
        app.connections.pop(conn.easyrtcid, None)
        if conn.session is not None:
            conn.session.connections.discard(conn.easyrtcid)
            if not conn.session.connections and not conn.session.fields:
                app.sessions.pop(conn.session.easyrtcsid, None)
            conn.session = None
        for group_name in conn.groups:
            group = app.groups.get(group_name)
            if group is not None:
                group.members.discard(conn.easyrtcid)
        conn.groups.clear()
        self.reclaim_app(app)

    # -- telling the members -----------------------------------------------------------------

    def tell_room(self, room: Room, subject: str, delta: Json, out: Outcome) -> None:
        """Push one room's ``delta`` about ``subject`` to the room's other members."""
        rooms = {room.name: delta}
        for member_id in room.members:
            if member_id != subject:
                self.push_room_data(member_id, rooms, out)

    def tell_peers(self, conn: Connection, out: Outcome, *, with_api_field: bool) -> None:
        """One push to each member sharing a room with ``conn``: its entry in each shared room."""
        entries: dict[str, Json] = {}
        for peer_id, shared in peers_of(conn).items():
            rooms: Json = {}
            for name in shared:
                if name not in entries:
                    entry = client_entry(conn.rooms[name], with_api_field=with_api_field)
                    entries[name] = update_delta(name, entry)
                rooms[name] = entries[name]
            self.push_room_data(peer_id, rooms, out)

    def push_room_data(self, to: str, rooms: Json, out: Outcome) -> None:
        out.push(
            to,
            "easyrtcCmd",
            {
                "msgType": "roomData",
                "msgData": {"roomData": rooms},
                "easyrtcid": to,
                "serverTime": self.now(),
            },
        )
