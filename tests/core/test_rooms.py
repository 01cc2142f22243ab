"""Rooms, presence, apiFields, room lists, ICE config and the other commands."""

from __future__ import annotations

from typing import Any

import pytest

from easyrtc_server.options import DEFAULT_ICE_SERVERS
from easyrtc_server.protocol.errors import ErrorCode
from easyrtc_server.protocol.outcome import Fanout, Push, Reply
from support.corekit import NOW, Harness


def _room_data(body: dict[str, Any]) -> dict[str, Any]:
    assert body["msgType"] == "roomData", body
    return body["msgData"]["roomData"]  # type: ignore[no-any-return]


def test_join_new_room_replies_full_list_and_tells_members() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    h.join(b, "talk")
    result = h.join(a, "talk")
    rooms = _room_data(result.reply)
    assert rooms["talk"]["roomStatus"] == "join"
    assert set(rooms["talk"]["clientList"]) == {a.easyrtcid, b.easyrtcid}
    assert "serverTime" not in result.reply
    pushed = result.pushes(b)
    assert len(pushed) == 1
    delta = _room_data(pushed[0][1])["talk"]
    assert delta["roomStatus"] == "update"
    assert list(delta["clientListDelta"]["updateClient"]) == [a.easyrtcid]
    # pushes go out before the reply
    assert isinstance(result.outcome.sends[-1], Reply)


def test_rejoin_keeps_join_time_and_tells_members_again() -> None:
    times = iter([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    h = Harness()
    h.core.state.now = lambda: next(times)  # join times come from the state's clock
    a, b = h.login(), h.login()
    first = _room_data(h.join(a, "default").reply)["default"]["clientList"][a.easyrtcid]
    again = h.join(a, "default")
    assert (
        _room_data(again.reply)["default"]["clientList"][a.easyrtcid]["roomJoinTime"]
        == (first["roomJoinTime"])
    )
    assert len(again.pushes(b)) == 1


def test_join_is_all_or_nothing() -> None:
    h = Harness(room_max_connection=1)
    a = h.login()
    b = h.login(roomJoin={"full": {"roomName": "full"}})
    result = h.join(a, "free", "full")
    assert result.code == ErrorCode.MSG_REJECT_BAD_ROOM
    assert "free" not in h.core.apps["default"].rooms
    assert result.pushes() == []
    assert h.members("full") == [b.easyrtcid]


def test_join_missing_room_without_auto_create() -> None:
    h = Harness(room_auto_create_enable=False)
    a = h.login()
    assert h.join(a, "nowhere").code == ErrorCode.MSG_REJECT_BAD_ROOM


@pytest.mark.parametrize(
    ("msg_data", "code"),
    [
        (None, ErrorCode.MSG_REJECT_BAD_DATA),
        ("rooms", ErrorCode.MSG_REJECT_BAD_DATA),
        ({}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"roomJoin": {}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"roomJoin": {"a b": {"roomName": "a b"}}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"roomJoin": {"a": {"roomName": "b"}}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"roomJoin": {"a": None}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
    ],
)
def test_improper_room_join(msg_data: Any, code: ErrorCode) -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "roomJoin", msgData=msg_data).code == code


def test_leave_tells_remaining_members_and_lists_every_requested_room() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    result = h.leave(a, "default", "never-joined")
    assert _room_data(result.reply) == {
        "default": {"roomName": "default", "roomStatus": "leave"},
        "never-joined": {"roomName": "never-joined", "roomStatus": "leave"},
    }
    delta = _room_data(result.pushes(b)[0][1])["default"]
    assert delta["clientListDelta"] == {"removeClient": {a.easyrtcid: {"easyrtcid": a.easyrtcid}}}
    assert h.members("default") == [b.easyrtcid]
    # still online and reachable with no room
    assert h.cmd(b, "hangup", targetEasyrtcid=a.easyrtcid).reply == {"msgType": "ack"}


def test_leave_with_empty_map_replies_empty() -> None:
    h = Harness()
    a = h.login()
    assert _room_data(h.cmd(a, "roomLeave", msgData={"roomLeave": {}}).reply) == {}


@pytest.mark.parametrize(
    ("msg_data", "code"),
    [
        (None, ErrorCode.MSG_REJECT_BAD_DATA),
        ({}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"roomLeave": {"x": {"roomName": "y"}}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
    ],
)
def test_improper_room_leave(msg_data: Any, code: ErrorCode) -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "roomLeave", msgData=msg_data).code == code
    assert h.members("default") == [a.easyrtcid]


def test_emptied_client_room_is_forgotten_but_default_room_stays() -> None:
    h = Harness()
    a = h.login()
    h.join(a, "temp")
    h.leave(a, "temp", "default")
    rooms = h.cmd(a, "getRoomList").reply["msgData"]["roomList"]
    assert rooms == {"default": {"roomName": "default", "numberClients": 0}}


def test_emptied_rooms_kept_when_reclaiming_is_off() -> None:
    h = Harness(reclaim_empty_rooms=False)
    a = h.login()
    h.join(a, "temp")
    h.leave(a, "temp")
    assert "temp" in h.cmd(a, "getRoomList").reply["msgData"]["roomList"]


def test_room_list_counts_members_of_own_application_only() -> None:
    h = Harness()
    a = h.login()
    h.login()
    h.login(applicationName="other", roomJoin={"hidden": {"roomName": "hidden"}})
    assert h.cmd(a, "getRoomList").reply == {
        "msgType": "roomList",
        "msgData": {"roomList": {"default": {"roomName": "default", "numberClients": 2}}},
    }


@pytest.mark.parametrize("msg_data", [None, {}, []])
def test_room_list_refuses_any_msg_data(msg_data: Any) -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "getRoomList", msgData=msg_data).code == ErrorCode.MSG_REJECT_BAD_DATA


@pytest.mark.parametrize(
    "fields", [{}, {"msgData": {}}, {"msgData": None}, {"msgData": ""}, {"msgData": 0}]
)
def test_ice_config_with_empty_msg_data(fields: dict[str, Any]) -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "getIceConfig", **fields).reply == {
        "msgType": "iceConfig",
        "msgData": {"iceConfig": {"iceServers": DEFAULT_ICE_SERVERS}},
    }


