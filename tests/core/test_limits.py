"""Bounds on what one client can store and create: presence size, rooms, applications."""

from __future__ import annotations

from typing import Any

from easyrtc_server.protocol.errors import ErrorCode
from support.corekit import Harness


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _rooms(*names: str) -> dict[str, Any]:
    return {name: {"roomName": name} for name in names}


def test_oversized_presence_type_is_refused_and_not_stored() -> None:
    h = Harness(presence_type_max_size=20)
    a, b = h.login(), h.login()
    result = h.cmd(a, "setPresence", msgData={"setPresence": {"show": "away", "type": "x" * 30}})
    assert result.code == ErrorCode.MSG_REJECT_BAD_SIZE
    assert result.pushes(b) == []
    conn = a.connection
    assert conn is not None and conn.presence == {"show": "chat", "status": None}
    fits = h.cmd(a, "setPresence", msgData={"setPresence": {"type": "x" * 18}})
    assert fits.code is None
    assert conn.presence["type"] == "x" * 18


def test_presence_type_too_deep_to_encode_is_refused() -> None:
    h = Harness()
    a = h.login()
    result = h.cmd(a, "setPresence", msgData={"setPresence": {"type": _nested(1000)}})
    assert result.code == ErrorCode.MSG_REJECT_BAD_SIZE
    assert a.connection is not None and "type" not in a.connection.presence


def test_login_with_oversized_presence_is_refused_and_leaves_no_trace() -> None:
    h = Harness()
    peer = h.open()
    result = h.auth(peer, setPresence={"show": "chat", "type": _nested(1000)})
    assert result.code == ErrorCode.MSG_REJECT_BAD_SIZE
    assert result.closes
    assert h.members("default") == []


def test_rooms_per_connection_are_bounded() -> None:
    h = Harness(max_rooms_per_connection=3)
    a = h.login()  # in "default"
    assert h.join(a, "r1", "r2").code is None
    result = h.join(a, "r3")
    assert result.code == ErrorCode.MSG_REJECT_BAD_ROOM
    assert "r3" not in h.core.apps["default"].rooms
    # joining a room it is already in does not count again
    assert h.join(a, "r1").code is None
    h.leave(a, "r2")
    assert h.join(a, "r3").code is None


def test_a_login_naming_more_rooms_than_allowed_is_refused() -> None:
    h = Harness(max_rooms_per_join=2)
    peer = h.open()
    result = h.auth(peer, roomJoin=_rooms("a", "b", "c"))
    assert result.code == ErrorCode.LOGIN_BAD_ROOM
    assert result.closes
    assert set(h.core.apps["default"].rooms) == {"default"}


def test_a_room_join_naming_more_rooms_than_allowed_is_refused_before_reading_them() -> None:
    h = Harness(max_rooms_per_join=2, max_rooms_per_connection=0)
    a = h.login()
    # names that break the rules are not even read: the count alone refuses it
    result = h.cmd(a, "roomJoin", msgData={"roomJoin": {f"bad name {i}": 1 for i in range(3)}})
    assert result.code == ErrorCode.MSG_REJECT_BAD_ROOM
    assert h.join(a, "x", "y").code is None


def test_clients_cannot_create_rooms_beyond_the_application_limit() -> None:
    h = Harness(max_rooms_per_app=3)  # "default" is one of them
    a, b = h.login(), h.login()
    assert h.join(a, "r1", "r2").code is None
    assert h.join(b, "r3").code == ErrorCode.MSG_REJECT_BAD_ROOM
    # existing rooms can still be joined
    assert h.join(b, "r1").code is None
    login = h.auth(h.open(), roomJoin=_rooms("r4"))
    assert login.code == ErrorCode.LOGIN_BAD_ROOM


def test_logins_cannot_create_applications_beyond_the_limit() -> None:
    h = Harness(max_apps=2)  # the default application is one
    h.login(applicationName="one")
    result = h.auth(h.open(), applicationName="two")
    assert result.code == ErrorCode.LOGIN_APP_AUTH_FAIL
    assert set(h.core.apps) == {"default", "one"}
    h.login(applicationName="one")  # an existing application still takes logins


def test_zero_turns_the_room_and_application_limits_off() -> None:
    h = Harness(max_rooms_per_connection=0, max_rooms_per_join=0, max_rooms_per_app=0, max_apps=0)
    a = h.login()
    names = [f"r{i}" for i in range(120)]
    assert h.join(a, *names).code is None
    assert a.connection is not None and len(a.connection.rooms) == 121
