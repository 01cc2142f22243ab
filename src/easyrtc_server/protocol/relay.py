"""Relaying between clients: WebRTC signals (``easyrtcCmd``) and application messages
(``easyrtcMsg``) to a peer, a room or a group.

This is the hot path: every ICE candidate passes through ``relay_signal``. Only connections of
the same application can reach each other, and the sender's id is always the server's, never
the client's.
"""

from __future__ import annotations

from typing import Any

from .decisions import ServerMessage
from .errors import ErrorCode
from .model import Connection
from .outcome import ACKED, Fanout, Json, Outcome, Push, refusal
from .state import DEPARTURE_GRACE_MS, State
from .validation import MISSING

ENTRY_GRACE_MS = 10_000
"""How long after its token a connection counts as entering until it asks to join a room.
easyrtc.js apps send to the room they are about to join before they ask: networked-aframe
(``wseasyrtc``) logs in, fetches the server's time, then sends ``roomJoin``, and its entity
updates to that room go out all along. The reference refuses those with
``MSG_REJECT_TARGET_ROOM``, which easyrtc.js shows in a dialog; here they are acknowledged and
reach nobody (the room is not the sender's yet), unless ``strict_errors``."""

_BARE_SIGNALS = frozenset(("reject", "hangup"))
_JSON_CONTAINERS = frozenset((dict, list))
"""What parsed JSON objects and arrays are (exactly: the parsers make no subclasses)."""


def relay_signal(state: State, conn: Connection, msg: Json) -> Outcome:
    """offer, answer, candidate (with msgData) and reject, hangup (without) to one peer."""
    msg_type: str = msg["msgType"]
    data = msg.get("msgData", MISSING)
    if msg_type in _BARE_SIGNALS:
        if data is not MISSING:
            return refusal(state.now(), conn.easyrtcid, msg_type, ErrorCode.MSG_REJECT_BAD_DATA)
    elif not (type(data) in _JSON_CONTAINERS and data):
        return refusal(state.now(), conn.easyrtcid, msg_type, ErrorCode.MSG_REJECT_BAD_DATA)
    target_id = msg.get("targetEasyrtcid")
    target = conn.app.connections.get(target_id) if type(target_id) is str else None
    if target is None:
        code = ErrorCode.MSG_REJECT_TARGET_EASYRTCID
        if not _is_easyrtcid(conn, target_id):
            code = ErrorCode.MSG_REJECT_BAD_STRUCTURE
        return refusal(state.now(), conn.easyrtcid, msg_type, code)
    # one dict display each (the key order is the wire's)
    if data is MISSING:
        body = {
            "senderEasyrtcid": conn.easyrtcid,
            "easyrtcid": target.easyrtcid,
            "msgType": msg_type,
            "serverTime": state.now(),
        }
    else:
        body = {
            "senderEasyrtcid": conn.easyrtcid,
            "msgData": data,
            "easyrtcid": target.easyrtcid,
            "msgType": msg_type,
            "serverTime": state.now(),
        }
    return Outcome([Push(target.easyrtcid, "easyrtcCmd", body), ACKED])


def route_message(state: State, conn: Connection, msg: Any) -> Outcome | ServerMessage:
    """An ``easyrtcMsg``: to one peer, to a room, to a group, or (no target) to the server."""
    sender = conn.easyrtcid
    if not isinstance(msg, dict):
        code = ErrorCode.MSG_REJECT_BAD_TYPE  # an array is an object without a msgType
        if not isinstance(msg, list):
            code = ErrorCode.MSG_REJECT_BAD_STRUCTURE
        return refusal(state.now(), sender, "easyrtcMsg", code)
    msg_type = msg.get("msgType")
    if not isinstance(msg_type, str):
        return refusal(state.now(), sender, "easyrtcMsg", ErrorCode.MSG_REJECT_BAD_TYPE)
    opts = conn.app.options
    target_id = msg.get("targetEasyrtcid", MISSING)
    room_name = msg.get("targetRoom", MISSING)
    group_name = msg.get("targetGroup", MISSING)
    if target_id is not MISSING and not _is_easyrtcid(conn, target_id):
        return refusal(state.now(), sender, msg_type, ErrorCode.MSG_REJECT_TARGET_EASYRTCID)
    if group_name is not MISSING and not (
        isinstance(group_name, str) and opts.group_name_regexp.test(group_name)
    ):
        return refusal(state.now(), sender, msg_type, ErrorCode.MSG_REJECT_TARGET_GROUP)
    if room_name is not MISSING and not (
        isinstance(room_name, str) and opts.room_name_regexp.test(room_name)
    ):
        return refusal(state.now(), sender, msg_type, ErrorCode.MSG_REJECT_TARGET_ROOM)
    if target_id == sender:
        return refusal(state.now(), sender, msg_type, ErrorCode.MSG_REJECT_TARGET_EASYRTCID)

    body: Json = {"senderEasyrtcid": sender}
    if target_id is not MISSING:
        body["targetEasyrtcid"] = target_id
    body["msgType"] = msg_type
    if "msgData" in msg:
        body["msgData"] = msg["msgData"]
    if room_name is not MISSING:
        body["targetRoom"] = room_name
    if target_id is not MISSING:
        return _to_peer(state, conn, body, target_id, room_name, group_name)
    if room_name is not MISSING:
        return _to_room(state, conn, body, room_name, group_name)
    if group_name is not MISSING:
        return _to_group(state, conn, body, group_name)
    # For the server itself: its hooks answer (the stock server has no such messages)
    return ServerMessage(conn, msg)


