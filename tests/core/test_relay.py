"""WebRTC signals between peers (easyrtcCmd offer/answer/candidate/reject/hangup)."""

from __future__ import annotations

from typing import Any

import pytest

from easyrtc_server.protocol.errors import ErrorCode
from easyrtc_server.protocol.outcome import Push, Reply
from support.corekit import NOW, Harness

CANDIDATE = {
    "type": "candidate",
    "label": 0,
    "id": "0",
    "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host",
}


@pytest.mark.parametrize("msg_type", ["offer", "answer", "candidate"])
def test_signal_with_data_reaches_target_before_ack(msg_type: str) -> None:
    h = Harness()
    a, b = h.login(), h.login()
    result = h.cmd(a, msg_type, targetEasyrtcid=b.easyrtcid, msgData=CANDIDATE)
    assert result.outcome.sends == [
        Push(
            b.easyrtcid,
            "easyrtcCmd",
            {
                "senderEasyrtcid": a.easyrtcid,
                "msgData": CANDIDATE,
                "easyrtcid": b.easyrtcid,
                "msgType": msg_type,
                "serverTime": NOW,
            },
        ),
        Reply({"msgType": "ack"}),
    ]


@pytest.mark.parametrize("msg_type", ["reject", "hangup"])
def test_bare_signal_reaches_target(msg_type: str) -> None:
    h = Harness()
    a, b = h.login(), h.login()
    result = h.cmd(a, msg_type, targetEasyrtcid=b.easyrtcid)
    assert result.reply == {"msgType": "ack"}
    assert result.pushes(b) == [
        (
            "easyrtcCmd",
            {
                "senderEasyrtcid": a.easyrtcid,
                "easyrtcid": b.easyrtcid,
                "msgType": msg_type,
                "serverTime": NOW,
            },
        )
    ]


def test_sender_cannot_be_spoofed() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    result = h.cmd(
        a, "offer", targetEasyrtcid=b.easyrtcid, msgData={"sdp": "x"}, senderEasyrtcid="evil"
    )
    assert result.pushes(b)[0][1]["senderEasyrtcid"] == a.easyrtcid


def test_signal_to_oneself_is_delivered() -> None:
    h = Harness()
    a = h.login()
    result = h.cmd(a, "offer", targetEasyrtcid=a.easyrtcid, msgData={"sdp": "x"})
    assert [event for event, _ in result.pushes(a)] == ["easyrtcCmd"]
    assert result.reply == {"msgType": "ack"}


def test_signal_across_applications_is_refused() -> None:
    h = Harness()
    a = h.login(applicationName="one")
    b = h.login(applicationName="two")
    result = h.cmd(a, "offer", targetEasyrtcid=b.easyrtcid, msgData={"sdp": "x"})
    assert result.code == ErrorCode.MSG_REJECT_TARGET_EASYRTCID
    assert result.pushes() == []


def test_rooms_do_not_restrict_signals() -> None:
    h = Harness()
    a = h.login(roomJoin={"r1": {"roomName": "r1"}})
    b = h.login(roomJoin={"r2": {"roomName": "r2"}})
    assert h.cmd(a, "offer", targetEasyrtcid=b.easyrtcid, msgData={"s": 1}).reply == {
        "msgType": "ack"
    }


def test_signal_to_departed_peer_is_refused() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    h.close(b)
    result = h.cmd(a, "candidate", targetEasyrtcid=b.easyrtcid, msgData=CANDIDATE)
    assert result.code == ErrorCode.MSG_REJECT_TARGET_EASYRTCID


SIGNAL_REJECTS: list[tuple[str, str, dict[str, Any], ErrorCode]] = [
    ("offer without msgData", "offer", {"targetEasyrtcid": "id-2"}, ErrorCode.MSG_REJECT_BAD_DATA),
    (
        "offer empty msgData",
        "offer",
        {"targetEasyrtcid": "id-2", "msgData": {}},
        ErrorCode.MSG_REJECT_BAD_DATA,
    ),
    (
        "candidate string msgData",
        "candidate",
        {"targetEasyrtcid": "id-2", "msgData": "x"},
        ErrorCode.MSG_REJECT_BAD_DATA,
    ),
    (
        "answer null msgData",
        "answer",
        {"targetEasyrtcid": "id-2", "msgData": None},
        ErrorCode.MSG_REJECT_BAD_DATA,
    ),
    (
        "hangup with msgData",
        "hangup",
        {"targetEasyrtcid": "id-2", "msgData": {}},
        ErrorCode.MSG_REJECT_BAD_DATA,
    ),
    (
        "reject with null msgData",
        "reject",
        {"targetEasyrtcid": "id-2", "msgData": None},
        ErrorCode.MSG_REJECT_BAD_DATA,
    ),
    ("offer without target", "offer", {"msgData": {"s": 1}}, ErrorCode.MSG_REJECT_BAD_STRUCTURE),
    (
        "offer numeric target",
        "offer",
        {"targetEasyrtcid": 7, "msgData": {"s": 1}},
        ErrorCode.MSG_REJECT_BAD_STRUCTURE,
    ),
    (
        "offer malformed target",
        "offer",
        {"targetEasyrtcid": "a b", "msgData": {"s": 1}},
        ErrorCode.MSG_REJECT_BAD_STRUCTURE,
    ),
    (
        "hangup unknown target",
        "hangup",
        {"targetEasyrtcid": "nobody"},
        ErrorCode.MSG_REJECT_TARGET_EASYRTCID,
    ),
]


@pytest.mark.parametrize(
    ("case", "msg_type", "fields", "code"), SIGNAL_REJECTS, ids=[r[0] for r in SIGNAL_REJECTS]
)
def test_improper_signal_is_refused(
    case: str, msg_type: str, fields: dict[str, Any], code: ErrorCode
) -> None:
    h = Harness()
    a = h.login()
    h.login()
    result = h.cmd(a, msg_type, **fields)
    assert result.code == code
    assert not result.closes
    assert result.pushes() == []
