"""Holding a keyed connection whose socket dropped, and resuming it (``hold``), on the core alone.

The server's part is played here as the server plays it: a close without a goodbye asks
``Core.hold``; a push to a connection without a socket goes through ``Holds.take``; the holds
whose grace ran out are closed.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from easyrtc_server.options import Options, OptionsError
from easyrtc_server.protocol.core import Core
from easyrtc_server.protocol.errors import ErrorCode
from easyrtc_server.protocol.model import Peer
from easyrtc_server.protocol.outcome import Fanout, Outcome, Push
from easyrtc_server.protocol.state import DEPARTURE_GRACE_MS
from support.corekit import NOW, Result, decide

KEY = "k" * 10 + "Q9_-zx" * 4  # 34 characters
OTHER_KEY = "Z" * 30
SECRET = "s" * 32


class World:
    """A core with a clock that moves, and sockets that are open (have a link) or not; each
    member-list change pushed at once (``room_update_tick`` 0) unless told otherwise."""

    def __init__(self, start: int = NOW, prefix: str = "id", **changes: Any) -> None:
        self.now = start
        ids = itertools.count(1)
        options = Options().replace(**{"resume_secret": SECRET, "room_update_tick": 0, **changes})
        self.core = Core(options, clock=lambda: self.now, new_id=lambda: f"{prefix}-{next(ids)}")
        self.open_ids: set[str] = set()
        self.queued: list[tuple[str, dict[str, Any]]] = []

    def connect(self, key: str | None = None, token: str | None = None) -> Peer:
        peer = self.core.open(resume_key=key, resume_token=token)
        self.open_ids.add(peer.easyrtcid)
        return peer

    def deliver(self, out: Outcome) -> Result:
        """What reaches open sockets; pushes to held connections are queued or refused."""
        refused: ErrorCode | None = None
        kept = []
        sends = [
            push
            for send in out.sends
            for push in (send.pushes() if isinstance(send, Fanout) else [send])
        ]
        for send in sends:
            if isinstance(send, Push) and send.to not in self.open_ids:
                code = self.core.state.holds.take(send)
                refused = refused or code
                continue
            kept.append(send)
        if refused is not None:
            kept = [s for s in kept if isinstance(s, Push)]
            kept.append(
                Outcome()
                .reply({"msgType": "error", "msgData": {"errorCode": str(refused)}})
                .sends[0]
            )
        return Result(Outcome(kept, close=out.close))

    def send(self, peer: Peer, event: str, payload: Any) -> Result:
        before = peer.easyrtcid
        out = decide(self.core, self.core.receive(peer, event, payload, True))
        if peer.easyrtcid != before:  # resumed: the socket now answers to the easyrtcid
            self.open_ids.discard(before)
            self.open_ids.add(peer.easyrtcid)
        return self.deliver(out)

    def login(self, peer: Peer, app: str | None = None, rooms: tuple[str, ...] = ("r",)) -> Result:
        data: dict[str, Any] = {"apiVersion": "1.1.1-beta"}
        if app is not None:
            data["applicationName"] = app
        if rooms:
            data["roomJoin"] = {r: {"roomName": r} for r in rooms}
        return self.send(peer, "easyrtcAuth", {"msgType": "authenticate", "msgData": data})

    def drop(self, peer: Peer) -> Result:
        """The socket is gone without a goodbye: held if it can be, else closed."""
        self.open_ids.discard(peer.easyrtcid)
        if self.core.hold(peer):
            return Result(Outcome())
        return self.deliver(self.core.close(peer))

    def goodbye(self, peer: Peer) -> Result:
        self.open_ids.discard(peer.easyrtcid)
        return self.deliver(self.core.close(peer))

    def expire(self) -> list[Result]:
        return [self.deliver(self.core.close(peer)) for peer in self.core.expire_holds()]

    def signal(self, sender: Peer, to: str, n: int) -> Result:
        return self.send(
            sender,
            "easyrtcCmd",
            {"msgType": "candidate", "targetEasyrtcid": to, "msgData": {"n": n}},
        )

    def message(self, sender: Peer, to: str, n: int) -> Result:
        return self.send(
            sender, "easyrtcMsg", {"msgType": "chat", "targetEasyrtcid": to, "msgData": n}
        )


def token_of(result: Result) -> dict[str, Any]:
    reply = result.reply
    assert reply["msgType"] == "token", reply
    data: dict[str, Any] = reply["msgData"]
    return data


def resume_token(result: Result, to: str) -> str:
    bodies = [body for event, body in result.pushes(to) if event == "easyrtcResume"]
    assert len(bodies) == 1, result.pushes(to)
    token: str = bodies[0]["resumeToken"]
    return token


def pair(world: World) -> tuple[Peer, Peer]:
    a = world.connect(KEY)
    world.login(a)
    b = world.connect()
    world.login(b)
    return a, b


def test_a_key_that_is_not_well_formed_is_ignored() -> None:
    world = World()
    for bad in ("short", "x" * 129, "has space " * 3, "é" * 30, 12345, ["k" * 30], None):
        peer = world.connect(bad)  # type: ignore[arg-type]
        assert peer.resume_key is None
    assert world.connect("A" * 22).resume_key is not None


def test_only_a_digest_of_the_key_is_kept() -> None:
    world = World()
    a = world.connect(KEY)
    world.login(a)
    holds = world.core.state.holds
    assert KEY.encode() not in {a.resume_key, *holds.bound}
    assert KEY not in repr(vars(holds)) and KEY not in repr(a)


def test_a_keyed_login_gets_a_resume_token_and_an_unkeyed_one_nothing_more() -> None:
    world = World()
    a = world.connect(KEY)
    result = world.login(a)
    assert resume_token(result, a.easyrtcid)
    b = world.connect()
    result = world.login(b)
    assert [event for event, _ in result.pushes(b.easyrtcid)] == []


def test_a_dropped_keyed_connection_is_held_and_its_peers_hear_nothing() -> None:
    world = World()
    a, b = pair(world)
    result = world.drop(a)
    assert result.pushes() == []
    room = world.core.apps["default"].rooms["r"]
    assert list(room.members) == [a.easyrtcid, b.easyrtcid]


def test_resume_keeps_the_easyrtcid_and_rooms_and_peers_see_no_leave_or_join() -> None:
    world = World()
    a, b = pair(world)
    world.send(
        a, "easyrtcCmd", {"msgType": "roomJoin", "msgData": {"roomJoin": {"s": {"roomName": "s"}}}}
    )
    old_id = a.easyrtcid
    world.drop(a)
    world.now += 5_000
    a2 = world.connect(KEY)
    result = world.login(a2, rooms=("r",))
    token = token_of(result)
    assert token["easyrtcid"] == old_id == a2.easyrtcid
    assert set(token["roomData"]) == {"r", "s"}  # asked for, plus held
    assert set(token["roomData"]["r"]["clientList"]) == {old_id, b.easyrtcid}
    assert result.pushes(b.easyrtcid) == []
    assert world.core.state.holds.counts.resumes == 1


def test_messages_sent_meanwhile_arrive_once_in_order_after_the_token() -> None:
    world = World()
    a, b = pair(world)
    world.drop(a)
    for n in range(3):
        assert world.signal(b, a.easyrtcid, n).reply == {"msgType": "ack"}
        assert world.message(b, a.easyrtcid, 10 + n).reply == {"msgType": "ack"}
    a2 = world.connect(KEY)
    result = world.login(a2)
    sends = result.outcome.sends
    assert sends[0].body["msgType"] == "token"
    got = [
        (event, body["msgData"])
        for event, body in result.pushes(a2.easyrtcid)
        if event != "easyrtcResume"
    ]
    assert got == [
        ("easyrtcCmd", {"n": 0}),
        ("easyrtcMsg", 10),
        ("easyrtcCmd", {"n": 1}),
        ("easyrtcMsg", 11),
        ("easyrtcCmd", {"n": 2}),
        ("easyrtcMsg", 12),
    ]
    # once: a later drop and resume brings nothing old
    world.drop(a2)
    a3 = world.connect(KEY)
    again = world.login(a3)
    assert [e for e, _ in again.pushes(a3.easyrtcid)] == ["easyrtcResume"]


def test_past_the_queue_bound_the_sender_gets_the_gone_peer_error() -> None:
    world = World(resume_queue_messages=2)
    a, b = pair(world)
    world.drop(a)
    assert world.signal(b, a.easyrtcid, 1).reply == {"msgType": "ack"}
    assert world.message(b, a.easyrtcid, 2).reply == {"msgType": "ack"}
    assert world.signal(b, a.easyrtcid, 3).code == ErrorCode.MSG_REJECT_TARGET_EASYRTCID
    assert world.message(b, a.easyrtcid, 4).code == ErrorCode.MSG_REJECT_GEN_FAIL


def test_the_queue_is_bounded_in_bytes_too() -> None:
    world = World(resume_queue_bytes=400)
    a, b = pair(world)
    world.drop(a)
    assert world.message(b, a.easyrtcid, "x" * 100).reply == {"msgType": "ack"}
    assert world.message(b, a.easyrtcid, "x" * 300).code == ErrorCode.MSG_REJECT_GEN_FAIL


def test_room_updates_are_not_queued_the_token_carries_the_lists() -> None:
    world = World()
    a, b = pair(world)
    world.drop(a)
    c = world.connect()
    world.login(c)  # joins r: a roomData push for the held connection
    world.goodbye(b)
    a2 = world.connect(KEY)
    result = world.login(a2)
    assert [e for e, _ in result.pushes(a2.easyrtcid)] == ["easyrtcResume"]
    assert set(token_of(result)["roomData"]["r"]["clientList"]) == {a2.easyrtcid, c.easyrtcid}


def test_a_clean_goodbye_leaves_at_once() -> None:
    world = World()
    a, b = pair(world)
    result = world.goodbye(a)
    [(_event, body)] = result.pushes(b.easyrtcid)
    assert body["msgData"]["roomData"]["r"]["clientListDelta"]["removeClient"] == {
        a.easyrtcid: {"easyrtcid": a.easyrtcid}
    }
    a2 = world.connect(KEY)
    assert token_of(world.login(a2))["easyrtcid"] != a.easyrtcid


def test_when_the_grace_runs_out_the_hold_ends_as_a_disconnect() -> None:
    world = World(resume_grace=30)
    a, b = pair(world)
    world.drop(a)
    assert world.core.next_hold_expiry() == world.now + 30_000
    world.now += 29_999
    assert world.expire() == []
    world.now += 1
    [result] = world.expire()
    [(_event, body)] = result.pushes(b.easyrtcid)
    assert a.easyrtcid in body["msgData"]["roomData"]["r"]["clientListDelta"]["removeClient"]
    assert world.core.state.holds.counts.expiries == 1
    a2 = world.connect(KEY)
    assert token_of(world.login(a2))["easyrtcid"] != a.easyrtcid  # an ordinary new login
    assert world.message(b, a.easyrtcid, 1).code is None  # just gone (DEPARTURE_GRACE_MS)
    world.now += DEPARTURE_GRACE_MS
    assert world.message(b, a.easyrtcid, 1).code == ErrorCode.MSG_REJECT_GEN_FAIL


def test_a_wrong_key_is_an_ordinary_new_login() -> None:
    world = World()
    a, b = pair(world)
    world.drop(a)
    other = world.connect(OTHER_KEY)
    result = world.login(other)
    assert token_of(result)["easyrtcid"] not in (a.easyrtcid, b.easyrtcid)
    assert world.core.state.holds.is_held(a.easyrtcid)


def test_a_key_resumes_only_its_own_application() -> None:
    world = World()
    a, _ = pair(world)
    world.drop(a)
    elsewhere = world.connect(KEY)
    result = world.login(elsewhere, app="other")
    assert token_of(result)["easyrtcid"] != a.easyrtcid


def test_without_grace_nothing_is_held() -> None:
    world = World(resume_grace=0)
    a, b = pair(world)
    result = world.drop(a)
    assert result.pushes(b.easyrtcid)  # told at once


def test_the_key_reused_while_its_connection_is_live_takes_it_over() -> None:
    world = World()
    a, b = pair(world)
    old_id = a.easyrtcid
    a2 = world.connect(KEY)  # before the server noticed that the first socket dropped
    result = world.login(a2)
    assert token_of(result)["easyrtcid"] == old_id
    assert result.pushes(b.easyrtcid) == []
    assert world.core.is_superseded(a) and a.connection is None
    # the first socket, closed by the server, is no one any more
    assert world.deliver(world.core.close(a)).pushes() == []
    assert world.core.peers[old_id] is a2
    assert world.signal(b, old_id, 1).pushes(old_id)


def test_a_resumed_connection_can_be_held_and_resumed_again() -> None:
    world = World()
    a, b = pair(world)
    for _ in range(3):
        world.drop(a)
        a = world.connect(KEY)
        assert world.login(a).pushes(b.easyrtcid) == []
    assert world.core.state.holds.counts.resumes == 3


def test_a_changed_presence_is_an_ordinary_update() -> None:
    world = World()
    a, b = pair(world)
    world.drop(a)
    a2 = world.connect(KEY)
    data = {
        "apiVersion": "1.1.1-beta",
        "roomJoin": {"r": {"roomName": "r"}},
        "setPresence": {"show": "away", "status": "brb"},
    }
    result = world.send(a2, "easyrtcAuth", {"msgType": "authenticate", "msgData": data})
    [(_event, body)] = result.pushes(b.easyrtcid)
    update = body["msgData"]["roomData"]["r"]["clientListDelta"]["updateClient"]
    assert update[a2.easyrtcid]["presence"] == {"show": "away", "status": "brb"}


def test_held_connections_keep_their_api_fields() -> None:
    world = World()
    a, _b = pair(world)
    field = {"mood": {"fieldName": "mood", "fieldValue": "ok"}}
    world.send(
        a,
        "easyrtcCmd",
        {
            "msgType": "setRoomApiField",
            "msgData": {"setRoomApiField": {"roomName": "r", "field": field}},
        },
    )
    world.drop(a)
    a2 = world.connect(KEY)
    token = token_of(world.login(a2))
    assert token["roomData"]["r"]["clientList"][a2.easyrtcid]["apiField"] == field


# -- across a restart: the resume token -------------------------------------------------------


def restarted(world: World, after_ms: int = 2_000, **changes: Any) -> World:
    """A new process (no memory) started ``after_ms`` later, with the same secret."""
    return World(start=world.now + after_ms, prefix="new", **changes)


def test_after_a_restart_the_token_gives_the_easyrtcid_back() -> None:
    world = World()
    a = world.connect(KEY)
    token = resume_token(world.login(a), a.easyrtcid)
    new = restarted(world)
    new.now += 3_000
    b = new.connect()
    new.login(b)
    a2 = new.connect(KEY, token)
    result = new.login(a2)
    assert token_of(result)["easyrtcid"] == a.easyrtcid
    assert resume_token(result, a.easyrtcid) != token
    assert new.core.state.holds.counts.restores == 1
    # the peers that came back first see it come back
    [(_event, body)] = result.pushes(b.easyrtcid)
    assert a.easyrtcid in body["msgData"]["roomData"]["r"]["clientListDelta"]["updateClient"]


def test_a_restore_token_works_once() -> None:
    world = World()
    a = world.connect(KEY)
    token = resume_token(world.login(a), a.easyrtcid)
    new = restarted(world)
    first = new.connect(KEY, token)
    new.login(first)
    new.goodbye(first)
    again = new.connect(KEY, token)
    assert token_of(new.login(again))["easyrtcid"] != a.easyrtcid


def test_a_restore_token_needs_its_key_its_application_and_the_grace() -> None:
    world = World()
    a = world.connect(KEY)
    token = resume_token(world.login(a), a.easyrtcid)
    new = restarted(world)
    wrong_key = new.connect(OTHER_KEY, token)
    assert token_of(new.login(wrong_key))["easyrtcid"] != a.easyrtcid
    other_app = new.connect(KEY, token)
    assert token_of(new.login(other_app, app="other"))["easyrtcid"] != a.easyrtcid
    forged = new.connect(KEY, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert token_of(new.login(forged))["easyrtcid"] != a.easyrtcid
    late = restarted(world)
    late.now += 30_000
    too_late = late.connect(KEY, token)
    assert token_of(late.login(too_late))["easyrtcid"] != a.easyrtcid


def test_a_token_of_this_process_restores_nothing() -> None:
    world = World()
    a = world.connect(KEY)
    token = resume_token(world.login(a), a.easyrtcid)
    world.goodbye(a)
    again = world.connect(KEY, token)
    assert token_of(world.login(again))["easyrtcid"] != a.easyrtcid


def test_another_secret_restores_nothing() -> None:
    world = World()
    a = world.connect(KEY)
    token = resume_token(world.login(a), a.easyrtcid)
    new = restarted(world, resume_secret="t" * 32)
    a2 = new.connect(KEY, token)
    assert token_of(new.login(a2))["easyrtcid"] != a.easyrtcid


def test_a_short_resume_secret_is_refused_at_start() -> None:
    with pytest.raises(OptionsError, match="'resume_secret' is 5 bytes long"):
        Options.from_mapping({"resume_secret": "short"})
    with pytest.raises(OptionsError, match="resume_grace"):
        Options.from_mapping({"resume_grace": -1})
