"""What server code (not clients) can do to the state: push messages, set fields, manage
groups, rooms and applications. Each change returns the pushes it causes, like the handlers.

``EasyRtcServer`` wraps these in async methods that also deliver the pushes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import EasyRtcError, ErrorCode, error_message
from .model import Application, Connection, Field, Group, Room, Session, shared_fields
from .outcome import Json, Outcome
from .roomdata import fields_delta, room_data
from .scope import local
from .state import State


def app_of(state: State, app_name: str) -> Application:
    app = state.apps.get(app_name)
    if app is None:
        raise KeyError(f"no application {app_name!r}")
    return app


def room_of(state: State, app_name: str, room_name: str) -> Room:
    room = app_of(state, app_name).rooms.get(room_name)
    if room is None:
        raise KeyError(f"no room {room_name!r} in application {app_name!r}")
    return room


def connection_of(state: State, easyrtcid: str) -> Connection:
    peer = state.peers.get(easyrtcid)
    if peer is None or peer.connection is None:
        raise KeyError(f"no authenticated connection {easyrtcid!r}")
    return peer.connection


def _server_message(state: State, msg_type: str, msg_data: Any, to: str, extra: Json) -> Json:
    body: Json = {"msgType": msg_type}
    if msg_data is not None:
        body["msgData"] = msg_data
    body.update(extra)
    body["easyrtcid"] = to
    body["serverTime"] = state.now()
    return body


def message_to(
    state: State, recipients: list[str], msg_type: str, msg_data: Any, **extra: Any
) -> Outcome:
    """An ``easyrtcMsg`` from the server (no ``senderEasyrtcid``: the client's server listener)."""
    out = Outcome()
    for cid in recipients:
        out.push(cid, "easyrtcMsg", _server_message(state, msg_type, msg_data, cid, extra))
    return out


def room_members(state: State, app_name: str, room_name: str) -> list[str]:
    return list(room_of(state, app_name, room_name).members)


def group_members(state: State, app_name: str, group_name: str) -> list[str]:
    group = app_of(state, app_name).groups.get(group_name)
    return sorted(group.members) if group is not None else []


def command_to(state: State, recipients: Iterable[str], body: Json) -> Outcome:
    """Push an ``easyrtcCmd`` to each recipient, addressed to it."""
    out = Outcome()
    for cid in recipients:
        out.push(cid, "easyrtcCmd", {**body, "easyrtcid": cid, "serverTime": state.now()})
    return out


def error_to(state: State, easyrtcid: str, code: ErrorCode | str) -> Outcome:
    """Push an EasyRTC error to a client (it shows the text)."""
    return command_to(state, [easyrtcid], error_message(code, state.now()))


def ice_config_to(state: State, easyrtcid: str, servers: list[Json]) -> Outcome:
    """Replace a client's ICE servers (e.g. fresh TURN credentials)."""
    body = {"msgType": "iceConfig", "msgData": {"iceConfig": {"iceServers": servers}}}
    return command_to(state, [easyrtcid], body)


def set_room_field(
    state: State, app_name: str, room_name: str, name: str, value: Any, *, shared: bool = True
) -> Outcome:
    """Set a room field (the room is then kept when empty); members get its shared fields."""
    _check_field_name(app_of(state, app_name), name)
    room = room_of(state, app_name, room_name)
    room.fields[name] = Field(value, shared)
    room.persistent = True
    members = local(state.scope, room.members)  # a cluster node: its own sockets' only
    return command_to(state, members, room_data({room.name: fields_delta(room)}))


def set_session_field(
    state: State, app_name: str, easyrtcsid: str, name: str, value: Any, *, shared: bool = True
) -> Outcome:
    """Set a session field; every connection linked to the session is told."""
    app = app_of(state, app_name)
    _check_field_name(app, name)
    session = app.sessions.get(easyrtcsid)
    if session is None:
        raise KeyError(f"no session {easyrtcsid!r} in application {app_name!r}")
    session.fields[name] = Field(value, shared)
    return session_told(state, session)


def session_told(state: State, session: Session) -> Outcome:
    """Every connection of ``session`` (of this process, or of a cluster node's sockets) told
    its fields, as ``set_session_field`` tells them."""
    data: Json = {"easyrtcsid": session.easyrtcsid, "sessionStatus": "update"}
    data["field"] = shared_fields(session.fields) or {}
    body = {"msgType": "sessionData", "msgData": {"sessionData": data}}
    return command_to(state, local(state.scope, sorted(session.connections)), body)


def set_app_field(
    state: State, app_name: str, name: str, value: Any, *, shared: bool = True
) -> None:
    """Set an application field; shared ones reach clients in their next token."""
    app = app_of(state, app_name)
    _check_field_name(app, name)
    app.fields[name] = Field(value, shared)
    app.persistent = True


def set_connection_field(
    state: State, easyrtcid: str, name: str, value: Any, *, shared: bool = False
) -> None:
    """Set a connection field; shared ones reach the client in its next token."""
    conn = connection_of(state, easyrtcid)
    _check_field_name(conn.app, name)
    conn.fields[name] = Field(value, shared)


def add_to_group(state: State, easyrtcid: str, group_name: str) -> None:
    conn = connection_of(state, easyrtcid)
    if not conn.app.options.group_name_regexp.test(group_name):
        raise ValueError(f"improper group name {group_name!r}")
    group = conn.app.groups.get(group_name)
    if group is None:
        group = conn.app.groups[group_name] = Group(group_name)
    group.members.add(easyrtcid)
    conn.groups.add(group_name)


def remove_from_group(state: State, easyrtcid: str, group_name: str) -> None:
    conn = connection_of(state, easyrtcid)
    group = conn.app.groups.get(group_name)
    if group is not None:
        group.members.discard(easyrtcid)
    conn.groups.discard(group_name)


def create_room(state: State, app_name: str, room_name: str) -> Room:
    """A room that stays when empty."""
    app = app_of(state, app_name)
    if not app.options.room_name_regexp.test(room_name):
        raise ValueError(f"improper room name {room_name!r}")
    room = app.rooms.get(room_name) or state.create_room(app, room_name)
    room.persistent = True
    return room


def delete_room(state: State, app_name: str, room_name: str) -> None:
    """Remove an empty room."""
    room = room_of(state, app_name, room_name)
    if room.members:
        raise EasyRtcError(ErrorCode.MSG_REJECT_BAD_ROOM, f"room {room_name!r} is not empty")
    del state.apps[app_name].rooms[room_name]


def create_app(state: State, app_name: str, **options: Any) -> Application:
    """An application with its own protocol options: the server's, with ``options`` changed
    (regexps, ICE servers, room rules…; camelCase names too)."""
    if not state.options.app_name_regexp.test(app_name):
        raise ValueError(f"improper application name {app_name!r}")
    existing = state.apps.get(app_name)
    if existing is not None:
        existing.persistent = True
        return existing
    opts = state.options.protocol.replace(**options)
    return state.create_app(app_name, options=opts, persistent=True)


def _check_field_name(app: Application, name: str) -> None:
    if not app.options.field_name_regexp.test(name):
        raise ValueError(f"improper field name {name!r}")
