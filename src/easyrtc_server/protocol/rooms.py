"""Room commands: joining, leaving, presence, per-room apiFields, the room list.

Membership itself changes only through ``State.join`` and ``State.leave``, which record the
``roomData`` pushes that tell the other members. Requests are checked whole before anything
changes, so a refused request leaves every room as it was. ``roomJoin`` is a decision
(``JoinRequested``): the server's hooks may refuse it before ``apply_room_join`` runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ..options import ProtocolOptions
from .decisions import JoinPhase, JoinRequested
from .errors import ErrorCode
from .model import Application, Connection, Membership
from .outcome import ACKED, Json, Outcome, refusal
from .roomdata import client_entry, join_state, leave_state, room_data, update_delta
from .state import State
from .validation import MISSING, as_map, is_nonempty_object, is_object, utf16_length


def check_joinable(
    conn_id: str, app: Application, names: list[str], current: int = 0
) -> str | None:
    """Why ``conn_id`` cannot enter all of ``names`` now, or None.

    ``"full"`` (a room is at ``room_max_connection``), ``"missing"`` (a room does not exist and
    may not be created), ``"too_many"`` (the connection, in ``current`` rooms, would be in more
    than ``max_rooms_per_connection``, or the application would hold more than
    ``max_rooms_per_app``). A member is not counted twice when it joins again.
    """
    opts = app.options
    limit = opts.room_max_connection
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


def names_too_many_rooms(opts: ProtocolOptions, value: Any) -> bool:
    """A request naming more rooms than ``max_rooms_per_join``, checked before reading them."""
    limit = opts.max_rooms_per_join
    return bool(limit) and isinstance(value, dict | list) and len(value) > limit


def parse_room_map(
    opts: ProtocolOptions, value: Any, *, strict_parameter: bool = False
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


# -- commands (each refusal is checked whole before anything changes) ------------------------


def room_join(state: State, conn: Connection, msg: Json) -> JoinRequested | Outcome:
    """``roomJoin``: the rooms asked for are a decision to make (hooks); else refused."""
    conn.entering_until = 0  # it has asked for its rooms (relay.ENTRY_GRACE_MS)
    data = msg.get("msgData")
    if not is_object(data):
        return _refuse(state, conn, "roomJoin", ErrorCode.MSG_REJECT_BAD_DATA)
    value = data.get("roomJoin") if isinstance(data, dict) else None
    if names_too_many_rooms(conn.app.options, value):
        return _refuse(state, conn, "roomJoin", ErrorCode.MSG_REJECT_BAD_ROOM)
    requested = parse_room_map(conn.app.options, value)
    if not requested:  # an empty map crashes the reference; here it is just improper
        return _refuse(state, conn, "roomJoin", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    app = conn.app
    creates = frozenset(name for name in requested if name not in app.rooms)
    return JoinRequested(JoinPhase.ROOM_JOIN, app.name, requested, creates, conn=conn)


def check_room_join(state: State, conn: Connection, msg: Json) -> Json | Outcome:
    """``roomJoin`` checked: its refusal, or the message with only what ``room_join`` reads."""
    asked = room_join(state, conn, msg)
    if isinstance(asked, Outcome):
        return asked
    return {"msgType": "roomJoin", "msgData": {"roomJoin": room_map(asked.rooms)}}


def room_map(rooms: dict[str, Any]) -> Json:
    """``{ROOM: P or None}`` in the wire form ``parse_room_map`` reads back."""
    return {
        name: {"roomName": name} if p is None else {"roomName": name, "roomParameter": p}
        for name, p in rooms.items()
    }


def apply_room_join(state: State, join: JoinRequested) -> Outcome:
    """Join every room of ``join`` or, if one cannot be joined, none of them."""
    conn = join.conn
    assert conn is not None
    names = list(join.rooms)
    if check_joinable(conn.easyrtcid, conn.app, names, len(conn.rooms)) is not None:
        return _refuse(state, conn, "roomJoin", ErrorCode.MSG_REJECT_BAD_ROOM)
    out = Outcome()
    for name in names:
        state.join(conn, name, out)
    if not state.scope.answering():  # another node's client: no reply built here
        for name in names:
            state.updates.mark_current(conn.rooms[name])
        return out
    return out.reply(join_reply(state, conn, names))


def join_reply(state: State, conn: Connection, names: Iterable[str]) -> Json:
    """The ``roomJoin`` reply: the whole state of each room of ``names`` that ``conn`` is in,
    as it is now (its member-list updates start from here)."""
    states: Json = {}
    for name in names:
        member = conn.rooms.get(name)
        if member is not None:
            state.updates.mark_current(member)
            states[name] = join_state(member.room, state.client_list(member.room))
    return room_data(states)


def room_leave(state: State, conn: Connection, msg: Json) -> Outcome:
    checked = check_room_leave(state, conn, msg)
    if isinstance(checked, Outcome):
        return checked
    out = Outcome()
    requested = checked["msgData"]["roomLeave"]
    for name in requested:
        state.leave(conn, name, out)
    return out.reply(room_data({name: leave_state(name) for name in requested}))


def check_room_leave(state: State, conn: Connection, msg: Json) -> Json | Outcome:
    """``roomLeave`` checked: its refusal, or the message with only what ``room_leave`` reads."""
    data = msg.get("msgData")
    if not is_object(data):
        return _refuse(state, conn, "roomLeave", ErrorCode.MSG_REJECT_BAD_DATA)
    value = data.get("roomLeave") if isinstance(data, dict) else None
    requested = parse_room_map(conn.app.options, value)
    if requested is None:
        return _refuse(state, conn, "roomLeave", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    rooms = {name: {"roomName": name} for name in requested}
    return {"msgType": "roomLeave", "msgData": {"roomLeave": rooms}}


def set_presence(state: State, conn: Connection, msg: Json) -> Outcome:
    checked = check_set_presence(state, conn, msg)
    if isinstance(checked, Outcome):
        return checked
    apply_presence(conn, checked["msgData"]["setPresence"])
    state.refresh_entries(conn)
    out = Outcome().reply(
        room_data(
            {
                name: update_delta(name, client_entry(member, with_api_field=False))
                for name, member in conn.rooms.items()
            }
        )
    )
    state.tell_peers(conn, out, with_api_field=False)
    return out


def check_set_presence(state: State, conn: Connection, msg: Json) -> Json | Outcome:
    """``setPresence`` checked: its refusal, or the message with only what ``set_presence``
    reads."""
    data = msg.get("msgData")
    if not is_object(data):
        return _refuse(state, conn, "setPresence", ErrorCode.MSG_REJECT_BAD_DATA)
    presence = data.get("setPresence") if isinstance(data, dict) else None
    if not check_presence(conn.app.options, presence):
        return _refuse(state, conn, "setPresence", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    if not presence_fits(conn.app.options, presence):
        return _refuse(state, conn, "setPresence", ErrorCode.MSG_REJECT_BAD_SIZE)
    return {"msgType": "setPresence", "msgData": {"setPresence": presence_read(presence)}}


def presence_read(presence: Any) -> Json | list[Any]:
    """Of a checked presence, what ``apply_presence`` reads (a non-empty array when that is
    nothing: it passes the checks again and changes nothing, as the original did)."""
    read = (
        {k: presence[k] for k in PRESENCE_KEYS if k in presence}
        if isinstance(presence, dict)
        else {}
    )
    return read or [0]


def check_presence(opts: ProtocolOptions, presence: Any) -> bool:
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


def presence_fits(opts: ProtocolOptions, presence: Any) -> bool:
    """The presence ``type`` (free-form; copied into every member list) is small enough."""
    if not isinstance(presence, dict) or "type" not in presence:
        return True
    return _json_length(presence["type"]) <= opts.presence_type_max_size


PRESENCE_KEYS = ("show", "status", "type")


def apply_presence(conn: Connection, presence: Any) -> None:
    if isinstance(presence, dict):
        for key in PRESENCE_KEYS:
            if key in presence:
                conn.presence[key] = presence[key]


def set_room_api_field(state: State, conn: Connection, msg: Json) -> Outcome:
    checked = check_set_room_api_field(state, conn, msg)
    if isinstance(checked, Outcome):
        return checked
    request = checked["msgData"]["setRoomApiField"]
    room_name = request["roomName"]
    field = request.get("field", MISSING)
    member = conn.rooms[room_name]
    out = Outcome()
    delta = change_api_field(state, member, field if field is not MISSING else None, out)
    return out.reply(room_data({room_name: delta}))


def change_api_field(state: State, member: Membership, field: Any, out: Outcome) -> Json:
    """Set ``member``'s apiField (a falsy ``field``: cleared) and tell the room's other
    members; the room's delta, as they are told it."""
    member.api_field = field or None
    state.refresh_entry(member)
    room = member.room
    entry = client_entry(member)
    if member.api_field is None:
        entry["apiField"] = {}  # so peers drop the old value (the reference leaves it stale)
    delta = update_delta(room.name, entry)
    cid = member.connection.easyrtcid
    if state.coalescing:
        state.updates.mark_changed(room, cid, api_cleared=member.api_field is None)
    else:
        state.tell_room(room, cid, delta, out)
    return delta


