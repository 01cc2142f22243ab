"""Log entries in their stream field: what goes in comes out; what cannot be read says so."""

from __future__ import annotations

import pytest

from easyrtc_server.cluster import log as entries
from easyrtc_server.cluster.log import LogEntry, LogFormatError
from easyrtc_server.protocol.decisions import (
    Answer,
    IceAnswer,
    JoinAnswer,
    LoginAnswer,
    Refused,
    ReplyAnswer,
    TokenAnswer,
)
from easyrtc_server.protocol.model import Field
from easyrtc_server.protocol.validation import MISSING


def test_log_entries_survive_their_encoding() -> None:
    entry = entries.recv("n1", 5, "abc", None, "easyrtcCmd", {"msgType": "x", "msgData": [1, "é"]})
    entry.seq = 9
    back = LogEntry.decode(entry.encode())
    assert back == entry
    assert back.peer == "abc"


def test_an_unreadable_entry_is_a_format_error_and_binary_cannot_be_logged() -> None:
    for raw in (b"not json", b"[]", b'{"k": "recv"}', b'{"k": 1, "n": "x", "t": 1, "s": 1}'):
        with pytest.raises(LogFormatError):
            LogEntry.decode(raw)
    with pytest.raises(TypeError):
        entries.recv("n1", 5, "abc", None, "easyrtcMsg", {"msgData": b"\x00"}).encode()


def test_answer_records_survive_their_encoding() -> None:
    fields = {"badge": Field(3, True), "secret": Field("s", False)}
    records: list[Answer] = [
        LoginAnswer("app", "alice", {"r": None}),
        LoginAnswer("app", MISSING, {}),
        JoinAnswer(),
        TokenAnswer([{"urls": "stun:x"}], "alice", {"show": "away", "status": None}, fields),
        IceAnswer([]),
        ReplyAnswer({"msgType": "told"}),
        ReplyAnswer(None),
        Refused("MSG_REJECT_BAD_ROOM", "not this room"),
        Refused("LOGIN_GEN_FAIL"),
    ]
    for record in records:
        back = LogEntry.decode(entries.answer("n1", 5, "abc", record).encode())
        assert entries.answer_of(back.body) == record


def test_an_unreadable_answer_is_no_answer() -> None:
    assert entries.answer_of({"p": "abc", "a": "hello"}) is None
    assert entries.answer_of({"p": "abc"}) is None
