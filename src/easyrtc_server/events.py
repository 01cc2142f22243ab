"""What the server tells the operating side (metrics, webhooks, the admin API) as it runs.

``EasyRtcServer`` calls a ``ServerEvents`` at a handful of points (a socket opened, an event was
handled, pushes went out, a socket closed) and knows nothing of who listens. ``ServerEvents``
turns those calls into the events operators care about (a login, a refusal with its code, a
member joining or leaving a room, a room starting or finishing) and hands them to its
listeners. Listeners must be cheap and must not await: they run on the signaling path, so
anything slow (an HTTP request) is queued and done elsewhere.

What happened is read from the outcome, where the core records it as it happens
(``outcome.LoggedIn``, ``Joined``, ``Rejected``; the rooms left are ``Outcome.left``), never
recovered from wire bodies or by comparing room sets. A relayed message's outcome records
nothing, so nothing is done for it beyond ``received``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from .logsafe import refusals
from .protocol.outcome import Joined, LoggedIn, Outcome, Rejected

log = logging.getLogger("easyrtc_server")

if TYPE_CHECKING:
    from .protocol.core import Peer
    from .protocol.model import Connection
    from .transport import Link


class Member(NamedTuple):
    """One connection in one room, as listeners are told about it."""

    app: str
    room: str
    easyrtcid: str
    username: str | None


class Listener:
    """Receives server events; override what you need. Must not block or await."""

    def opened(self, peer: Peer, link: Link) -> None:
        """A socket connected."""

    def received(self, event: str, msg_type: str | None, out: Outcome) -> None:
        """An event from a client was handled; ``out`` is what the server does about it."""

    def sent(self, out: Outcome) -> None:
        """The server carried out ``out`` (replies and pushes)."""

    def logged_in(self, conn: Connection) -> None:
        """A login succeeded."""

    def refused(self, code: str) -> None:
        """A login was refused with EasyRTC error ``code``."""

    def joined(self, member: Member, first: bool) -> None:
        """A connection entered a room; ``first``: the room had nobody before (it started)."""

    def left(self, member: Member, last: bool) -> None:
        """A connection left a room; ``last``: the room is now empty (it finished)."""

    def closed(self, peer: Peer, reason: str) -> None:
        """A socket is gone; ``reason`` is the transport's (``slow consumer``, …) or empty."""

    def hook_timed(self, name: str, seconds: float) -> None:
        """A call of hook ``name`` took ``seconds`` (wall clock, awaits included)."""


class ServerEvents:
    """The server's side of the seam: a few calls in, listener events out."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        self.connected_since: dict[str, float] = {}
        """Wall-clock time (seconds) each open socket connected, by easyrtcid."""
        self._occupancy: dict[tuple[str, str], int] = {}
        """Members of each (application, room) this server told its listeners of."""

    def add(self, listener: Listener) -> None:
        self.listeners.append(listener)

    # -- called by the server ----------------------------------------------------------------

    def opened(self, peer: Peer, link: Link) -> None:
        self.connected_since[peer.easyrtcid] = time.time()
        for listener in self.listeners:
            listener.opened(peer, link)

    def received(self, peer: Peer, event: str, data: Any, out: Outcome) -> None:
        msg_type = data.get("msgType") if type(data) is dict else None
        if type(msg_type) is not str:
            msg_type = None
        for listener in self.listeners:
            listener.received(event, msg_type, out)
        if out.happened is not None or out.left:
            self._happened(out, login=event == "easyrtcAuth", by=peer)

    def sent(self, out: Outcome) -> None:
        for listener in self.listeners:
            listener.sent(out)

    @contextmanager
    def hook(self, name: str) -> Iterator[None]:
        """Around the server's call of hook ``name``: its duration to the listeners."""
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            for listener in self.listeners:
                listener.hook_timed(name, seconds)

    def closed(self, peer: Peer, link: Link | None, out: Outcome) -> None:
        """The socket is gone, and ``out`` is what its close did (the rooms it left)."""
        self.connected_since.pop(peer.easyrtcid, None)
        if out.left:
            self._happened(out, login=False, by=peer)
        reason = link.close_reason if link is not None else ""
        for listener in self.listeners:
            listener.closed(peer, reason)

    def departed(self, out: Outcome) -> None:
        """Connections of another process that died left the rooms ``out`` lists (this
        process reaped them, for it). Their sockets were never this process's: only the rooms
        left are told; the last of a room's is ``last`` when the room has nobody left anywhere."""
        listeners = self.listeners
        pairs = out.left or []
        final = {(conn.app.name, room): i for i, (conn, room) in enumerate(pairs)}
        for i, (conn, room) in enumerate(pairs):
            key = (conn.app.name, room)
            remains = conn.app.rooms.get(room)
            last = final[key] == i and (remains is None or not remains.members)
            member = Member(key[0], room, conn.easyrtcid, conn.username)
            for listener in listeners:
                listener.left(member, last)

    # -- what happened -----------------------------------------------------------------------

    def _happened(self, out: Outcome, *, login: bool, by: Peer) -> None:
        """Log the refusals ``out`` records (throttled per client, at DEBUG for one not logged
        in) and tell the listeners the rest: a login's result, the rooms left, then the rooms
        entered."""
        listeners = self.listeners
        happened = out.happened or ()
        for event in happened:
            if type(event) is LoggedIn:
                for listener in listeners:
                    listener.logged_in(event.conn)
            elif type(event) is Rejected:
                cid, code = event.easyrtcid, event.code
                known = by.connection is not None and cid == by.easyrtcid
                line = "rejected %s from %s: %s"
                refusals.note(cid, known, line, event.what, cid, code, logger=log)
                if login:
                    for listener in listeners:
                        listener.refused(code)
        occupancy = self._occupancy
        for conn, room in out.left or ():
            key = (conn.app.name, room)
            count = occupancy.get(key, 1) - 1
            if count <= 0:
                occupancy.pop(key, None)
            else:
                occupancy[key] = count
            member = Member(key[0], room, conn.easyrtcid, conn.username)
            for listener in listeners:
                listener.left(member, count <= 0)
        for event in happened:
            if type(event) is Joined:
                conn = event.conn
                key = (conn.app.name, event.room)
                count = occupancy[key] = occupancy.get(key, 0) + 1
                member = Member(key[0], event.room, conn.easyrtcid, conn.username)
                for listener in listeners:
                    listener.joined(member, count == 1)