def check_set_room_api_field(state: State, conn: Connection, msg: Json) -> Json | Outcome:
    """``setRoomApiField`` checked: its refusal, or the message with only what
    ``set_room_api_field`` reads."""
    data = msg.get("msgData")
    if not is_object(data):
        return _refuse(state, conn, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_DATA)
    request = data.get("setRoomApiField") if isinstance(data, dict) else None
    if not is_nonempty_object(request) or not isinstance(request, dict):
        return _refuse(state, conn, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    room_name = request.get("roomName")
    if not (isinstance(room_name, str) and conn.app.options.room_name_regexp.test(room_name)):
        return _refuse(state, conn, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_ROOM)
    field = request.get("field", MISSING)
    if field is not MISSING and not is_object(field):
        return _refuse(state, conn, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    if field is not MISSING and _json_length(field) >= conn.app.options.api_field_max_size:
        return _refuse(state, conn, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_SIZE)
    if room_name not in conn.rooms:
        return _refuse(state, conn, "setRoomApiField", ErrorCode.MSG_REJECT_BAD_ROOM)
    read: Json = {"roomName": room_name}
    if field is not MISSING:
        read["field"] = field
    return {"msgType": "setRoomApiField", "msgData": {"setRoomApiField": read}}


def _json_length(value: Any) -> int:
    """Length of ``JSON.stringify(value)``; a value too deep to encode counts as too large."""
    try:
        return utf16_length(orjson.dumps(value).decode())
    except orjson.JSONEncodeError:
        return 1 << 62


def set_user_cfg(state: State, conn: Connection, msg: Json) -> Outcome:
    """Validated, then discarded, as the reference does: nothing reads it."""
    data = msg.get("msgData")
    if not is_object(data):
        return _refuse(state, conn, "setUserCfg", ErrorCode.MSG_REJECT_BAD_DATA)
    cfg = data.get("setUserCfg") if isinstance(data, dict) else None
    if not is_nonempty_object(cfg):
        return _refuse(state, conn, "setUserCfg", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    if isinstance(cfg, dict):
        for key in ("p2pList", "userSettings"):
            if key in cfg and not is_nonempty_object(cfg[key]):
                return _refuse(state, conn, "setUserCfg", ErrorCode.MSG_REJECT_BAD_STRUCTURE)
    return Outcome([ACKED])


def still_alive(state: State, conn: Connection, msg: Json) -> Outcome:
    """The 1.0 clients' keep-alive; acknowledged (the reference answers BAD_TYPE)."""
    return Outcome([ACKED])


def get_room_list(state: State, conn: Connection, msg: Json) -> Outcome:
    if "msgData" in msg:
        return _refuse(state, conn, "getRoomList", ErrorCode.MSG_REJECT_BAD_DATA)
    rooms = {
        name: {"roomName": name, "numberClients": len(room.members)}
        for name, room in conn.app.rooms.items()
    }
    return Outcome().reply({"msgType": "roomList", "msgData": {"roomList": rooms}})


def _refuse(state: State, conn: Connection, what: str, code: ErrorCode) -> Outcome:
    return refusal(state.now(), conn.easyrtcid, what, code)