@pytest.mark.parametrize("msg_data", [{"a": 1}, [1], "x"])
def test_ice_config_refuses_non_empty_msg_data(msg_data: Any) -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "getIceConfig", msgData=msg_data).code == ErrorCode.MSG_REJECT_BAD_DATA


def test_presence_reply_and_one_push_per_peer_with_shared_rooms() -> None:
    h = Harness()
    a = h.login(roomJoin={"default": {"roomName": "default"}, "x": {"roomName": "x"}})
    b = h.login(roomJoin={"default": {"roomName": "default"}, "x": {"roomName": "x"}})
    c = h.login()
    h.cmd(a, "setRoomApiField", msgData={"setRoomApiField": {"roomName": "x", "field": {"k": 1}}})
    result = h.cmd(
        a, "setPresence", msgData={"setPresence": {"show": "dnd", "status": "in a call"}}
    )
    reply_rooms = _room_data(result.reply)
    assert set(reply_rooms) == {"default", "x"}
    entry = reply_rooms["x"]["clientListDelta"]["updateClient"][a.easyrtcid]
    assert entry == {
        "easyrtcid": a.easyrtcid,
        "roomJoinTime": NOW,
        "presence": {"show": "dnd", "status": "in a call"},
    }
    assert isinstance(result.outcome.sends[0], Reply)  # reply first
    assert len(result.pushes(b)) == 1
    assert set(_room_data(result.pushes(b)[0][1])) == {"default", "x"}
    assert set(_room_data(result.pushes(c)[0][1])) == {"default"}


