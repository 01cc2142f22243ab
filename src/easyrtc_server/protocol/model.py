"""The object model: sockets, applications, rooms, connections, sessions, groups, fields.

Glossary (the same words in every module, in the README and in the tests):

- **socket**: one socket.io connection of a client, from CONNECT to close. The server sees it
  as a `Peer` (it has an easyrtcid from the start) and reaches it through its **link**.
- **link**: a transport's handle on one socket (``transport.Link``: ``send``, ``close``, its
  address, transport kind and close reason); the only thing the server knows of the transport.
- **session**, unqualified: an Engine.IO session (``transport/engineio_*``: sid, heartbeats,
  polling or websocket); the EasyRTC ``easyrtcsid`` cookie session is `Session` below, always
  called the *EasyRTC session*.
- **connection**: an EasyRTC login (`Connection`): a socket that authenticated into an
  application, with its username, rooms, fields and presence. A socket has at most one.
- **peer**: the server's record of one socket (`Peer`), logged in or not; never "another
  client" (that is a connection, or an easyrtcid).
- **node**: one server process of a cluster (``cluster/node.py``), owning its sockets.
- **engine**: where the EasyRTC state changes (``engine.py``): in this process (`LocalEngine`)
  or through the cluster's log (``ClusterNode``); the server talks to one or the other.

Plain records with no behaviour beyond bookkeeping; ``state`` changes them, the protocol rules
live in ``auth``, ``rooms``, ``relay`` and ``ice``. Everything is keyed by validated strings in
dicts, never looked up as attributes, so a name like ``__proto__`` or ``constructor`` is just
a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..options import FieldObj, ProtocolOptions


@dataclass(slots=True)
class Field:
    """A named value set by server code; shared ones are sent to clients."""

    value: Any
    shared: bool = False


Fields = dict[str, Field]


def fields_from_obj(obj: FieldObj | None) -> Fields:
    """Fields from the reference's ``{NAME: {fieldValue, fieldOption: {isShared}}}`` form."""
    if not obj:
        return {}
    return {
        name: Field(spec["fieldValue"], bool(spec.get("fieldOption", {}).get("isShared", False)))
        for name, spec in obj.items()
    }


def shared_fields(fields: Fields) -> dict[str, dict[str, Any]] | None:
    """The wire form of the shared fields, or None when there are none."""
    shared = {
        name: {"fieldName": name, "fieldValue": f.value} for name, f in fields.items() if f.shared
    }
    return shared or None


@dataclass(slots=True, eq=False)
class Session:
    """A client-supplied ``easyrtcsid``: it grants nothing, it only carries fields."""

    easyrtcsid: str
    fields: Fields = field(default_factory=dict)
    connections: set[str] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class Group:
    """A set of connections of one application that server code may address at once."""

    name: str
    members: set[str] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class Membership:
    """One connection in one room: when it joined and its apiField there."""

    connection: Connection
    room: Room
    join_time: int
    api_field: Any = None
    """As the client set it: an object, or (a shape left unchecked) any JSON; None: unset."""
    seen: int = 0
    """The room's change number up to which this member's list is current (``room_update_tick``
    > 0: what a coalesced delta for it must still carry)."""


@dataclass(slots=True, eq=False)
class Room:
    name: str
    fields: Fields = field(default_factory=dict)
    members: dict[str, Membership] = field(default_factory=dict)
    persistent: bool = False
    """Kept when empty: the default room and rooms made by server code."""
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each member's clientList entry, in join order, kept current by ``State``: a token or
    ``roomJoin`` reply copies it instead of rebuilding N entries per join. Never mutate one."""
    seq: int = 0
    """Number of the room's last member-list change (coalesced updates)."""
    flushed: int = 0
    """``seq`` at the last coalesced update of the whole room."""
    changed: dict[str, int] = field(default_factory=dict)
    """Members changed (joined, updated, left) since then, with the number of their last
    change."""
    api_cleared: set[str] = field(default_factory=set)
    """Changed members whose apiField was cleared: their update says ``apiField: {}``."""


@dataclass(slots=True, eq=False)
class Connection:
    """An authenticated socket in one application."""

    easyrtcid: str
    app: Application
    username: str | None = None
    credential: Any = None
    presence: dict[str, Any] = field(default_factory=lambda: {"show": "chat", "status": None})
    """Rooms cache it in their entries: after changing it (or ``username``) outside a login,
    call ``State.refresh_entries``."""
    rooms: dict[str, Membership] = field(default_factory=dict)
    session: Session | None = None
    fields: Fields = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)
    entering_until: int = 0
    """Clock ms until which the connection is still entering its rooms (set at login, ended by
    its first ``roomJoin``): a room message to a room it is not in yet is not refused
    (``relay.ENTRY_GRACE_MS``)."""


@dataclass(slots=True, eq=False)
class Peer:
    """The server's record of one socket (logged in or not). Its easyrtcid is drawn when it
    opens, and changes once at most: when its login resumes a held connection, whose easyrtcid
    it takes (``hold``)."""

    easyrtcid: str
    remote_address: str | None = None
    connection: Connection | None = None
    """Set once the socket has authenticated."""
    data: dict[str, Any] = field(default_factory=dict)
    """Free for server code (hooks) to keep what it learns about this socket."""
    resume_key: bytes | None = field(default=None, repr=False)
    """The digest of the resume key the socket gave when it connected (never the key)."""
    resume_token: str | None = field(default=None, repr=False)
    """The resume token it gave (a previous process's, to take its easyrtcid back)."""
    superseded: bool = False
    """Another socket took its easyrtcid over (resumed its connection): it is no one now."""


@dataclass(slots=True, eq=False)
class Application:
    name: str
    options: ProtocolOptions
    fields: Fields = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)
    connections: dict[str, Connection] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    persistent: bool = False
    """Kept when nobody is connected: the default application and ones made by server code."""
    departed: dict[str, int] = field(default_factory=dict)
    """easyrtcid -> clock ms it left, for ``state.DEPARTURE_GRACE_MS`` (oldest first)."""
