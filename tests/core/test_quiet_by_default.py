"""Silence where the reference is silent, no refusal for a room its sender is entering, and none
for a peer that has just left.

easyrtc.js shows every error it receives in a dialog (``easyrtc.showError``), so an answer where
the reference says nothing is a dialog in some real app. ``strict_errors`` brings the answers
back for protocol clients and debugging.
"""

from __future__ import annotations

from easyrtc_server.protocol.errors import ErrorCode
from easyrtc_server.protocol.relay import ENTRY_GRACE_MS
from easyrtc_server.protocol.state import DEPARTURE_GRACE_MS
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


def test_message_to_a_peer_that_has_just_left_is_not_refused() -> None:
    """networked-aframe (``easyrtc`` adapter): a closing page's data channel goes first, so its
    peer sends the next entity update over the server before the ``removeClient`` reaches it.
    The reference answers MSG_REJECT_GEN_FAIL, a dialog on the page that stays."""
    h = Harness()
    alice, bob = h.login(), h.login()
    h.close(bob)
    late = h.msg(alice, "u", msgData={"x": 1}, targetEasyrtcid=bob.easyrtcid)
    assert late.code is None and late.reply == {"msgType": "ack"}
    assert late.pushes() == []


def test_a_departed_peer_is_refused_after_the_grace_time() -> None:
    h = Harness()
    alice, bob = h.login(), h.login()
    h.close(bob)
    h.now += DEPARTURE_GRACE_MS - 1
    assert h.msg(alice, "u", targetEasyrtcid=bob.easyrtcid).code is None
    h.now += 1
    refused = h.msg(alice, "u", targetEasyrtcid=bob.easyrtcid)
    assert refused.code == ErrorCode.MSG_REJECT_GEN_FAIL


def test_an_id_that_was_never_online_is_refused_at_once() -> None:
    h = Harness()
    alice = h.login()
    unknown = h.msg(alice, "u", targetEasyrtcid="AAAAAAAAAAAAAAAA")
    assert unknown.code == ErrorCode.MSG_REJECT_GEN_FAIL


def test_signals_to_a_departed_peer_are_refused_as_the_reference() -> None:
    """Only application messages: easyrtc.js' own signals to a gone peer fail its call quietly."""
    h = Harness()
    alice, bob = h.login(), h.login()
    h.close(bob)
    offer = h.cmd(alice, "offer", targetEasyrtcid=bob.easyrtcid, msgData={"sdp": "x"})
    assert offer.code == ErrorCode.MSG_REJECT_TARGET_EASYRTCID


def test_message_to_a_departed_peer_is_refused_with_strict_errors() -> None:
    h = Harness(strict_errors=True)
    alice, bob = h.login(), h.login()
    h.close(bob)
    late = h.msg(alice, "u", targetEasyrtcid=bob.easyrtcid)
    assert late.code == ErrorCode.MSG_REJECT_GEN_FAIL


def test_departures_are_forgotten_after_the_grace_time() -> None:
    """Memory: a busy server remembers only the last grace's departures."""
    h = Harness()
    alice = h.login()
    for _ in range(5):
        h.close(h.login())
    h.now += DEPARTURE_GRACE_MS
    h.close(h.login())
    app = h.core.apps["default"]
    assert len(app.departed) == 1
    assert alice.easyrtcid in app.connections
