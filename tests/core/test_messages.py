"""Application messages (easyrtcMsg) to a peer, a room or a group."""

from __future__ import annotations

from typing import Any

import pytest

from easyrtc_server.protocol.errors import ErrorCode
from easyrtc_server.protocol.model import Group
from easyrtc_server.protocol.outcome import Push, Reply
from support.corekit import NOW, Harness


def test_message_to_peer_carries_sender_and_target() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    result = h.msg(a, "chat", targetEasyrtcid=b.easyrtcid, msgData={"text": "hi"})
    assert result.outcome.sends == [
        Push(
            b.easyrtcid,
            "easyrtcMsg",
            {
                "senderEasyrtcid": a.easyrtcid,
                "targetEasyrtcid": b.easyrtcid,
                "msgType": "chat",
                "msgData": {"text": "hi"},
                "easyrtcid": b.easyrtcid,
                "serverTime": NOW,
            },
        ),
        Reply({"msgType": "ack"}),
    ]


def test_message_without_msg_data_arrives_without_it() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    body = h.msg(a, "ping", targetEasyrtcid=b.easyrtcid).pushes(b)[0][1]
    assert "msgData" not in body


@pytest.mark.parametrize("data", [None, 0, "", [], "text", [1, [2]], {"deep": {"er": 1}}])
def test_any_json_msg_data_is_relayed_untouched(data: Any) -> None:
    h = Harness()
    a, b = h.login(), h.login()
    body = h.msg(a, "x", targetEasyrtcid=b.easyrtcid, msgData=data).pushes(b)[0][1]
    assert body["msgData"] == data


def test_message_to_room_reaches_every_other_member() -> None:
    h = Harness()
    a, b, c = h.login(), h.login(), h.login()
    outsider = h.login(roomJoin={"elsewhere": {"roomName": "elsewhere"}})
    result = h.msg(a, "chat", targetRoom="default", msgData="hello")
    recipients = [to for to, _ in result.pushes()]
    assert recipients == [b.easyrtcid, c.easyrtcid]
    assert outsider.easyrtcid not in recipients
    body = result.pushes(c)[0][1]
    assert body == {
        "senderEasyrtcid": a.easyrtcid,
        "msgType": "chat",
        "msgData": "hello",
        "targetRoom": "default",
        "easyrtcid": c.easyrtcid,
        "serverTime": NOW,
    }
    assert result.reply == {"msgType": "ack"}


def test_message_to_room_alone_is_acked() -> None:
    h = Harness()
    a = h.login()
    result = h.msg(a, "chat", targetRoom="default")
    assert result.pushes() == []
    assert result.reply == {"msgType": "ack"}


def test_message_to_peer_within_shared_room() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    result = h.msg(a, "chat", targetEasyrtcid=b.easyrtcid, targetRoom="default")
    assert result.pushes(b)[0][1]["targetRoom"] == "default"


def test_message_to_peer_in_room_the_target_is_not_in() -> None:
    h = Harness()
    a = h.login(roomJoin={"x": {"roomName": "x"}, "default": {"roomName": "default"}})
    b = h.login()
    result = h.msg(a, "chat", targetEasyrtcid=b.easyrtcid, targetRoom="x")
    assert result.code == ErrorCode.MSG_REJECT_TARGET_ROOM


def test_message_to_room_one_is_not_in() -> None:
    h = Harness()
    a = h.login()
    h.join(a, "y")  # it has entered its rooms (see test_quiet_by_default for before)
    h.login(roomJoin={"x": {"roomName": "x"}})
    assert h.msg(a, "chat", targetRoom="x").code == ErrorCode.MSG_REJECT_TARGET_ROOM


def test_message_to_unknown_peer_is_general_failure() -> None:
    h = Harness()
    a = h.login()
    assert h.msg(a, "chat", targetEasyrtcid="gone").code == ErrorCode.MSG_REJECT_GEN_FAIL


def test_message_to_peer_of_other_application_is_refused() -> None:
    h = Harness()
    a = h.login(applicationName="one")
    b = h.login(applicationName="two")
    result = h.msg(a, "chat", targetEasyrtcid=b.easyrtcid)
    assert result.code == ErrorCode.MSG_REJECT_GEN_FAIL
    assert result.pushes() == []


def test_message_to_oneself_is_refused() -> None:
    h = Harness()
    a = h.login()
    assert h.msg(a, "chat", targetEasyrtcid=a.easyrtcid).code == (
        ErrorCode.MSG_REJECT_TARGET_EASYRTCID
    )


def test_message_to_undefined_group_is_refused() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    assert h.msg(a, "chat", targetGroup="g").code == ErrorCode.MSG_REJECT_TARGET_GROUP
    assert h.msg(a, "chat", targetGroup="g", targetEasyrtcid=b.easyrtcid).code == (
        ErrorCode.MSG_REJECT_TARGET_GROUP
    )


def test_message_to_group_defined_by_server_code() -> None:
    h = Harness()
    a, b, c = h.login(), h.login(), h.login()
    app = h.core.apps["default"]
    app.groups["team"] = Group("team", {a.easyrtcid, b.easyrtcid})
    a.connection.groups.add("team")  # type: ignore[union-attr]
    b.connection.groups.add("team")  # type: ignore[union-attr]
    result = h.msg(a, "chat", targetGroup="team")
    assert [to for to, _ in result.pushes()] == [b.easyrtcid]
    assert result.pushes(b)[0][1]["targetGroup"] == "team"
    in_room = h.msg(a, "chat", targetRoom="default", targetGroup="team")
    assert [to for to, _ in in_room.pushes()] == [b.easyrtcid]
    assert h.msg(a, "c", targetGroup="team", targetEasyrtcid=c.easyrtcid).code == (
        ErrorCode.MSG_REJECT_TARGET_GROUP
    )


def test_message_for_the_server_gets_an_error_with_strict_errors() -> None:
    h = Harness(strict_errors=True)
    a = h.login()
    assert h.msg(a, "whoami").code == ErrorCode.MSG_REJECT_BAD_TYPE


MESSAGE_REJECTS: list[tuple[str, Any, ErrorCode]] = [
    ("payload null", None, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
    ("payload a number", 5, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
    ("payload an array", [1], ErrorCode.MSG_REJECT_BAD_TYPE),
    ("no msgType", {"targetRoom": "default"}, ErrorCode.MSG_REJECT_BAD_TYPE),
    ("numeric msgType", {"msgType": 3}, ErrorCode.MSG_REJECT_BAD_TYPE),
    (
        "null target",
        {"msgType": "m", "targetEasyrtcid": None},
        ErrorCode.MSG_REJECT_TARGET_EASYRTCID,
    ),
    (
        "empty target",
        {"msgType": "m", "targetEasyrtcid": ""},
        ErrorCode.MSG_REJECT_TARGET_EASYRTCID,
    ),
    ("bad group name", {"msgType": "m", "targetGroup": "a b"}, ErrorCode.MSG_REJECT_TARGET_GROUP),
    ("bad room name", {"msgType": "m", "targetRoom": 7}, ErrorCode.MSG_REJECT_TARGET_ROOM),
]


@pytest.mark.parametrize(
    ("case", "payload", "code"), MESSAGE_REJECTS, ids=[r[0] for r in MESSAGE_REJECTS]
)
def test_improper_message_is_refused(case: str, payload: Any, code: ErrorCode) -> None:
    h = Harness()
    a = h.login()
    h.login()
    result = h.send(a, "easyrtcMsg", payload)
    assert result.code == code
    assert result.pushes() == []
    assert not result.closes
