"""What the server tells the operating side (metrics, webhooks, the admin API) as it runs.

``EasyRtcServer`` calls a ``ServerEvents`` at a handful of points (a socket opened, an event was
handled, pushes went out, a socket closed) and knows nothing of who listens. ``ServerEvents``
turns those calls into the events operators care about (a login, a refusal with its code, a
member joining or leaving a room, a room starting or finishing) and hands them to its
listeners. Listeners must be cheap and must not await: they run on the signaling path, so
anything slow (an HTTP request) is queued and done elsewhere.

Room membership is followed by comparing a connection's rooms before and after the events that
can change them (a login, ``roomJoin``, ``roomLeave``, a close), never on relayed messages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from .outcome import Json, Outcome, Reply

if TYPE_CHECKING:
    from .core import Peer
    from .model import Connection
    from .transport import Link

_MEMBERSHIP_COMMANDS = frozenset(("roomJoin", "roomLeave"))


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
        self._rooms: dict[str, set[tuple[str, str]]] = {}
        self._occupancy: dict[tuple[str, str], int] = {}

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
        if event == "easyrtcAuth":
            self._login_result(peer, out)
            self._sync_rooms(peer)
        elif msg_type in _MEMBERSHIP_COMMANDS:
            self._sync_rooms(peer)

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

    def closed(self, peer: Peer, link: Link | None) -> None:
        """Called before the server forgets the connection: ``peer.connection`` is still set."""
        self.connected_since.pop(peer.easyrtcid, None)
        self._sync_rooms(peer, gone=True)
        sock = engine_socket_of(link) if link is not None else None
        reason = str(getattr(sock, "close_reason", ""))
        for listener in self.listeners:
            listener.closed(peer, reason)

    # -- derived events ----------------------------------------------------------------------

    def _login_result(self, peer: Peer, out: Outcome) -> None:
        for send in out.sends:
            if type(send) is not Reply:
                continue
            body = send.body
            msg_type = body.get("msgType")
            if msg_type == "token" and peer.connection is not None:
                for listener in self.listeners:
                    listener.logged_in(peer.connection)
            elif msg_type == "error":
                code = _error_code(body)
                for listener in self.listeners:
                    listener.refused(code)
            return

    def _sync_rooms(self, peer: Peer, *, gone: bool = False) -> None:
        conn = peer.connection
        cid = peer.easyrtcid
        before = self._rooms.get(cid, set())
        now: set[tuple[str, str]] = set()
        if conn is not None and not gone:
            now = {(conn.app.name, room) for room in conn.rooms}
        if before == now:
            if gone:
                self._rooms.pop(cid, None)
            return
        username = conn.username if conn is not None else None
        occupancy = self._occupancy
        for key in sorted(before - now):
            count = occupancy.get(key, 1) - 1
            if count <= 0:
                occupancy.pop(key, None)
            else:
                occupancy[key] = count
            member = Member(key[0], key[1], cid, username)
            for listener in self.listeners:
                listener.left(member, count <= 0)
        for key in sorted(now - before):
            count = occupancy.get(key, 0) + 1
            occupancy[key] = count
            member = Member(key[0], key[1], cid, username)
            for listener in self.listeners:
                listener.joined(member, count == 1)
        if now:
            self._rooms[cid] = now
        else:
            self._rooms.pop(cid, None)


def engine_socket_of(link: Link) -> Any:
    """The Engine.IO socket under a link of our own transport (through wrappers that expose
    the link they wrap as ``inner``), or None for other transports."""
    for _ in range(4):
        sock = getattr(link, "engine_socket", None)
        if sock is not None:
            return sock
        inner = getattr(link, "inner", None)
        if inner is None:
            return None
        link = inner
    return None


def _error_code(body: Json) -> str:
    data = body.get("msgData")
    code = data.get("errorCode") if isinstance(data, dict) else None
    return code if isinstance(code, str) else "unknown"
