"""Authentication in the core: the token, every refusal and its code, and no leftovers."""

from __future__ import annotations

from typing import Any

import pytest

from easyrtc_server.options import DEFAULT_ICE_SERVERS
from easyrtc_server.protocol.errors import ERROR_TEXTS, ErrorCode
from easyrtc_server.protocol.outcome import Reply
from support.corekit import NOW, Harness


def test_token_has_every_part_the_client_reads() -> None:
    h = Harness()
    peer = h.open()
    reply = h.auth(peer).reply
    assert reply == {
        "msgType": "token",
        "msgData": {
            "roomData": {
                "default": {
                    "roomName": "default",
                    "roomStatus": "join",
                    "clientList": {
                        "id-1": {
                            "easyrtcid": "id-1",
                            "roomJoinTime": NOW,
                            "presence": {"show": "chat", "status": None},
                        }
                    },
                }
            },
            "application": {"applicationName": "default"},
            "easyrtcid": "id-1",
            "iceConfig": {"iceServers": DEFAULT_ICE_SERVERS},
            "serverTime": NOW,
        },
    }


def test_second_client_sees_first_and_first_is_told_once() -> None:
    h = Harness()
    first = h.login(username="alice")
    second = h.open()
    result = h.auth(second, username="bob")
    client_list = result.reply["msgData"]["roomData"]["default"]["clientList"]
    assert set(client_list) == {"id-1", "id-2"}
    assert client_list["id-1"]["username"] == "alice"
    pushes = result.pushes(first)
    assert len(pushes) == 1
    event, body = pushes[0]
    assert event == "easyrtcCmd"
    assert body["msgType"] == "roomData"
    assert body["easyrtcid"] == "id-1"
    assert body["serverTime"] == NOW
    assert body["msgData"]["roomData"]["default"] == {
        "roomName": "default",
        "roomStatus": "update",
        "clientListDelta": {
            "updateClient": {
                "id-2": {
                    "easyrtcid": "id-2",
                    "roomJoinTime": NOW,
                    "presence": {"show": "chat", "status": None},
                    "username": "bob",
                }
            }
        },
    }
    # the token is sent before peers hear of the newcomer
    assert isinstance(result.outcome.sends[0], Reply)


def test_auth_with_rooms_joins_only_those_rooms() -> None:
    h = Harness()
    peer = h.open()
    rooms = {"lobby": {"roomName": "lobby"}, "b": {"roomName": "b", "roomParameter": {"x": 1}}}
    reply = h.auth(peer, roomJoin=rooms).reply
    assert set(reply["msgData"]["roomData"]) == {"lobby", "b"}
    assert h.members("default") == []


def test_auth_with_presence_and_custom_application() -> None:
    h = Harness()
    peer = h.open()
    reply = h.auth(
        peer, applicationName="myapp", setPresence={"show": "away", "status": "busy"}
    ).reply
    assert reply["msgData"]["application"] == {"applicationName": "myapp"}
    entry = reply["msgData"]["roomData"]["default"]["clientList"]["id-1"]
    assert entry["presence"] == {"show": "away", "status": "busy"}
    assert "myapp" in h.core.apps


def test_session_appears_in_token() -> None:
    h = Harness()
    peer = h.open()
    reply = h.auth(peer, easyrtcsid="abc%20def").reply
    assert reply["msgData"]["sessionData"] == {"easyrtcsid": "abc%20def"}


def test_shared_default_fields_appear_in_token_and_private_ones_do_not() -> None:
    fields = {
        "greeting": {"fieldValue": "hi", "fieldOption": {"isShared": True}},
        "secret": {"fieldValue": "s3", "fieldOption": {"isShared": False}},
    }
    h = Harness(
        app_default_field_obj=fields,
        connection_default_field_obj=fields,
        room_default_field_obj=fields,
    )
    data = h.auth(h.open()).reply["msgData"]
    shared = {"greeting": {"fieldName": "greeting", "fieldValue": "hi"}}
    assert data["application"]["field"] == shared
    assert data["field"] == shared
    assert data["roomData"]["default"]["field"] == shared


