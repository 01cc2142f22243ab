"""Where policy may say no, the core asks (a decision) and changes nothing until answered."""

from __future__ import annotations

from typing import Any

import pytest

from easyrtc_server.protocol.decisions import (
    IceRequested,
    JoinPhase,
    JoinRequested,
    LoginAdmitted,
    LoginRequested,
    ServerMessage,
    UnknownCommand,
)
from easyrtc_server.protocol.errors import ErrorCode
from easyrtc_server.protocol.ice import ice_servers
from easyrtc_server.protocol.outcome import Outcome
from support.corekit import Harness

AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
ROOM_X = {"x": {"roomName": "x"}}


def test_login_asks_three_times_before_the_token() -> None:
    h = Harness()
    core = h.core
    peer = h.open()
    login = core.receive(peer, "easyrtcAuth", AUTH, True)
    assert isinstance(login, LoginRequested)
    join = core.accept_login(login)
    assert isinstance(join, JoinRequested)
    assert join.phase is JoinPhase.LOGIN and list(join.rooms) == ["default"] and not join.creates
    assert peer.connection is None  # nothing changed yet
    admitted = core.accept_join(join)
    assert isinstance(admitted, LoginAdmitted) and peer.connection is admitted.conn
    out = core.accept_token(admitted, [])
    assert out.sends[0].body["msgType"] == "token"


def test_room_join_and_server_bound_events_are_decisions() -> None:
    h = Harness()
    peer = h.login()
    core = h.core
    cmd: dict[str, Any] = {"msgType": "roomJoin", "msgData": {"roomJoin": ROOM_X}}
    join = core.receive(peer, "easyrtcCmd", cmd, True)
    assert isinstance(join, JoinRequested)
    assert join.phase is JoinPhase.ROOM_JOIN and join.creates == frozenset({"x"})
    assert "x" not in core.apps["default"].rooms
    ice = core.receive(peer, "easyrtcCmd", {"msgType": "getIceConfig"}, True)
    assert isinstance(ice, IceRequested)
    assert isinstance(core.receive(peer, "easyrtcMsg", {"msgType": "hi"}, True), ServerMessage)
    assert isinstance(core.receive(peer, "easyrtcCmd", {"msgType": "hi"}, True), UnknownCommand)


def test_refused_room_join_changes_nothing_and_answers_the_code() -> None:
    h = Harness()
    peer = h.login()
    join = h.core.receive(
        peer, "easyrtcCmd", {"msgType": "roomJoin", "msgData": {"roomJoin": ROOM_X}}, True
    )
    assert isinstance(join, JoinRequested)
    out = h.core.refuse(join, ErrorCode.MSG_REJECT_BAD_ROOM, "Wrong PIN.")
    assert out.sends[0].body["msgData"] == {
        "errorCode": "MSG_REJECT_BAD_ROOM",
        "errorText": "Wrong PIN.",
    }
    assert not out.close and "x" not in h.core.apps["default"].rooms


def test_refused_admission_is_undone_and_closes() -> None:
    h = Harness()
    other = h.login()
    peer = h.open()
    login = h.core.receive(peer, "easyrtcAuth", AUTH, True)
    assert isinstance(login, LoginRequested)
    join = h.core.accept_login(login)
    assert isinstance(join, JoinRequested)
    admitted = h.core.accept_join(join)
    assert isinstance(admitted, LoginAdmitted)
    out = h.core.refuse(admitted, ErrorCode.LOGIN_GEN_FAIL)
    assert out.close and [s.body["msgType"] for s in out.sends] == ["error"]  # peers told nothing
    assert peer.connection is None
    assert h.members("default") == [other.easyrtcid]


def _decision_of(h: Harness, kind: str) -> tuple[Any, Any]:
    """A socket and a pending decision of ``kind`` for it."""
    core = h.core
    if kind in ("login", "join-at-login", "admitted"):
        peer = h.open()
        step: Any = core.receive(
            peer,
            "easyrtcAuth",
            {**AUTH, "msgData": {"apiVersion": "1.1.1-beta", "roomJoin": ROOM_X}},
            True,
        )
        if kind != "login":
            step = core.accept_login(step)
        if kind == "admitted":
            step = core.accept_join(step)
        return peer, step
    peer = h.login()
    msgs = {
        "room-join": ("easyrtcCmd", {"msgType": "roomJoin", "msgData": {"roomJoin": ROOM_X}}),
        "ice": ("easyrtcCmd", {"msgType": "getIceConfig"}),
        "server-message": ("easyrtcMsg", {"msgType": "hi"}),
        "command": ("easyrtcCmd", {"msgType": "hi"}),
    }
    event, msg = msgs[kind]
    return peer, core.receive(peer, event, msg, True)


KINDS = ["login", "join-at-login", "admitted", "room-join", "ice", "server-message", "command"]


def _accept(h: Harness, decision: Any) -> Outcome | Any:
    core = h.core
    match decision:
        case LoginRequested():
            return core.accept_login(decision)
        case JoinRequested():
            return core.accept_join(decision)
        case LoginAdmitted():
            return core.accept_token(decision, ice_servers(decision.conn, core.options))
        case IceRequested():
            return core.accept_ice(decision, [])
        case _:
            return core.accept_reply(decision, None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("answer", ["accept", "refuse"])
def test_decision_answered_after_the_socket_closed_changes_nothing(kind: str, answer: str) -> None:
    h = Harness()
    witness = h.login()
    peer, decision = _decision_of(h, kind)
    h.close(peer)
    if answer == "accept":
        out = _accept(h, decision)
    else:
        out = h.core.refuse(decision, ErrorCode.MSG_REJECT_BAD_ROOM)
    assert isinstance(out, Outcome)
    assert out.sends == [] and not out.close
    assert peer.connection is None and peer.easyrtcid not in h.core.peers
    assert h.members("default") == [witness.easyrtcid]
    assert "x" not in h.core.apps["default"].rooms