def test_presence_in_no_room_replies_empty() -> None:
    h = Harness()
    a = h.login()
    h.leave(a, "default")
    assert _room_data(h.cmd(a, "setPresence", msgData={"setPresence": {"show": "xa"}}).reply) == {}


@pytest.mark.parametrize(
    ("msg_data", "code"),
    [
        (None, ErrorCode.MSG_REJECT_BAD_DATA),
        ({"setPresence": {}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"setPresence": {"show": "online"}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"setPresence": {"status": "two\nlines"}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"setPresence": {"status": 5}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
    ],
)
def test_improper_presence(msg_data: Any, code: ErrorCode) -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "setPresence", msgData=msg_data).code == code
    assert a.connection is not None and a.connection.presence == {"show": "chat", "status": None}


def test_api_field_is_per_room_and_reaches_room_members() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    field = {"mediaIds": {"fieldName": "mediaIds", "fieldValue": {"default": "abc"}}}
    result = h.cmd(
        a, "setRoomApiField", msgData={"setRoomApiField": {"roomName": "default", "field": field}}
    )
    entry = _room_data(result.reply)["default"]["clientListDelta"]["updateClient"][a.easyrtcid]
    assert entry["apiField"] == field
    assert _room_data(result.pushes(b)[0][1]) == _room_data(result.reply)
    joined = h.join(h.login(), "default").reply
    assert _room_data(joined)["default"]["clientList"][a.easyrtcid]["apiField"] == field


def test_clearing_api_field_tells_peers_to_drop_it() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    h.cmd(
        a,
        "setRoomApiField",
        msgData={"setRoomApiField": {"roomName": "default", "field": {"k": 1}}},
    )
    result = h.cmd(a, "setRoomApiField", msgData={"setRoomApiField": {"roomName": "default"}})
    pushed = _room_data(result.pushes(b)[0][1])["default"]
    assert pushed["clientListDelta"]["updateClient"][a.easyrtcid]["apiField"] == {}
    listed = _room_data(h.join(b, "default").reply)["default"]["clientList"][a.easyrtcid]
    assert "apiField" not in listed


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (None, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"roomName": "a b"}, ErrorCode.MSG_REJECT_BAD_ROOM),
        ({"roomName": "elsewhere"}, ErrorCode.MSG_REJECT_BAD_ROOM),
        ({"roomName": "default", "field": "x"}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"roomName": "default", "field": {"k": "v" * 4090}}, ErrorCode.MSG_REJECT_BAD_SIZE),
    ],
)
def test_improper_api_field(request_: Any, code: ErrorCode) -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "setRoomApiField", msgData={"setRoomApiField": request_}).code == code


def test_api_field_without_msg_data() -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "setRoomApiField").code == ErrorCode.MSG_REJECT_BAD_DATA


def test_api_field_just_under_the_size_limit_is_accepted() -> None:
    h = Harness()
    a = h.login()
    field = {"k": "v" * (4096 - len('{"k":""}') - 1)}
    reply = h.cmd(
        a, "setRoomApiField", msgData={"setRoomApiField": {"roomName": "default", "field": field}}
    ).reply
    assert reply["msgType"] == "roomData"


def test_user_cfg_is_acked() -> None:
    h = Harness()
    a = h.login()
    cfg = {"userSettings": {"sharingAudio": True}, "p2pList": {"x": {"connectTime": 1}}}
    assert h.cmd(a, "setUserCfg", msgData={"setUserCfg": cfg}).reply == {"msgType": "ack"}


