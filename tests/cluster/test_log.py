"""Log entries in their stream field: what goes in comes out; what cannot be read says so."""

from __future__ import annotations

import pytest

from easyrtc_server.cluster import log as entries
from easyrtc_server.cluster.log import LogEntry, LogFormatError


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
