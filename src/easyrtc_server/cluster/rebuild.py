"""Rebuilding a cluster's state from what its nodes hold, after Redis came back empty.

Redis is run without persistence: when it restarts, the log every replica was built from is
gone. Each node still holds its sockets and knows their connections, so each clears its replica
(``reset``), re-appends one ``rejoin`` entry per connection it holds (``snapshot``), and every
replica rebuilds the connection from it (``restore``). When a node has read back its own
rejoins, it pushes each of its members the whole list of each of its rooms (``full_lists``):
a member that vanished meanwhile (its node died while Redis was away) disappears from lists.

The same path re-registers a node's connections after it read its own ``node-gone`` (it was cut
off from Redis long enough to be reaped, but lived): its clients stay connected, their peers see
them leave and come back.

Everything here is a pure function of the replica's ``State``, like the protocol rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ..protocol.model import Connection, Group, Membership, Peer, Session
from ..protocol.outcome import Json, Outcome
from ..protocol.roomdata import client_entry, join_state, room_data
from ..protocol.state import State
from .log import NODE_GONE, REJOIN, LogEntry, close, decode_fields, encode_fields, rejoin
from .replica import Applied, Apply
from .snapshot import load as snapshot_load

if TYPE_CHECKING:
    from .node import ClusterNode

log = logging.getLogger("easyrtc_server.cluster")

APPENDS_AT_ONCE: Final = 64
"""Rejoin entries appended concurrently (each waits until this node applied it)."""


def snapshot(conn: Connection) -> Json:
    """What a replica needs to rebuild ``conn`` exactly: its application, name, presence,
    rooms in join order with their join times and apiFields, session, fields and groups.
    JSON-encodable (it travels in the log); never the credential (the node keeps its own)."""
    session = conn.session
    return {
        "easyrtcid": conn.easyrtcid,
        "app": conn.app.name,
        "username": conn.username,
        "presence": dict(conn.presence),
        "rooms": [[name, m.join_time, m.api_field] for name, m in conn.rooms.items()],
        "session": None if session is None else [session.easyrtcsid, encode_fields(session.fields)],
        "fields": encode_fields(conn.fields),
        "groups": sorted(conn.groups),
    }


def restore(state: State, snap: Json) -> Outcome:
    """Rebuild the connection of ``snap`` in ``state`` (replacing one with the same easyrtcid)
    and tell the members of its rooms, as a login does. Room limits are not checked: the
    connection was admitted before. Returns the pushes."""
    out = Outcome()
    easyrtcid = str(snap["easyrtcid"])
    app_name = str(snap["app"])
    app = state.apps.get(app_name) or state.create_app(app_name)
    peer = state.peers.get(easyrtcid)
    if peer is None:
        peer = state.peers[easyrtcid] = Peer(easyrtcid)
    elif peer.connection is not None:  # rejoined twice (reaped twice): the last one stands
        state.remove_connection(peer.connection, Outcome(), tell=False)
        peer.connection = None
        app = state.apps.get(app_name) or state.create_app(app_name)
    conn = Connection(easyrtcid, app, fields=decode_fields(snap.get("fields")))
    conn.username = snap.get("username")
    presence = snap.get("presence")
    if isinstance(presence, dict):
        conn.presence = dict(presence)
    app.connections[easyrtcid] = conn
    peer.connection = conn
    session = snap.get("session")
    if session is not None:
        sid, fields = str(session[0]), decode_fields(session[1])
        linked = app.sessions.get(sid)
        if linked is None:
            linked = app.sessions[sid] = Session(sid)
        for name, value in fields.items():
            linked.fields.setdefault(name, value)
        linked.connections.add(easyrtcid)
        conn.session = linked
    for group_name in snap.get("groups") or ():
        group = app.groups.get(group_name)
        if group is None:
            group = app.groups[group_name] = Group(group_name)
        group.members.add(easyrtcid)
        conn.groups.add(group_name)
    for name, join_time, api_field in snap.get("rooms") or ():
        room = app.rooms.get(name) or state.create_room(app, name)
        member = Membership(conn, room, int(join_time), api_field or None, seen=room.seq)
        room.members[easyrtcid] = member
        conn.rooms[name] = member
        room.entries[easyrtcid] = client_entry(member)
    state.tell_peers(conn, out, with_api_field=True)
    return out


def reset(state: State, keep: Iterable[str]) -> None:
    """Forget every connection without telling anyone, and every socket but those in ``keep``
    (this node's own, which stay open and unauthenticated until their rejoin is read back).
    What server code made (persistent applications and rooms, their fields) stays."""
    kept = set(keep)
    for peer in list(state.peers.values()):
        if peer.connection is not None:
            state.remove_connection(peer.connection, Outcome(), tell=False)
            peer.connection = None
        if peer.easyrtcid not in kept:
            del state.peers[peer.easyrtcid]
    for app in state.apps.values():
        app.sessions = {sid: s for sid, s in app.sessions.items() if s.fields}
        for session in app.sessions.values():
            session.connections.clear()
        for group in app.groups.values():
            group.members.clear()
    state.updates.reset([room for app in state.apps.values() for room in app.rooms.values()])


def full_lists(state: State, easyrtcids: Iterable[str]) -> Outcome:
    """One ``roomData`` push per connection of ``easyrtcids`` holding the whole current list
    (``clientList``, status ``update``: easyrtc.js replaces its list and tells the app) of
    each of its rooms."""
    out = Outcome()
    for easyrtcid in easyrtcids:
        peer = state.peers.get(easyrtcid)
        conn = peer.connection if peer is not None else None
        if conn is None or not conn.rooms:
            continue
        rooms: Json = {}
        for name, member in conn.rooms.items():
            state.updates.mark_current(member)
            data = join_state(member.room, state.client_list(member.room))
            data["roomStatus"] = "update"
            rooms[name] = data
        body = {**room_data(rooms), "easyrtcid": easyrtcid, "serverTime": state.now()}
        out.push(easyrtcid, "easyrtcCmd", body)
    return out


class Rebuilder:
    """One node's part in rebuilding the cluster state: it re-registers the connections of its
    own sockets when Redis came back empty (``rebuild``) or when it reads that it was declared
    gone, and appends the closes Redis missed while it was away (``tidy``).

    ``kinds`` are its entry kinds for the replica's apply table: ``rejoin``, and ``node-gone``
    wrapped. Made before the node's replica, which it reads only once entries are applied.
    """

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._todo: list[Json] = []
        """Snapshots still to append (Redis failed meanwhile): retried by ``tidy``."""
        self._task: asyncio.Task[None] | None = None
        self._stale: set[str] = set()
        self._credentials: dict[str, Any] = {}
        """easyrtcid -> credential of this node's connections being re-registered."""

    @property
    def kinds(self) -> dict[str, Apply]:
        return {NODE_GONE: self._node_gone, REJOIN: self._rejoin}

    @property
    def state(self) -> State:
        return self.node.replica.core.state

    def own(self) -> dict[str, Peer]:
        """The peers of this node's open sockets."""
        peers = self.state.peers
        return {cid: peers[cid] for cid in self.node.carrier.links if cid in peers}

    def own_snapshots(self) -> list[Json]:
        """The snapshots of this node's connections (their credentials kept here, for their
        rejoins: they never go to Redis)."""
        conns = [p.connection for p in self.own().values() if p.connection is not None]
        self._credentials = {conn.easyrtcid: conn.credential for conn in conns}
        return [snapshot(conn) for conn in conns]

    # -- Redis came back empty ---------------------------------------------------------------

    async def rebuild(self, epoch: str) -> None:
        """Clear the replica, read the new log from its start, re-register this node's
        connections, then give its members whole lists."""
        del epoch
        own = self.own()
        snaps = self.own_snapshots()
        replica = self.node.replica
        reset(self.state, keep=own)
        replica.owners.clear()
        replica.pending.clear()
        self.node.restart_log()
        await self._reregister(snaps)

    # -- the reader missed trimmed entries ----------------------------------------------------

    def adopt(self, data: dict[str, Any]) -> None:
        """Replace the replica's state with a snapshot's (``snapshot.dump``), keeping the peers
        of this node's open sockets (the server holds them): each takes its connection from
        the snapshot (with the credential this node kept), or none (not logged in then: its
        login is in the log after it).
        Raises what ``snapshot.load`` raises, the replica then unchanged."""
        own = self.own()
        replica = self.node.replica
        state = self.state
        before = (state.apps, state.peers, replica.owners, replica.pending, replica.seqs)
        try:
            snapshot_load(replica, data)
        except Exception:
            state.apps, state.peers, replica.owners, replica.pending, replica.seqs = before
            raise
        for cid, peer in own.items():
            fresh = state.peers.get(cid)
            conn = fresh.connection if fresh is not None else None
            if conn is not None and peer.connection is not None:
                conn.credential = peer.connection.credential  # kept here, never in Redis
            peer.connection = conn
            state.peers[cid] = peer
        state.updates.reset([room for app in state.apps.values() for room in app.rooms.values()])

    # -- apply-table entries -----------------------------------------------------------------

    def _node_gone(self, entry: LogEntry) -> Applied:
        """A node is gone; when it is this one (cut off from Redis past its TTL, but alive),
        its sockets stay open and their connections are re-registered."""
        replica = self.node.replica
        if entry.body.get("node") != self.node.node_id:
            return replica.node_gone(entry)
        own = self.own()
        snaps = self.own_snapshots()
        applied = replica.node_gone(entry)
        self.state.peers.update(own)  # unauthenticated until their rejoin is read back
        log.warning(
            "this node was declared gone while cut off from Redis: "
            "re-registering its %d connections",
            len(snaps),
        )
        self._start(snaps)
        return applied

    def _rejoin(self, entry: LogEntry) -> Applied:
        cid = str(entry.body["p"])
        replica = self.node.replica
        replica.owners[cid] = entry.node
        replica.pending.pop(cid, None)
        out = restore(self.state, entry.body["c"])
        peer = self.state.peers.get(cid)
        if entry.node == self.node.node_id and peer is not None and peer.connection is not None:
            peer.connection.credential = self._credentials.pop(cid, None)
        return Applied(peer, out)

    # -- re-registering ----------------------------------------------------------------------

    def _start(self, snaps: list[Json]) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = asyncio.create_task(self._reregister(snaps), name="cluster-rejoin")

    async def _reregister(self, snaps: list[Json]) -> None:
        """Append a ``rejoin`` per connection still open here, then push whole lists."""
        node = self.node
        links = node.carrier.links
        self._todo = [snap for snap in snaps if snap["easyrtcid"] in links]
        try:
            await node.registry.announce()  # alive first, so nobody reaps it again
            while self._todo:
                chunk = self._todo[:APPENDS_AT_ONCE]
                await asyncio.gather(*(node.append(self._entry(snap)) for snap in chunk))
                del self._todo[: len(chunk)]
        except Exception as exc:  # Redis failed again: ``tidy`` retries
            log.warning("re-registering this node's connections failed (%s): retrying", exc)
            return
        out = full_lists(self.state, list(links))
        await node.carrier.deliver(None, out, None)
        log.info("re-registered this node's connections")

    def _entry(self, snap: Json) -> LogEntry:
        node = self.node
        return rejoin(node.node_id, node.replica.now(), snap["easyrtcid"], snap)

    async def tidy(self) -> None:
        """Once per liveness round: finish a re-registration that failed, and close in the log
        the sockets of this node that closed while Redis was away (seen twice in a row, so a
        close on its way is not sent twice)."""
        if self._todo and (self._task is None or self._task.done()):
            self._start([snap for snap in self._todo])
            return
        node = self.node
        links = node.carrier.links
        me = node.node_id
        stale = {
            cid for cid, owner in node.replica.owners.items() if owner == me and cid not in links
        }
        again, self._stale = stale & self._stale, stale - self._stale
        for cid in sorted(again):
            await node.append(close(node.node_id, node.replica.now(), cid))
