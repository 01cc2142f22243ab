"""Rooms: joining, leaving, presence and per-room apiFields, and the deltas peers receive.

Every change to a room's membership goes through ``join`` or ``leave``, which also record the
``roomData`` pushes that tell the other members. Requests are checked whole before anything
changes, so a refused request leaves every room as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .errors import ErrorCode
from .model import Application, Connection, Membership, Room
from .options import Options
from .outcome import ACK, Json, Outcome
from .roomdata import (
    client_entry,
    join_state,
    leave_state,
    peers_of,
    remove_delta,
    room_data,
    update_delta,
)
from .validation import MISSING, as_map, is_nonempty_object, is_object, utf16_length

if TYPE_CHECKING:
    from .core import Core

# -- primitives ------------------------------------------------------------------------------


def check_joinable(
    core: Core, conn_id: str, app: Application, names: list[str], current: int = 0
) -> str | None:
    """Why ``conn_id`` cannot enter all of ``names`` now, or None.

    ``"full"`` (a room is at ``room_max_connection``), ``"missing"`` (a room does not exist and
    may not be created), ``"too_many"`` (the connection, in ``current`` rooms, would be in more
    than ``max_rooms_per_connection``, or the application would hold more than
    ``max_rooms_per_app``). A member is not counted twice when it joins again.
    """
    opts = app.options
    limit = core.options.room_max_connection
    new_rooms = new_memberships = 0
    for name in names:
        room = app.rooms.get(name)
        if room is None:
            if not opts.room_auto_create_enable:
                return "missing"
            new_rooms += 1
            new_memberships += 1
        elif conn_id not in room.members:
            if limit and len(room.members) >= limit:
                return "full"
            new_memberships += 1
    if opts.max_rooms_per_connection and current + new_memberships > opts.max_rooms_per_connection:
        return "too_many"
    if new_rooms and opts.max_rooms_per_app and len(app.rooms) + new_rooms > opts.max_rooms_per_app:
        return "too_many"
    return None


def join(core: Core, conn: Connection, room_name: str, out: Outcome | None) -> Membership:
    """Put ``conn`` in a room (created if needed); tell its other members when ``out`` is given.

    Joining a room again keeps the membership and its join time, and tells the others again.
    """
    app = conn.app
    room = app.rooms.get(room_name) or core.create_room(app, room_name)
    member = room.members.get(conn.easyrtcid)
    if member is None:
        member = Membership(conn, room, core.now())
        room.members[conn.easyrtcid] = member
        conn.rooms[room_name] = member
    if out is not None:
        _tell_room(core, room, conn.easyrtcid, update_delta(room_name, client_entry(member)), out)
    return member


def leave(core: Core, conn: Connection, room_name: str, out: Outcome) -> bool:
    """Take ``conn`` out of a room and tell the members left; False if it was not in it."""
    member = conn.rooms.pop(room_name, None)
    if member is None:
        return False
    room = member.room
    del room.members[conn.easyrtcid]
    _tell_room(core, room, conn.easyrtcid, remove_delta(room_name, conn.easyrtcid), out)
    if (
        not room.members
        and not room.persistent
        and core.options.reclaim_empty_rooms
        and conn.app.rooms.get(room_name) is room
    ):
        del conn.app.rooms[room_name]
    return True


def tell_peers(core: Core, conn: Connection, out: Outcome, *, with_api_field: bool) -> None:
    """One push to each member sharing a room with ``conn``: its entry in each shared room."""
    entries: dict[str, Json] = {}
    for peer_id, shared in peers_of(conn).items():
        rooms: Json = {}
        for name in shared:
            if name not in entries:
                entries[name] = update_delta(
                    name, client_entry(conn.rooms[name], with_api_field=with_api_field)
                )
            rooms[name] = entries[name]
        _push_room_data(core, peer_id, rooms, out)


def _tell_room(core: Core, room: Room, subject: str, delta: Json, out: Outcome) -> None:
    rooms = {room.name: delta}
    for member_id in room.members:
        if member_id != subject:
            _push_room_data(core, member_id, rooms, out)


def _push_room_data(core: Core, to: str, rooms: Json, out: Outcome) -> None:
    out.push(
        to,
        "easyrtcCmd",
        {
            "msgType": "roomData",
            "msgData": {"roomData": rooms},
            "easyrtcid": to,
            "serverTime": core.now(),
        },
    )


def names_too_many_rooms(opts: Options, value: Any) -> bool:
    """A request naming more rooms than ``max_rooms_per_join``, checked before reading them."""
    limit = opts.max_rooms_per_join
    return bool(limit) and isinstance(value, dict | list) and len(value) > limit


def parse_room_map(
    opts: Options, value: Any, *, strict_parameter: bool = False
) -> dict[str, Any] | None:
    """``{ROOM: {"roomName": ROOM, "roomParameter": P?}}`` checked, as ``{ROOM: P or None}``.

    None when any entry breaks the rules; a roomParameter that is not an object counts as
    absent, or (``strict_parameter``, as at login) breaks them too. An array is read the way
    the reference reads it.
    """
    rooms = as_map(value)
    if rooms is None:
        return None
    regexp = opts.room_name_regexp
    for name, spec in rooms.items():
        if not regexp.test(name) or not isinstance(spec, dict) or spec.get("roomName") != name:
            return None
        if strict_parameter and "roomParameter" in spec and not is_object(spec["roomParameter"]):
            return None
    return {
        name: spec["roomParameter"] if is_object(spec.get("roomParameter")) else None
        for name, spec in rooms.items()
    }


# -- commands --------------------------------------------------------------------------------


def room_join(core: Core, conn: Connection, msg: Json) -> Outcome:
    requested = parse_room_join(core, conn, msg)
    if isinstance(requested, Outcome):
        return requested
    return apply_room_join(core, conn, list(requested))


def parse_room_join(core: Core, conn: Connection, msg: Json) -> dict[str, Any] | Outcome:
    """The rooms a ``roomJoin`` asks for, name to roomParameter, or the refusal."""
    data = msg.get("msgData")
    if not is_object(data):
        return core.reject(conn.easyrtcid, "roomJoin", ErrorCode.MSG_REJECT_BAD_DATA)
    value = data.get("roomJoin") if isinstance(data, dict) else None
    if names_too_many_rooms(conn.app.options, value):
        return core.reject(conn.easyrtcid, "roomJoin", ErrorCode.MSG_REJECT_BAD_ROOM)
    requested = parse_room_map(conn.app.options, value)
    if not requested:  # an empty map crashes the reference; here it is just improper
        return core.reject(conn.easyrtcid, "roomJoin", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    return requested


def apply_room_join(core: Core, conn: Connection, names: list[str]) -> Outcome:
    """Join every room of ``names`` or, if one cannot be joined, none of them."""
    if check_joinable(core, conn.easyrtcid, conn.app, names, len(conn.rooms)) is not None:
        return core.reject(conn.easyrtcid, "roomJoin", ErrorCode.MSG_REJECT_BAD_ROOM)
    out = Outcome()
    for name in names:
        join(core, conn, name, out)
    return out.reply(room_data({name: join_state(conn.app.rooms[name]) for name in names}))


def room_leave(core: Core, conn: Connection, msg: Json) -> Outcome:
    data = msg.get("msgData")
    if not is_object(data):
        return core.reject(conn.easyrtcid, "roomLeave", ErrorCode.MSG_REJECT_BAD_DATA)
    value = data.get("roomLeave") if isinstance(data, dict) else None
    requested = parse_room_map(conn.app.options, value)
    if requested is None:
        return core.reject(conn.easyrtcid, "roomLeave", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    out = Outcome()
    for name in requested:
        leave(core, conn, name, out)
    return out.reply(room_data({name: leave_state(name) for name in requested}))


def set_presence(core: Core, conn: Connection, msg: Json) -> Outcome:
    data = msg.get("msgData")
    if not is_object(data):
        return core.reject(conn.easyrtcid, "setPresence", ErrorCode.MSG_REJECT_BAD_DATA)
    presence = data.get("setPresence") if isinstance(data, dict) else None
    if not check_presence(conn.app.options, presence):
        return core.reject(conn.easyrtcid, "setPresence", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    if not presence_fits(conn.app.options, presence):
        return core.reject(conn.easyrtcid, "setPresence", ErrorCode.MSG_REJECT_BAD_SIZE)
    apply_presence(conn, presence)
    out = Outcome().reply(
        room_data(
            {
                name: update_delta(name, client_entry(member, with_api_field=False))
                for name, member in conn.rooms.items()
            }
        )
    )
    tell_peers(core, conn, out, with_api_field=False)
    return out


def check_presence(opts: Options, presence: Any) -> bool:
    """A non-empty object whose ``show`` and ``status``, if present, follow the rules."""
    if not is_nonempty_object(presence):
        return False
    if not isinstance(presence, dict):
        return True  # a non-empty array: nothing in it is read
    show = presence.get("show", MISSING)
    if show is not MISSING and not (isinstance(show, str) and opts.presence_show_regexp.test(show)):
        return False
    status = presence.get("status", MISSING)
    return status is MISSING or (
        isinstance(status, str) and opts.presence_status_regexp.test(status)
    )


def presence_fits(opts: Options, presence: Any) -> bool:
    """The presence ``type`` (free-form; copied into every member list) is small enough."""
    if not isinstance(presence, dict) or "type" not in presence:
        return True
    return _json_length(presence["type"]) <= opts.presence_type_max_size


def apply_presence(conn: Connection, presence: Any) -> None:
    if isinstance(presence, dict):
        for key in ("show", "status", "type"):
            if key in presence:
                conn.presence[key] = presence[key]


def set_room_api_field(core: Core, conn: Connection, msg: Json) -> Outcome:
    cid = conn.easyrtcid
    data = msg.get("msgData")
    if not is_object(data):
        return core.reject(cid, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_DATA)
    request = data.get("setRoomApiField") if isinstance(data, dict) else None
    if not is_nonempty_object(request) or not isinstance(request, dict):
        return core.reject(cid, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    room_name = request.get("roomName")
    if not (isinstance(room_name, str) and conn.app.options.room_name_regexp.test(room_name)):
        return core.reject(cid, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_ROOM)
    field = request.get("field", MISSING)
    if field is not MISSING and not is_object(field):
        return core.reject(cid, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    if field is not MISSING and _json_length(field) >= conn.app.options.api_field_max_size:
        return core.reject(cid, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_SIZE)
    member = conn.rooms.get(room_name)
    if member is None:
        return core.reject(cid, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_ROOM)
    member.api_field = field if field is not MISSING and field else None
    entry = client_entry(member)
    if member.api_field is None:
        entry["apiField"] = {}  # so peers drop the old value (the reference leaves it stale)
    delta = room_data({room_name: update_delta(room_name, entry)})
    out = Outcome()
    _tell_room(core, member.room, cid, delta["msgData"]["roomData"][room_name], out)
    return out.reply(delta)


def _json_length(value: Any) -> int:
    """Length of ``JSON.stringify(value)``; a value too deep to encode counts as too large."""
    try:
        return utf16_length(orjson.dumps(value).decode())
    except orjson.JSONEncodeError:
        return 1 << 62


def set_user_cfg(core: Core, conn: Connection, msg: Json) -> Outcome:
    """Validated, then discarded, as the reference does: nothing reads it."""
    data = msg.get("msgData")
    if not is_object(data):
        return core.reject(conn.easyrtcid, "setUserCfg", ErrorCode.MSG_REJECT_BAD_DATA)
    cfg = data.get("setUserCfg") if isinstance(data, dict) else None
    if not is_nonempty_object(cfg):
        return core.reject(conn.easyrtcid, "setUserCfg", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    if isinstance(cfg, dict):
        for key in ("p2pList", "userSettings"):
            if key in cfg and not is_nonempty_object(cfg[key]):
                return core.reject(conn.easyrtcid, "setUserCfg", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    return Outcome().reply(ACK)


def still_alive(core: Core, conn: Connection, msg: Json) -> Outcome:
    """The 1.0 clients' keep-alive; acknowledged (the reference answers BAD_TYPE)."""
    return Outcome().reply(ACK)


def get_room_list(core: Core, conn: Connection, msg: Json) -> Outcome:
    if "msgData" in msg:
        return core.reject(conn.easyrtcid, "getRoomList", ErrorCode.MSG_REJECT_BAD_DATA)
    rooms = {
        name: {"roomName": name, "numberClients": len(room.members)}
        for name, room in conn.app.rooms.items()
    }
    return Outcome().reply({"msgType": "roomList", "msgData": {"roomList": rooms}})
