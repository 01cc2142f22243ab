"""The whole replicated state as one JSON document, so a node joining a running cluster need
not read the log from its beginning (and the log can be trimmed).

``dump`` writes what every replica holds alike: applications with their fields, rooms (members
in join order with join times and apiFields, room fields), connections (username, presence,
fields, session, groups), sessions, groups, each peer's owner node, and the resume keys'
digests with the held connections and their queues (``cluster.holds``), and each node's last
sequence number applied (``Replica.seqs``, for ``ordering``). ``load`` rebuilds a
replica from it. What is not replicated stays out: ``peer.data`` (the origin's hooks' own),
a login's credential (held by the client's node alone, never in Redis), coalescing
bookkeeping (per node: ``coalescing``).

A snapshot is only taken between decisions (no login or ``roomJoin`` waiting for its origin's
hooks), since a pending decision holds references into the state that JSON cannot carry.
Applications keep the protocol options of the loading node's own application of that name
(server code creates those the same way on every node), else the server's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson

from ..protocol.model import (
    Application,
    Connection,
    Group,
    Membership,
    Peer,
    Room,
    Session,
)
from ..protocol.roomdata import client_entry
from .log import decode_fields, encode_fields

if TYPE_CHECKING:
    from .replica import Replica

VERSION = 1


def dump(replica: Replica) -> dict[str, Any]:
    """The replica's state as JSON-ready data."""
    state = replica.core.state
    apps: dict[str, Any] = {}
    for name, app in state.apps.items():
        apps[name] = {
            "persistent": app.persistent,
            "fields": encode_fields(app.fields),
            "rooms": {
                room_name: {
                    "persistent": room.persistent,
                    "fields": encode_fields(room.fields),
                    "members": [[cid, m.join_time, m.api_field] for cid, m in room.members.items()],
                }
                for room_name, room in app.rooms.items()
            },
            "connections": {
                cid: {
                    "username": conn.username,
                    "presence": conn.presence,
                    "fields": encode_fields(conn.fields),
                    "session": conn.session.easyrtcsid if conn.session is not None else None,
                    "groups": sorted(conn.groups),
                }
                for cid, conn in app.connections.items()
            },
            "sessions": {sid: encode_fields(s.fields) for sid, s in app.sessions.items()},
            "groups": {g: sorted(group.members) for g, group in app.groups.items()},
        }
    peers = {
        cid: [peer.remote_address, replica.owners.get(cid)]
        for cid, peer in state.peers.items()
        if cid in replica.owners or replica.holds.is_held(cid)  # a held one has no owner
    }
    return {
        "v": VERSION,
        "apps": apps,
        "peers": peers,
        "holds": replica.holds.dump(),
        "seqs": dict(replica.seqs),
    }


def encode(at: str, replica: Replica) -> bytes:
    """The snapshot document (the state at log id ``at``) as bytes. Never fails on what clients
    put in the state: a value nested deeper than orjson writes (254 levels, reachable with
    ``max_json_depth = 0``) is written by the standard library instead."""
    doc = {"id": at, "state": dump(replica)}
    try:
        return orjson.dumps(doc)
    except TypeError:
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode(raw: bytes | str) -> tuple[str, dict[str, Any]]:
    """The log id and state of a snapshot document; ``ValueError`` if it is not one."""
    try:
        doc = orjson.loads(raw)
        at, state = doc["id"], doc["state"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"unreadable snapshot: {exc!r}") from None
    if not isinstance(at, str) or not isinstance(state, dict):
        raise ValueError("unreadable snapshot: no id or state")
    return at, state


def load(replica: Replica, data: dict[str, Any]) -> None:
    """Replace the replica's state with ``data`` (from ``dump``)."""
    if data.get("v") != VERSION:
        raise ValueError(f"snapshot version {data.get('v')!r}, this node reads {VERSION}")
    state = replica.core.state
    old_apps = state.apps
    state.apps = {}
    state.peers = {}
    replica.owners = {}
    replica.pending = {}
    seqs = data.get("seqs")  # none in a snapshot of before ``ordering``: learnt from the log
    replica.seqs = {
        str(node): seq
        for node, seq in (seqs.items() if isinstance(seqs, dict) else ())
        if isinstance(seq, int)
    }
    for cid, (address, owner) in data["peers"].items():
        state.peers[cid] = Peer(cid, address)
        if owner is not None:
            replica.owners[cid] = owner
    for name, raw in data["apps"].items():
        known = old_apps.get(name)
        options = known.options if known is not None else state.options.protocol
        app = Application(name, options, decode_fields(raw["fields"]), persistent=raw["persistent"])
        state.apps[name] = app
        for sid, fields in raw["sessions"].items():
            app.sessions[sid] = Session(sid, decode_fields(fields))
        for group_name, group_members in raw["groups"].items():
            app.groups[group_name] = Group(group_name, set(group_members))
        for cid, c in raw["connections"].items():
            conn = Connection(
                cid,
                app,
                username=c["username"],
                presence=c["presence"],
                fields=decode_fields(c["fields"]),
                groups=set(c["groups"]),
            )
            if c["session"] is not None:
                session = app.sessions.setdefault(c["session"], Session(c["session"]))
                session.connections.add(cid)
                conn.session = session
            app.connections[cid] = conn
            peer = state.peers.get(cid)
            if peer is None:
                peer = state.peers[cid] = Peer(cid)
            peer.connection = conn
        for room_name, r in raw["rooms"].items():
            room = Room(room_name, decode_fields(r["fields"]), persistent=r["persistent"])
            app.rooms[room_name] = room
            for cid, join_time, api_field in r["members"]:
                conn = app.connections[cid]
                member = Membership(conn, room, join_time, api_field)
                room.members[cid] = member
                conn.rooms[room_name] = member
                room.entries[cid] = client_entry(member)
    replica.holds.load(data.get("holds") or {}, state.peers)