@pytest.mark.parametrize(
    ("msg_data", "code"),
    [
        (None, ErrorCode.MSG_REJECT_BAD_DATA),
        ({"setUserCfg": {}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"setUserCfg": {"p2pList": {}}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ({"setUserCfg": {"userSettings": "x"}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
    ],
)
def test_improper_user_cfg(msg_data: Any, code: ErrorCode) -> None:
    h = Harness()
    a = h.login()
    assert h.cmd(a, "setUserCfg", msgData=msg_data).code == code


def test_still_alive_is_acked() -> None:
    h = Harness()
    assert h.cmd(h.login(), "stillAlive").reply == {"msgType": "ack"}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (None, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ("offer", ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        (True, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
        ([], ErrorCode.MSG_REJECT_BAD_TYPE),
        ({}, ErrorCode.MSG_REJECT_BAD_TYPE),
        ({"msgType": 1}, ErrorCode.MSG_REJECT_BAD_TYPE),
        ({"msgType": "dance"}, ErrorCode.MSG_REJECT_BAD_TYPE),
        ({"msgType": "__class__"}, ErrorCode.MSG_REJECT_BAD_TYPE),
    ],
)
def test_improper_command(payload: Any, code: ErrorCode) -> None:
    h = Harness()
    assert h.send(h.login(), "easyrtcCmd", payload).code == code


def test_disconnect_removes_from_every_room_one_push_per_room() -> None:
    h = Harness()
    rooms = {"default": {"roomName": "default"}, "x": {"roomName": "x"}}
    a = h.login(roomJoin=rooms, easyrtcsid="s1")
    b = h.login(roomJoin=rooms)
    result = h.close(a)
    pushed = result.pushes(b)
    assert [list(_room_data(body)) for _, body in pushed] == [["default"], ["x"]]
    assert h.members("default") == [b.easyrtcid]
    assert a.easyrtcid not in h.core.apps["default"].connections
    assert h.core.apps["default"].sessions == {}


def test_client_created_application_is_forgotten_when_last_client_leaves() -> None:
    h = Harness()
    a = h.login(applicationName="pop-up")
    h.close(a)
    assert "pop-up" not in h.core.apps
    assert "default" in h.core.apps


def test_array_room_maps_are_read_by_index_as_the_reference_does() -> None:
    h = Harness()
    a = h.login()
    joined = h.cmd(a, "roomJoin", msgData={"roomJoin": [{"roomName": "0"}]})
    assert set(_room_data(joined.reply)) == {"0"}
    left = h.cmd(a, "roomLeave", msgData={"roomLeave": []})
    assert _room_data(left.reply) == {}
    assert h.cmd(a, "roomJoin", msgData={"roomJoin": []}).code == ErrorCode.MSG_REJECT_BAD_STRUCTURE


def test_room_parameter_is_not_checked_by_room_join() -> None:
    h = Harness()
    a = h.login()
    rooms = {"r": {"roomName": "r", "roomParameter": "not an object"}}
    assert _room_data(h.cmd(a, "roomJoin", msgData={"roomJoin": rooms}).reply)["r"][
        "roomStatus"
    ] == ("join")


def test_a_join_reply_rebuilt_later_lists_the_room_as_it_is_then() -> None:
    """A join answered after the core applied it (a partitioned node asks the room's
    partition first): members that came and went meanwhile are in its rebuilt reply, and
    the joiner is told only what changes after it."""
    h = Harness(room_update_tick=0.005)
    a, b, c = h.login(), h.login(), h.login()
    h.join(b, "talk")
    first = h.join(a, "talk")
    assert set(_room_data(first.reply)["talk"]["clientList"]) == {a.easyrtcid, b.easyrtcid}
    h.join(c, "talk")
    h.leave(b, "talk")
    conn = a.connection
    assert conn is not None
    rebuilt = _room_data(h.core.join_reply(conn, ["talk", "elsewhere"]))
    assert list(rebuilt) == ["talk"]
    assert rebuilt["talk"]["roomStatus"] == "join"
    assert set(rebuilt["talk"]["clientList"]) == {a.easyrtcid, c.easyrtcid}
    told = set()  # told of talk's changes
    for send in h.core.flush_room_updates().sends:
        assert isinstance(send, Push | Fanout)
        if "talk" in _room_data(send.body):
            told.update([send.to] if isinstance(send.to, str) else send.to)
    assert a.easyrtcid not in told  # its list is current: no update for what it was given
    assert c.easyrtcid in told  # b's leave, after c's join
