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
from collections.abc import Callable, Collection
from typing import Any

from ..options import Options, ProtocolOptions
from .coalescing import Coalescer
from .hold import Holds
from .model import Application, Connection, Membership, Peer, Room, fields_from_obj
from .outcome import Joined, Json, Outcome
from .roomdata import client_entry, peers_of, remove_delta, update_delta
from .scope import AllSockets, SendScope

DEPARTURE_GRACE_MS = 10_000
"""How long after a connection left a message to it alone (``easyrtcMsg`` with its
``targetEasyrtcid``) is acknowledged and reaches nobody, instead of the reference's
``MSG_REJECT_GEN_FAIL`` (unless ``strict_errors``). Its peers cannot know at once: the
``removeClient`` delta is on its way while they go on sending; networked-aframe (``easyrtc``
adapter) sends its entity updates over the server when a closing page's data channel is gone, and
easyrtc.js shows the refusal in a dialog."""

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
        scope: SendScope | None = None,
    ) -> None:
        """``scope``: which sends the changes build (``scope``: a cluster node's own sockets
        and clients); None: every socket is here."""
        self.options = options or Options()
        self.now: Callable[[], int] = clock or (lambda: int(time.time() * 1000))
        self._new_id = new_id or random_id
        self.apps: dict[str, Application] = {}
        self.peers: dict[str, Peer] = {}
        self.scope: SendScope = scope or AllSockets()
        """Which sockets pushes are built for, and whether the reply is (``scope``)."""
        self.updates = Coalescer(self, self.options.room_update_tick, self.scope.here)
        """The member-list changes not told yet (``room_update_tick`` > 0)."""
        self.coalescing = self.updates.active
        """Member-list changes are announced once per ``room_update_tick``, not one by one."""
        self.holds = Holds(self.options, self.now)
        """Resume keys and the connections held for them (``hold``)."""
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

    def join(
        self,
        conn: Connection,
        room_name: str,
        out: Outcome | None,
        *,
        early: Outcome | None = None,
        joined_at: int | None = None,
        api_field: Any = None,
    ) -> Membership:
        """Put ``conn`` in a room (created if needed); tell its other members when ``out`` is
        given. Joining a room again keeps the membership and its join time, and tells the others
        again. ``early`` takes the pushes that must precede an untold join (coalescing: a
        member that left within the tick is announced gone first). ``joined_at`` and
        ``api_field``: a new membership's join time (None: now) and apiField, for a member
        known only by its entry (another node's, admitted there: ``cluster.stubs``)."""
        app = conn.app
        room = app.rooms.get(room_name) or self.create_room(app, room_name)
        cid = conn.easyrtcid
        member = room.members.get(cid)
        if member is None:
            if cid in room.changed:  # left within this tick: one delta cannot say both
                sink = out if out is not None else early
                self.updates.flush([room], sink if sink is not None else Outcome())
            when = self.now() if joined_at is None else joined_at
            member = Membership(conn, room, when, api_field, seen=room.seq)
            room.members[cid] = member
            conn.rooms[room_name] = member
            told = out if out is not None else early
            if told is not None:
                told.note(Joined(conn, room_name))
        room.entries[cid] = client_entry(member)
        if out is not None:
            if self.coalescing:
                self.updates.mark_changed(room, cid)
            else:
                delta = update_delta(room_name, room.entries[cid])
                self.tell_room(room, cid, delta, out)
        return member

    def leave(self, conn: Connection, room_name: str, out: Outcome, *, tell: bool = True) -> bool:
        """Take ``conn`` out of a room and tell the members left; False if it was not in it."""
        member = conn.rooms.pop(room_name, None)
        if member is None:
            return False
        room = member.room
        del room.members[conn.easyrtcid]
        room.entries.pop(conn.easyrtcid, None)
        if tell:
            if self.coalescing:
                self.updates.mark_changed(room, conn.easyrtcid)
            else:
                delta = remove_delta(room_name, conn.easyrtcid)
                self.tell_room(room, conn.easyrtcid, delta, out)
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
            self.updates.forget(room)
        return True

    def remove_connection(self, conn: Connection, out: Outcome, *, tell: bool = True) -> None:
        """Take ``conn`` out of every room (peers are told), its session, groups and app."""
        for room_name in list(conn.rooms):
            self.leave(conn, room_name, out, tell=tell)
        app = conn.app
        if app.connections.pop(conn.easyrtcid, None) is not None:
            self.remember_departure(app, conn.easyrtcid)
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

    def remember_departure(self, app: Application, easyrtcid: str) -> None:
        """Note when ``easyrtcid`` left, forgetting departures older than the grace."""
        now = self.now()
        departed = app.departed
        departed.pop(easyrtcid, None)
        departed[easyrtcid] = now
        while True:  # oldest first: stop at the first one still within the grace
            oldest = next(iter(departed))
            if now - departed[oldest] < DEPARTURE_GRACE_MS:
                break
            del departed[oldest]

    def refresh_entries(self, conn: Connection) -> None:
        """``conn``'s presence or username changed: its cached entry in every room follows."""
        for member in conn.rooms.values():
            member.room.entries[conn.easyrtcid] = client_entry(member)

    def refresh_entry(self, member: Membership) -> None:
        """A member's apiField changed."""
        member.room.entries[member.connection.easyrtcid] = client_entry(member)

    def client_list(self, room: Room) -> dict[str, Json]:
        """A room's clientList (a copy of the cache: later changes do not alter a reply)."""
        if len(room.entries) != len(room.members):  # a member added behind State's back
            room.entries = {cid: client_entry(m) for cid, m in room.members.items()}
        return dict(room.entries)

    # -- telling the members -----------------------------------------------------------------

    def tell_room(self, room: Room, subject: str, delta: Json, out: Outcome) -> None:
        """Push one room's ``delta`` about ``subject`` to the room's other members (those
        whose sockets are here: ``scope``)."""
        rooms = {room.name: delta}
        here = self.scope.here
        for member_id in room.members:
            if member_id != subject and (here is None or here(member_id)):
                self.push_room_data(member_id, rooms, out)

    def tell_peers(
        self,
        conn: Connection,
        out: Outcome,
        *,
        with_api_field: bool,
        rooms: Collection[str] | None = None,
    ) -> None:
        """One push to each member sharing a room with ``conn``: its entry in each shared room
        (coalescing: the change is noted, and told at the next flush). ``rooms``: only these
        of its rooms (None: all)."""
        if self.coalescing:
            for name, member in conn.rooms.items():
                if rooms is None or name in rooms:
                    self.updates.mark_changed(member.room, conn.easyrtcid)
            return
        entries: dict[str, Json] = {}
        for peer_id, shared in peers_of(conn, self.scope.here, rooms).items():  # this node's
            told: Json = {}
            for name in shared:
                if name not in entries:
                    entry = client_entry(conn.rooms[name], with_api_field=with_api_field)
                    entries[name] = update_delta(name, entry)
                told[name] = entries[name]
            self.push_room_data(peer_id, told, out)

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