def _to_peer(
    state: State, conn: Connection, body: Json, target_id: str, room_name: Any, group_name: Any
) -> Outcome:
    target = conn.app.connections.get(target_id)
    if target is None:
        left_at = conn.app.departed.get(target_id)
        now = state.now()
        if (
            left_at is not None
            and now - left_at < DEPARTURE_GRACE_MS
            and not conn.app.options.strict_errors
        ):
            return Outcome([ACKED])  # it has just left; the sender cannot know yet: reaches nobody
        return refusal(now, conn.easyrtcid, body["msgType"], ErrorCode.MSG_REJECT_GEN_FAIL)
    if room_name is not MISSING and not (room_name in conn.rooms and room_name in target.rooms):
        return refusal(
            state.now(), conn.easyrtcid, body["msgType"], ErrorCode.MSG_REJECT_TARGET_ROOM
        )
    if group_name is not MISSING:
        if not (group_name in conn.groups and group_name in target.groups):
            return refusal(
                state.now(), conn.easyrtcid, body["msgType"], ErrorCode.MSG_REJECT_TARGET_GROUP
            )
        body["targetGroup"] = group_name
    body["easyrtcid"] = target_id
    body["serverTime"] = state.now()
    return Outcome([Push(target_id, "easyrtcMsg", body), ACKED])


def _to_room(
    state: State, conn: Connection, body: Json, room_name: str, group_name: Any
) -> Outcome:
    member = conn.rooms.get(room_name)
    if member is None:
        if state.now() < conn.entering_until and not conn.app.options.strict_errors:
            return Outcome([ACKED])  # it is still entering (ENTRY_GRACE_MS): reaches nobody
        return refusal(
            state.now(), conn.easyrtcid, body["msgType"], ErrorCode.MSG_REJECT_TARGET_ROOM
        )
    recipients = [cid for cid in member.room.members if cid != conn.easyrtcid]
    if group_name is not MISSING:
        group = conn.app.groups.get(group_name)
        members = group.members if group is not None else set()
        recipients = [cid for cid in recipients if cid in members]
    return _broadcast(state, body, recipients)


def _to_group(state: State, conn: Connection, body: Json, group_name: str) -> Outcome:
    group = conn.app.groups.get(group_name)
    if group is None:
        return refusal(
            state.now(), conn.easyrtcid, body["msgType"], ErrorCode.MSG_REJECT_TARGET_GROUP
        )
    body["targetGroup"] = group_name
    recipients = [cid for cid in group.members if cid != conn.easyrtcid]
    return _broadcast(state, body, recipients)


def group_body(state: State, conn: Connection, msg: Json) -> Json:
    """The body ``_to_group`` sends each member for ``msg`` (a message to a group alone that
    ``route_message`` acked), without the member's easyrtcid: for the members another process
    holds (a partitioned cluster's nodes) when this one had none to send it to."""
    body: Json = {"senderEasyrtcid": conn.easyrtcid, "msgType": msg["msgType"]}
    if "msgData" in msg:
        body["msgData"] = msg["msgData"]
    body["targetGroup"] = msg["targetGroup"]
    body["serverTime"] = state.now()
    return body


def _broadcast(state: State, body: Json, recipients: list[str]) -> Outcome:
    """Every recipient gets ``body`` with its own easyrtcid last: one ``Fanout``, whose
    shared part is encoded once for all of them."""
    body["serverTime"] = state.now()
    if not recipients:
        return Outcome([ACKED])
    return Outcome([Fanout(recipients, "easyrtcMsg", body), ACKED])


def _is_easyrtcid(conn: Connection, value: Any) -> bool:
    return isinstance(value, str) and conn.app.options.easyrtcid_regexp.test(value)
