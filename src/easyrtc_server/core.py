"""The EasyRTC protocol core: one incoming message in, what to send to whom out.

``Core`` owns the whole state (applications, rooms, connections, sessions, groups) and does no
I/O. A binding feeds it socket events (``open``, ``receive``, ``close``) and carries out the
returned ``Outcome``: an ordered list of sends, each either the acknowledgement to the sender
or a push to an easyrtcid. It knows nothing of sockets, tasks or time beyond an injected clock.

Dispatch is a table from ``msgType`` to handler (``COMMANDS``), so the whole command API is
visible in one place; the handlers live in ``auth``, ``rooms``, ``relay`` and ``ice``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from . import auth, ice, relay, rooms
from .errors import ErrorCode, error_message
from .model import Application, Connection, Room, fields_from_obj
from .options import Options
from .outcome import Json, Outcome

log = logging.getLogger("easyrtc_server")

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(slots=True, eq=False)
class Peer:
    """One socket. Its easyrtcid is drawn when it opens and never changes."""

    easyrtcid: str
    remote_address: str | None = None
    connection: Connection | None = None
    """Set once the socket has authenticated."""
    data: dict[str, Any] = field(default_factory=dict)
    """Free for server code (hooks) to keep what it learns about this socket."""


Handler = Callable[["Core", Connection, Json], Outcome]

COMMANDS: Final[dict[str, Handler]] = {
    "candidate": relay.relay_signal,
    "offer": relay.relay_signal,
    "answer": relay.relay_signal,
    "reject": relay.relay_signal,
    "hangup": relay.relay_signal,
    "getIceConfig": ice.get_ice_config,
    "getRoomList": rooms.get_room_list,
    "roomJoin": rooms.room_join,
    "roomLeave": rooms.room_leave,
    "setPresence": rooms.set_presence,
    "setRoomApiField": rooms.set_room_api_field,
    "setUserCfg": rooms.set_user_cfg,
    "stillAlive": rooms.still_alive,
}


class Core:
    """The state machine of one EasyRTC server (all applications, all sockets)."""

    def __init__(
        self,
        options: Options | None = None,
        *,
        clock: Callable[[], int] | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.options = options or Options()
        self.now: Callable[[], int] = clock or (lambda: int(time.time() * 1000))
        self._new_id = new_id or _random_id
        self.apps: dict[str, Application] = {}
        self.peers: dict[str, Peer] = {}
        self.create_app(self.options.app_default_name, persistent=True)

    # -- socket events ---------------------------------------------------------------------

    def open(self, remote_address: str | None = None) -> Peer:
        """A socket connected: give it an easyrtcid, unique among open sockets."""
        easyrtcid = self._new_id()
        while easyrtcid in self.peers:
            easyrtcid = self._new_id()
        peer = Peer(easyrtcid, remote_address)
        self.peers[easyrtcid] = peer
        return peer

    def receive(self, peer: Peer, event: str, payload: Any, has_ack: bool) -> Outcome:
        """Handle one event from ``peer``. Never raises for anything a client can send."""
        if event == "easyrtcAuth":
            if not has_ack:  # the reference drops such a socket without a word
                return Outcome(close=True)
            return auth.authenticate(self, peer, payload)
        if event not in ("easyrtcCmd", "easyrtcMsg") or not has_ack:
            return Outcome()
        conn = peer.connection
        if conn is None:
            return self.reject(peer.easyrtcid, event, ErrorCode.MSG_REJECT_NO_AUTH)
        if event == "easyrtcMsg":
            return relay.route_message(self, conn, payload)
        if not isinstance(payload, dict):
            code = ErrorCode.MSG_REJECT_BAD_TYPE
            if not isinstance(payload, list):
                code = ErrorCode.MSG_REJECT_BAD_STRUCTURE
            return self.reject(conn.easyrtcid, event, code)
        msg_type = payload.get("msgType")
        handler = COMMANDS.get(msg_type) if isinstance(msg_type, str) else None
        if handler is None:
            return self.reject(conn.easyrtcid, msg_type, ErrorCode.MSG_REJECT_BAD_TYPE)
        return handler(self, conn, payload)

    def close(self, peer: Peer) -> Outcome:
        """The socket is gone: leave every room and forget the connection."""
        out = Outcome()
        if self.peers.get(peer.easyrtcid) is peer:
            del self.peers[peer.easyrtcid]
        if peer.connection is not None:
            self.remove_connection(peer.connection, out)
            peer.connection = None
        return out

    # -- replies -----------------------------------------------------------------------------

    def reject(self, easyrtcid: str, what: Any, code: ErrorCode, *, close: bool = False) -> Outcome:
        """The error reply for one refused message, logged once."""
        log.info("rejected %s from %s: %s", what, easyrtcid, code.value)
        return Outcome(close=close).reply(error_message(code, self.now()))

    # -- state changes shared by the handlers ------------------------------------------------

    def create_app(
        self, name: str, *, options: Options | None = None, persistent: bool = False
    ) -> Application:
        """A new application with its fields and, when enabled, its default room."""
        opts = options or self.options
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

    def remove_connection(self, conn: Connection, out: Outcome) -> None:
        """Take ``conn`` out of every room (peers are told), its session, groups and app."""
        for room_name in list(conn.rooms):
            rooms.leave(self, conn, room_name, out)
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

    def reclaim_app(self, app: Application) -> None:
        """Forget an application that clients created once nobody uses it."""
        if not app.persistent and not app.connections and self.apps.get(app.name) is app:
            del self.apps[app.name]


def _random_id() -> str:
    """16 unpredictable characters, the reference's length and alphabet."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