def test_set_user_cfg_in_auth_is_accepted_and_ignored() -> None:
    h = Harness()
    reply = h.auth(h.open(), setUserCfg={"userSettings": {"sharingAudio": True}}).reply
    assert reply["msgType"] == "token"


REJECTS: list[tuple[str, Any, ErrorCode]] = [
    ("payload null", None, ErrorCode.LOGIN_BAD_AUTH),
    ("payload a string", "hello", ErrorCode.LOGIN_BAD_AUTH),
    ("payload an array", [1, 2], ErrorCode.LOGIN_BAD_AUTH),
    (
        "wrong msgType",
        {"msgType": "login", "msgData": {"apiVersion": "1"}},
        ErrorCode.LOGIN_BAD_AUTH,
    ),
    ("no msgData", {"msgType": "authenticate"}, ErrorCode.LOGIN_BAD_STRUCTURE),
    ("msgData a list", {"msgType": "authenticate", "msgData": []}, ErrorCode.LOGIN_BAD_STRUCTURE),
    ("no apiVersion", {"msgType": "authenticate", "msgData": {}}, ErrorCode.LOGIN_BAD_STRUCTURE),
    (
        "apiVersion a number",
        {"msgType": "authenticate", "msgData": {"apiVersion": 1}},
        ErrorCode.LOGIN_BAD_STRUCTURE,
    ),
    (
        "roomJoin null",
        {"msgType": "authenticate", "msgData": {"apiVersion": "1", "roomJoin": None}},
        ErrorCode.LOGIN_BAD_STRUCTURE,
    ),
]


def _auth_msg(**data: Any) -> dict[str, Any]:
    return {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta", **data}}


BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("apiVersion with a space", {"apiVersion": "1 2"}),
    ("apiVersion too long", {"apiVersion": "1" * 33}),
    ("applicationName with a slash", {"applicationName": "a/b"}),
    ("applicationName null", {"applicationName": None}),
    ("easyrtcsid with a space", {"easyrtcsid": "a b"}),
    ("username empty", {"username": ""}),
    ("username with a newline", {"username": "a\nb"}),
    ("username 65 characters", {"username": "x" * 65}),
    ("username a number", {"username": 5}),
    ("credential a string", {"credential": "token"}),
    ("credential empty object", {"credential": {}}),
    ("credential null", {"credential": None}),
    ("room name with a space", {"roomJoin": {"a b": {"roomName": "a b"}}}),
    ("roomName not matching its key", {"roomJoin": {"a": {"roomName": "b"}}}),
    ("room spec not an object", {"roomJoin": {"a": "a"}}),
    ("roomParameter a string", {"roomJoin": {"a": {"roomName": "a", "roomParameter": "x"}}}),
    ("setPresence empty", {"setPresence": {}}),
    ("presence show unknown", {"setPresence": {"show": "busy"}}),
    ("presence status null", {"setPresence": {"status": None}}),
    ("presence status 256 characters", {"setPresence": {"status": "s" * 256}}),
]


@pytest.mark.parametrize(("case", "payload", "code"), REJECTS, ids=[r[0] for r in REJECTS])
def test_improper_login_is_refused_and_socket_closed(
    case: str, payload: Any, code: ErrorCode
) -> None:
    h = Harness()
    result = (
        h.auth(h.open(), raw=payload)
        if payload is not None
        else h.send(h.open(), "easyrtcAuth", None)
    )
    assert result.code == code
    assert result.reply["msgData"]["errorText"] == ERROR_TEXTS[code]
    assert isinstance(result.reply["serverTime"], int)
    assert result.closes


@pytest.mark.parametrize(("case", "fields"), BAD_FIELDS, ids=[b[0] for b in BAD_FIELDS])
def test_improper_login_field_is_bad_structure(case: str, fields: dict[str, Any]) -> None:
    h = Harness()
    result = h.send(h.open(), "easyrtcAuth", _auth_msg(**fields))
    assert result.code == ErrorCode.MSG_REJECT_BAD_STRUCTURE
    assert result.closes
    assert h.core.apps["default"].connections == {}


