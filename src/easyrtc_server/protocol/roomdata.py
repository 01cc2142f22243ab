"""The wire shapes of room state: clientList entries and ``roomData`` joins, updates and leaves.

Pure functions of the model; they decide nothing about who receives what.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from .model import Connection, Membership, Room, shared_fields
from .outcome import Json


def client_entry(member: Membership, *, with_api_field: bool = True) -> Json:
    """A connection's entry in a room's clientList.

    Connection-wide updates (presence, end of authentication) go out without ``apiField``, as
    the reference sends them; clients merge only the keys present.
    """
    conn = member.connection
    entry: Json = {
        "easyrtcid": conn.easyrtcid,
        "roomJoinTime": member.join_time,
        "presence": dict(conn.presence),
    }
    if with_api_field and member.api_field:
        entry["apiField"] = member.api_field
    if conn.username:
        entry["username"] = conn.username
    return entry


def join_state(room: Room, client_list: dict[str, Json] | None = None) -> Json:
    """The full state of a room for a member that joined it (token and roomJoin replies);
    ``client_list`` is the room's cached list (``State.client_list``), else it is built."""
    if client_list is None:
        client_list = {cid: client_entry(m) for cid, m in room.members.items()}
    data: Json = {"roomName": room.name, "roomStatus": "join", "clientList": client_list}
    field = shared_fields(room.fields)
    if field is not None:
        data["field"] = field
    return data


def update_delta(room_name: str, entry: Json) -> Json:
    """One room's delta announcing a new or changed member."""
    return {
        "roomName": room_name,
        "roomStatus": "update",
        "clientListDelta": {"updateClient": {entry["easyrtcid"]: entry}},
    }


def remove_delta(room_name: str, easyrtcid: str) -> Json:
    """One room's delta announcing that a member left."""
    return {
        "roomName": room_name,
        "roomStatus": "update",
        "clientListDelta": {"removeClient": {easyrtcid: {"easyrtcid": easyrtcid}}},
    }


def leave_state(room_name: str) -> Json:
    return {"roomName": room_name, "roomStatus": "leave"}


def fields_delta(room: Room) -> Json:
    """A room's shared fields, pushed to its members when server code changes them."""
    field = shared_fields(room.fields) or {}
    return {"roomName": room.name, "roomStatus": "update", "field": field}


def room_data(rooms: Json) -> Json:
    """A ``roomData`` message (reply or push) holding ``rooms``."""
    return {"msgType": "roomData", "msgData": {"roomData": rooms}}


def peers_of(
    conn: Connection,
    here: Callable[[str], bool] | None = None,
    rooms: Collection[str] | None = None,
) -> dict[str, list[str]]:
    """Every other member sharing a room with ``conn`` (whose socket is ``here``, if given;
    in one of ``rooms``, if given), with the rooms they share, in order."""
    peers: dict[str, list[str]] = {}
    me = conn.easyrtcid
    for room_name, member in conn.rooms.items():
        if rooms is not None and room_name not in rooms:
            continue
        for other in member.room.members:
            if other != me and (here is None or here(other)):
                peers.setdefault(other, []).append(room_name)
    return peers
