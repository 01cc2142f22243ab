"""Silence where the reference is silent, and no refusal for a room its sender is entering.

easyrtc.js shows every error it receives in a dialog (``easyrtc.showError``), so an answer where
the reference says nothing is a dialog in some real app. ``strict_errors`` brings the answers
back for protocol clients and debugging.
"""

from __future__ import annotations

from easyrtc_server.errors import ErrorCode
from easyrtc_server.relay import ENTRY_GRACE_MS
from support.corekit import Harness


def test_messages_before_login_get_no_answer() -> None:
    h = Harness()
    peer = h.open()
    for event, payload in (
        ("easyrtcCmd", {"msgType": "getRoomList"}),
        ("easyrtcCmd", {"msgType": "offer", "targetEasyrtcid": "x", "msgData": {"a": 1}}),
        ("easyrtcMsg", {"msgType": "u", "msgData": {}, "targetRoom": "basic"}),
    ):
        result = h.send(peer, event, payload)
        assert result.outcome.sends == [] and not result.closes
    assert h.auth(peer).reply["msgType"] == "token"  # the login that follows is unaffected


def test_messages_before_login_are_refused_with_strict_errors() -> None:
    h = Harness(strict_errors=True)
    peer = h.open()
    assert h.send(peer, "easyrtcMsg", {"msgType": "u"}).code == ErrorCode.MSG_REJECT_NO_AUTH


def test_message_for_the_server_that_nobody_handles_gets_no_answer() -> None:
    h = Harness()
    a = h.login()
    assert h.msg(a, "whoami").outcome.sends == []


def test_room_message_while_entering_is_not_refused() -> None:
    """networked-aframe (wseasyrtc) logs in, then fetches the time, then joins its room; its
    entity updates to that room go out all along. The old code (and the reference) refused
    them with MSG_REJECT_TARGET_ROOM, a dialog on the page."""
    h = Harness()
    bob = h.login(roomJoin={"basic": {"roomName": "basic"}})
    alice = h.login()  # token received: alice is in "default" only
    early = h.msg(alice, "u", msgData={"x": 1}, targetRoom="basic")
    assert early.code is None and early.reply == {"msgType": "ack"}
    assert early.pushes() == []  # the room is not hers yet: it reaches nobody
    assert h.join(alice, "basic").code is None
    delivered = h.msg(alice, "u", msgData={"x": 2}, targetRoom="basic")
    assert [(to, body["msgData"]) for to, body in delivered.pushes()] == [(bob.easyrtcid, {"x": 2})]


def test_entering_ends_with_the_first_room_join() -> None:
    h = Harness()
    alice = h.login()
    h.join(alice, "lobby")
    assert h.msg(alice, "u", targetRoom="basic").code == ErrorCode.MSG_REJECT_TARGET_ROOM


def test_entering_ends_after_the_grace_time() -> None:
    h = Harness()
    alice = h.login()
    h.now += ENTRY_GRACE_MS - 1
    assert h.msg(alice, "u", targetRoom="basic").code is None
    h.now += 1
    assert h.msg(alice, "u", targetRoom="basic").code == ErrorCode.MSG_REJECT_TARGET_ROOM


def test_entering_still_refuses_malformed_room_names() -> None:
    h = Harness()
    alice = h.login()
    assert h.msg(alice, "u", targetRoom="bad room").code == ErrorCode.MSG_REJECT_TARGET_ROOM


def test_room_message_while_entering_is_refused_with_strict_errors() -> None:
    h = Harness(strict_errors=True)
    alice = h.login()
    assert h.msg(alice, "u", targetRoom="basic").code == ErrorCode.MSG_REJECT_TARGET_ROOM


def test_room_asked_for_in_the_login_is_the_senders_at_once() -> None:
    """A room named in the login is joined before the token: the next message, sent without
    waiting for the token, reaches its members (messages of one socket are handled in order)."""
    h = Harness()
    bob = h.login(roomJoin={"basic": {"roomName": "basic"}})
    alice = h.open()
    h.auth(alice, roomJoin={"basic": {"roomName": "basic"}})
    sent = h.msg(alice, "u", msgData=1, targetRoom="basic")
    assert [to for to, _ in sent.pushes()] == [bob.easyrtcid]