def test_login_without_ack_closes_without_reply() -> None:
    h = Harness()
    result = h.send(h.open(), "easyrtcAuth", _auth_msg(), ack=False)
    assert result.reply is None
    assert result.closes


def test_unknown_application_refused_without_auto_create() -> None:
    h = Harness(app_auto_create_enable=False)
    result = h.auth(h.open(), applicationName="other")
    assert result.code == ErrorCode.LOGIN_APP_AUTH_FAIL
    assert result.closes
    assert "other" not in h.core.apps


def test_missing_room_refused_without_auto_create() -> None:
    h = Harness(room_auto_create_enable=False)
    result = h.auth(h.open(), roomJoin={"nowhere": {"roomName": "nowhere"}})
    assert result.code == ErrorCode.LOGIN_BAD_ROOM


def test_full_room_refuses_login_and_leaves_no_ghost() -> None:
    h = Harness(room_max_connection=1)
    first = h.login()
    late = h.open()
    result = h.auth(late, roomJoin={"x": {"roomName": "x"}, "default": {"roomName": "default"}})
    assert result.code == ErrorCode.LOGIN_GEN_FAIL
    assert result.closes
    assert result.pushes() == []
    assert h.members("default") == [first.easyrtcid]
    assert "x" not in h.core.apps["default"].rooms
    assert late.connection is None


def test_deleted_default_room_fails_login() -> None:
    h = Harness()
    del h.core.apps["default"].rooms["default"]
    assert h.auth(h.open()).code == ErrorCode.LOGIN_GEN_FAIL


def test_failed_login_into_new_application_leaves_nothing_behind() -> None:
    h = Harness(room_auto_create_enable=False)
    result = h.auth(h.open(), applicationName="fresh", roomJoin={"r": {"roomName": "r"}})
    assert result.code == ErrorCode.LOGIN_BAD_ROOM
    assert "fresh" not in h.core.apps


def test_builtin_object_names_are_ordinary_names() -> None:
    h = Harness()
    for name in ("constructor", "__proto__", "toString", "hasOwnProperty"):
        peer = h.open()
        reply = h.auth(
            peer, applicationName=name, easyrtcsid=name, roomJoin={name: {"roomName": name}}
        ).reply
        assert reply["msgType"] == "token"
        assert set(reply["msgData"]["roomData"]) == {name}


def test_reauth_same_app_keeps_id_and_adds_rooms() -> None:
    h = Harness()
    peer = h.login(username="a")
    other = h.login()
    result = h.auth(peer, username="b", roomJoin={"extra": {"roomName": "extra"}})
    data = result.reply["msgData"]
    assert data["easyrtcid"] == peer.easyrtcid
    assert set(data["roomData"]) == {"default", "extra"}
    assert data["roomData"]["default"]["clientList"][peer.easyrtcid]["username"] == "b"
    assert len(h.core.apps["default"].connections) == 2
    # the other member hears of the change once
    assert len(result.pushes(other)) == 1


def test_reauth_into_full_room_already_joined_succeeds() -> None:
    h = Harness(room_max_connection=2)
    peer = h.login()
    h.login()
    assert h.auth(peer).reply["msgType"] == "token"


def test_reauth_into_other_application_moves_the_connection() -> None:
    h = Harness()
    peer = h.login()
    watcher = h.login()
    result = h.auth(peer, applicationName="second")
    assert result.reply["msgData"]["application"]["applicationName"] == "second"
    assert h.members("default") == [watcher.easyrtcid]
    removed = result.pushes(watcher)
    assert len(removed) == 1
    delta = removed[0][1]["msgData"]["roomData"]["default"]["clientListDelta"]
    assert delta == {"removeClient": {peer.easyrtcid: {"easyrtcid": peer.easyrtcid}}}
    assert h.members("default", app="second") == [peer.easyrtcid]
