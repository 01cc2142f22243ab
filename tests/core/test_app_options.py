"""Every rule follows the options of the connection's own application.

``control.create_app(name, **changes)`` gives an application its own protocol options; each
case below shows one rule answering differently in that application than in the default one,
which keeps the server's options. Plus what server code does with ``control``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from easyrtc_server.options import DEFAULT_ICE_SERVERS, Options, OptionsError, ProtocolOptions
from easyrtc_server.protocol import control
from easyrtc_server.protocol.errors import EasyRtcError, ErrorCode
from support.corekit import Harness

APP = "custom"


def _rooms(*names: str) -> dict[str, Any]:
    return {name: {"roomName": name} for name in names}


def _token(h: Harness, app: str, **msg_data: Any) -> dict[str, Any]:
    peer = h.open()
    reply = h.auth(peer, applicationName=app, **msg_data).reply
    return reply["msgData"] if reply["msgType"] == "token" else reply["msgData"]["errorCode"]


def _login_code(h: Harness, app: str, **msg_data: Any) -> str | None:
    return h.auth(h.open(), applicationName=app, **msg_data).code


def _cmd_code(h: Harness, app: str, msg_type: str, **fields: Any) -> str | None:
    peer = h.login(applicationName=app)
    return h.cmd(peer, msg_type, **fields).code


def room_max_connection(h: Harness, app: str) -> Any:
    h.login(applicationName=app)
    return _login_code(h, app)


def room_auto_create(h: Harness, app: str) -> Any:
    return _login_code(h, app, roomJoin=_rooms("new"))


def reclaim_empty_rooms(h: Harness, app: str) -> Any:
    peer = h.login(applicationName=app, roomJoin=_rooms("r"))
    h.leave(peer, "r")
    return "r" in h.core.apps[app].rooms


def default_room(h: Harness, app: str) -> Any:
    return list(_token(h, app)["roomData"])


def field_objs(h: Harness, app: str) -> Any:
    data = _token(h, app)
    return (
        data["application"].get("field"),
        data["roomData"]["default"].get("field"),
        data.get("field"),
    )


def ice_servers(h: Harness, app: str) -> Any:
    return _token(h, app)["iceConfig"]["iceServers"]


def username_rule(h: Harness, app: str) -> Any:
    return _login_code(h, app, username="Bob1")


def easyrtcsid_rule(h: Harness, app: str) -> Any:
    return _login_code(h, app, easyrtcsid="abc")


def room_name_rule(h: Harness, app: str) -> Any:
    return _cmd_code(h, app, "roomJoin", msgData={"roomJoin": _rooms("r1")})


def easyrtcid_rule(h: Harness, app: str) -> Any:
    a, b = h.login(applicationName=app), h.login(applicationName=app)
    return h.msg(a, "hi", targetEasyrtcid=b.easyrtcid).code


def group_name_rule(h: Harness, app: str) -> Any:
    peer = h.login(applicationName=app)
    try:
        control.add_to_group(h.core.state, peer.easyrtcid, "g")
    except ValueError:
        return "refused"
    return "added"


def field_name_rule(h: Harness, app: str) -> Any:
    peer = h.login(applicationName=app)
    try:
        control.set_connection_field(h.core.state, peer.easyrtcid, "a", 1)
    except ValueError:
        return "refused"
    return "set"


def presence_show_rule(h: Harness, app: str) -> Any:
    return _cmd_code(h, app, "setPresence", msgData={"setPresence": {"show": "away"}})


def presence_status_rule(h: Harness, app: str) -> Any:
    return _cmd_code(h, app, "setPresence", msgData={"setPresence": {"status": "hello"}})


def presence_type_size(h: Harness, app: str) -> Any:
    return _cmd_code(h, app, "setPresence", msgData={"setPresence": {"type": "abcdef"}})


def api_field_size(h: Harness, app: str) -> Any:
    request = {"roomName": "default", "field": {"f": {"fieldName": "f", "fieldValue": "x" * 20}}}
    return _cmd_code(h, app, "setRoomApiField", msgData={"setRoomApiField": request})


def rooms_per_connection(h: Harness, app: str) -> Any:
    return _cmd_code(h, app, "roomJoin", msgData={"roomJoin": _rooms("r1")})


def rooms_per_join(h: Harness, app: str) -> Any:
    return _cmd_code(h, app, "roomJoin", msgData={"roomJoin": _rooms("r1", "r2")})


def rooms_per_app(h: Harness, app: str) -> Any:
    return _cmd_code(h, app, "roomJoin", msgData={"roomJoin": _rooms("r1")})


FIELD = {"fieldValue": "v", "fieldOption": {"isShared": True}}
WIRE_FIELD = {"f": {"fieldName": "f", "fieldValue": "v"}}
BAD = ErrorCode.MSG_REJECT_BAD_STRUCTURE

# (options of the custom application, what is observed, there, in the default application)
CASES: list[tuple[dict[str, Any], Callable[[Harness, str], Any], Any, Any]] = [
    ({"room_max_connection": 1}, room_max_connection, ErrorCode.LOGIN_GEN_FAIL, None),
    ({"room_auto_create_enable": False}, room_auto_create, ErrorCode.LOGIN_BAD_ROOM, None),
    ({"reclaim_empty_rooms": False}, reclaim_empty_rooms, True, False),
    ({"room_default_enable": False}, default_room, [], ["default"]),
    ({"room_default_name": "lobby"}, default_room, ["lobby"], ["default"]),
    (
        {
            "app_default_field_obj": {"f": FIELD},
            "room_default_field_obj": {"f": FIELD},
            "connection_default_field_obj": {"f": FIELD},
        },
        field_objs,
        (WIRE_FIELD, WIRE_FIELD, WIRE_FIELD),
        (None, None, None),
    ),
    (
        {"app_ice_servers": [{"urls": "stun:x.example"}]},
        ice_servers,
        [{"urls": "stun:x.example"}],
        DEFAULT_ICE_SERVERS,
    ),
    ({"username_regexp": "/^[a-z]+$/"}, username_rule, BAD, None),
    ({"easyrtcsid_regexp": "^[0-9]+$"}, easyrtcsid_rule, BAD, None),
    ({"room_name_regexp": "^[a-z]+$"}, room_name_rule, BAD, None),
    ({"easyrtcid_regexp": "^.{1,3}$"}, easyrtcid_rule, ErrorCode.MSG_REJECT_TARGET_EASYRTCID, None),
    ({"group_name_regexp": "^gg$"}, group_name_rule, "refused", "added"),
    ({"field_name_regexp": "^zz$"}, field_name_rule, "refused", "set"),
    ({"presence_show_regexp": "/^chat$/"}, presence_show_rule, BAD, None),
    ({"presence_status_regexp": "/^$/"}, presence_status_rule, BAD, None),
    ({"presence_type_max_size": 4}, presence_type_size, ErrorCode.MSG_REJECT_BAD_SIZE, None),
    ({"api_field_max_size": 10}, api_field_size, ErrorCode.MSG_REJECT_BAD_SIZE, None),
    ({"max_rooms_per_connection": 1}, rooms_per_connection, ErrorCode.MSG_REJECT_BAD_ROOM, None),
    ({"max_rooms_per_join": 1}, rooms_per_join, ErrorCode.MSG_REJECT_BAD_ROOM, None),
    ({"max_rooms_per_app": 1}, rooms_per_app, ErrorCode.MSG_REJECT_BAD_ROOM, None),
]


@pytest.mark.parametrize(
    ("changes", "observe", "custom", "default"),
    CASES,
    ids=[",".join(changes) for changes, *_ in CASES],
)
def test_each_rule_reads_the_options_of_its_application(
    changes: dict[str, Any], observe: Callable[[Harness, str], Any], custom: Any, default: Any
) -> None:
    h = Harness()
    control.create_app(h.core.state, APP, **changes)
    assert observe(h, APP) == custom
    assert observe(h, "default") == default


def test_create_app_takes_camel_case_and_refuses_hosting_options() -> None:
    h = Harness()
    app = control.create_app(h.core.state, "a1", roomMaxConnection=3)
    assert app.options.room_max_connection == 3 and app.persistent
    assert control.create_app(h.core.state, "a1", room_max_connection=9) is app  # kept as is
    with pytest.raises(OptionsError, match="port"):
        control.create_app(h.core.state, "a2", port=1)
    with pytest.raises(OptionsError, match="room_max_connection"):
        control.create_app(h.core.state, "a2", room_max_connection=-1)
    with pytest.raises(ValueError, match="improper application name"):
        control.create_app(h.core.state, "no spaces")
    assert "a2" not in h.core.apps


def test_app_made_by_server_code_stays_when_its_last_client_leaves() -> None:
    h = Harness()
    control.create_app(h.core.state, APP)
    h.close(h.login(applicationName=APP))
    assert APP in h.core.apps


def test_room_made_by_server_code_stays_empty_until_deleted() -> None:
    h = Harness()
    state = h.core.state
    control.create_room(state, "default", "stage")
    peer = h.login(roomJoin=_rooms("stage"))
    with pytest.raises(EasyRtcError) as refused:
        control.delete_room(state, "default", "stage")
    assert refused.value.code == ErrorCode.MSG_REJECT_BAD_ROOM
    h.leave(peer, "stage")
    assert "stage" in h.core.apps["default"].rooms
    control.delete_room(state, "default", "stage")
    assert "stage" not in h.core.apps["default"].rooms
    refused_login = h.auth(h.open(), roomJoin=_rooms("stage"))
    assert refused_login.code is None  # auto-created again by a client: an ordinary room
    with pytest.raises(ValueError, match="improper room name"):
        control.create_room(state, "default", "a b")
    with pytest.raises(KeyError):
        control.delete_room(state, "default", "nowhere")


def test_app_and_connection_fields_reach_clients_in_their_next_token() -> None:
    h = Harness()
    state = h.core.state
    control.set_app_field(state, "default", "motd", "hi")
    control.set_app_field(state, "default", "secret", "x", shared=False)
    peer = h.login()
    control.set_connection_field(state, peer.easyrtcid, "tier", "gold", shared=True)
    control.set_connection_field(state, peer.easyrtcid, "note", "private")
    token = h.auth(peer).reply["msgData"]
    assert token["application"]["field"] == {"motd": {"fieldName": "motd", "fieldValue": "hi"}}
    assert token["field"] == {"tier": {"fieldName": "tier", "fieldValue": "gold"}}
    with pytest.raises(ValueError, match="improper field name"):
        control.set_app_field(state, "default", "bad/name", 1)
    with pytest.raises(KeyError):
        control.set_connection_field(state, "nobody", "tier", 1)


def test_removed_group_member_no_longer_receives_group_messages() -> None:
    h = Harness()
    state = h.core.state
    a, b, c = h.login(), h.login(), h.login()
    for peer in (a, b, c):
        control.add_to_group(state, peer.easyrtcid, "team")
    control.remove_from_group(state, c.easyrtcid, "team")
    result = h.msg(a, "hi", targetGroup="team")
    assert [to for to, _ in result.pushes()] == [b.easyrtcid]
    assert c.connection is not None and "team" not in c.connection.groups
    control.remove_from_group(state, c.easyrtcid, "never-joined")  # harmless


def test_applications_carry_protocol_options_only() -> None:
    options = Options(
        room_max_connection=3, port=1234, turn_urls=("turn:t.example",), turn_secret="s"
    )
    protocol = options.protocol
    assert isinstance(protocol, ProtocolOptions) and not isinstance(protocol, Options)
    assert protocol.room_max_connection == 3 and not hasattr(protocol, "port")
    h = Harness(options)
    assert h.core.apps["default"].options == protocol
    assert control.create_app(h.core.state, APP).options == protocol
