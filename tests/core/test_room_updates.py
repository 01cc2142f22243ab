"""Member lists with coalesced room updates (``room_update_tick``): a member's view, its token
and every reply and push applied in order as easyrtc.js applies them, equals the room after
every tick; each member gets one push per tick; the token is never rebuilt member by member."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.options import Options
from easyrtc_server.protocol.core import Core
from easyrtc_server.protocol.model import Peer
from easyrtc_server.protocol.outcome import Fanout, Outcome, Push, Reply, Send
from support.corekit import NOW, decide

View = dict[str, dict[str, dict[str, Any]]]


def apply_room_data(view: View, rooms: dict[str, Any]) -> None:
    """What easyrtc.js's processRoomData does with a ``roomData`` (token, reply or push)."""
    for name, room in rooms.items():
        if room.get("roomStatus") == "leave":
            view.pop(name, None)
            continue
        if "clientList" in room:
            view[name] = {cid: dict(entry) for cid, entry in room["clientList"].items()}
            continue
        delta = room.get("clientListDelta")
        if not delta:
            continue
        members = view.setdefault(name, {})
        for cid, entry in (delta.get("updateClient") or {}).items():
            known = members.setdefault(cid, dict(entry))
            for key in ("apiField", "presence"):
                if key in entry:
                    known[key] = entry[key]
        for cid in delta.get("removeClient") or {}:
            members.pop(cid, None)


def expanded(sends: list[Send]) -> list[Send]:
    """``sends`` with each ``Fanout`` as the pushes it makes."""
    return [
        push for send in sends for push in (send.pushes() if isinstance(send, Fanout) else [send])
    ]


class Sockets:
    """A core with an injected clock and sockets whose views follow what they receive."""

    def __init__(self, tick: float) -> None:
        self.clock = NOW
        counter = iter(range(1, 1_000_000))
        options = Options(room_update_tick=tick, room_max_connection=0)
        self.core = Core(options, clock=lambda: self.clock, new_id=lambda: f"id-{next(counter)}")
        self.views: dict[str, View] = {}
        self.received: dict[str, int] = {}

    def deliver(self, out: Outcome, sender: Peer | None) -> None:
        out = self.core.settle(out, sender)
        for send in expanded(out.sends):
            to = sender.easyrtcid if isinstance(send, Reply) and sender else None
            if isinstance(send, Push):
                to = send.to
            if to is None or to not in self.views:
                continue
            body = send.body
            if body.get("msgType") == "token":
                self.views[to] = {}
                apply_room_data(self.views[to], body["msgData"]["roomData"])
            elif body.get("msgType") == "roomData":
                apply_room_data(self.views[to], body["msgData"]["roomData"])
                if isinstance(send, Push):
                    self.received[to] = self.received.get(to, 0) + 1

    def event(self, peer: Peer, event: str, payload: Any) -> None:
        self.deliver(decide(self.core, self.core.receive(peer, event, payload, True)), peer)

    def flush(self) -> None:
        due = self.core.next_room_update()
        if due is not None:
            self.clock = max(self.clock, due)
        self.received = {}
        self.deliver(self.core.flush_room_updates(), None)

    def truth(self, easyrtcid: str) -> View:
        """The lists a logged-in socket should show: its rooms as they are."""
        conn = self.core.peers[easyrtcid].connection
        assert conn is not None
        return {
            name: {cid: dict(entry) for cid, entry in member.room.entries.items()}
            for name, member in conn.rooms.items()
        }

    def check(self) -> None:
        for cid, view in self.views.items():
            peer = self.core.peers.get(cid)
            if peer is None or peer.connection is None:
                continue
            assert _comparable(view) == _comparable(self.truth(cid)), cid


def _comparable(view: View) -> dict[str, dict[str, Any]]:
    """A view as the application sees it (an apiField of ``{}`` is no apiField). Not the
    username: easyrtc.js keeps the one it first saw (a login again may change it), with or
    without coalescing."""
    return {
        room: {
            cid: (e["roomJoinTime"], e["presence"], e.get("apiField") or None)
            for cid, e in members.items()
        }
        for room, members in view.items()
    }


_steps = st.lists(
    st.tuples(
        st.sampled_from(
            ["login", "login", "join", "leave", "presence", "api", "msg", "close", "tick", "tick"]
        ),
        st.integers(0, 4),
        st.sampled_from(["r1", "r2", "default"]),
        st.sampled_from(["chat", "away", "dnd"]),
        st.integers(0, 4),
    ),
    max_size=60,
)


def _run(tick: float, steps: list[Any]) -> None:
    s = Sockets(tick)
    peers: dict[int, Peer] = {}
    for op, who, room, show, other in steps:
        s.clock += 1
        peer = peers.get(who)
        if op == "login":
            if peer is None:
                peer = peers[who] = s.core.open()
                s.views[peer.easyrtcid] = {}
            data = {
                "apiVersion": "1.1.1-beta",
                "roomJoin": {room: {"roomName": room}},
                "setPresence": {"show": show},
                "username": f"u{who}{show}",
            }
            s.event(peer, "easyrtcAuth", {"msgType": "authenticate", "msgData": data})
        elif op == "tick":
            s.flush()
            assert all(count == 1 for count in s.received.values()), s.received
            s.check()
        elif peer is None:
            continue
        elif op == "close":
            s.views.pop(peer.easyrtcid, None)
            s.deliver(s.core.close(peer), None)
            del peers[who]
        elif op in ("join", "leave"):
            key = "roomJoin" if op == "join" else "roomLeave"
            msg = {"msgType": key, "msgData": {key: {room: {"roomName": room}}}}
            s.event(peer, "easyrtcCmd", msg)
        elif op == "presence":
            msg = {"msgType": "setPresence", "msgData": {"setPresence": {"show": show}}}
            s.event(peer, "easyrtcCmd", msg)
        elif op == "api":
            field = {"mediaIds": {"fieldName": "mediaIds", "fieldValue": show}} if other else {}
            request = {"roomName": room, "field": field}
            msg = {"msgType": "setRoomApiField", "msgData": {"setRoomApiField": request}}
            s.event(peer, "easyrtcCmd", msg)
        elif op == "msg" and other in peers:
            target = peers[other].easyrtcid
            s.event(peer, "easyrtcMsg", {"msgType": "hi", "targetEasyrtcid": target})
        if not tick:
            s.check()  # without coalescing every list is right after every event
    s.flush()
    s.check()


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_every_member_sees_the_room_after_each_tick(steps: list[Any]) -> None:
    _run(0.005, steps)


@settings(max_examples=100, deadline=None)
@given(_steps)
def test_without_a_tick_every_member_sees_the_room_after_each_event(steps: list[Any]) -> None:
    _run(0.0, steps)


def _login(s: Sockets, room: str = "default") -> Peer:
    peer = s.core.open()
    s.views[peer.easyrtcid] = {}
    data = {"apiVersion": "1.1.1-beta", "roomJoin": {room: {"roomName": room}}}
    s.event(peer, "easyrtcAuth", {"msgType": "authenticate", "msgData": data})
    return peer


def test_a_storm_of_joins_is_one_push_per_member_per_tick() -> None:
    s = Sockets(0.005)
    first = [_login(s) for _ in range(20)]
    assert s.core.next_room_update() == NOW + 5
    out = s.core.flush_room_updates()
    pushes = [send for send in expanded(out.sends) if isinstance(send, Push)]
    # the first joiner hears of the 19 others at once; the last one's token held them all
    assert len(pushes) == 19
    by_member = {push.to: push.body for push in pushes}
    assert first[-1].easyrtcid not in by_member
    delta = by_member[first[0].easyrtcid]["msgData"]["roomData"]["default"]["clientListDelta"]
    assert list(delta["updateClient"]) == [p.easyrtcid for p in first[1:]]
    assert s.core.next_room_update() is None


def test_the_members_told_the_same_changes_share_one_body() -> None:
    s = Sockets(0.005)
    settled = [_login(s) for _ in range(10)]
    s.flush()
    joined = [_login(s) for _ in range(3)]
    s.clock += 5
    out = s.core.flush_room_updates()
    # the 10 current at the last tick are told the same delta: one Fanout, encoded once;
    # the first two joiners each hear of the later ones; the last one's token had everyone
    fanouts = [send for send in out.sends if isinstance(send, Fanout)]
    assert [fanout.to for fanout in fanouts] == [[p.easyrtcid for p in settled]]
    assert sorted(send.to for send in out.sends if isinstance(send, Push)) == sorted(
        p.easyrtcid for p in joined[:2]
    )
    body = fanouts[0].body_for(settled[3].easyrtcid)
    assert list(body) == ["msgType", "msgData", "easyrtcid", "serverTime"]  # the wire's order
    delta = body["msgData"]["roomData"]["default"]["clientListDelta"]
    assert list(delta["updateClient"]) == [p.easyrtcid for p in joined]
    s.deliver(out, None)
    s.check()


def test_a_reply_comes_after_the_changes_pending_for_its_member() -> None:
    s = Sockets(1.0)
    a = _login(s)
    b = _login(s)
    out = decide(s.core, s.core.receive(a, "easyrtcCmd", {"msgType": "getRoomList"}, True))
    sends = s.core.settle(out, a).sends
    assert [type(send) for send in sends] == [Push, Reply]
    assert isinstance(sends[0], Push) and sends[0].to == a.easyrtcid
    delta = sends[0].body["msgData"]["roomData"]["default"]["clientListDelta"]
    assert list(delta["updateClient"]) == [b.easyrtcid]
    # a is current now: the tick has nothing left for it
    assert all(
        send.to != a.easyrtcid
        for send in expanded(s.core.flush_room_updates().sends)
        if isinstance(send, Push)
    )


def test_a_room_message_comes_after_the_changes_pending_for_each_recipient() -> None:
    s = Sockets(1.0)
    a, b, c = _login(s), _login(s), _login(s)
    msg = {"msgType": "chat", "targetRoom": "default", "msgData": "hi"}
    out = decide(s.core, s.core.receive(c, "easyrtcMsg", msg, True))
    sends = s.core.settle(out, c).sends
    # a and b each hear of the joins they have not been told of, then the message (one send
    # for both: its body is encoded once); c's token was current, its ack comes at once
    assert [type(send) for send in sends] == [Push, Push, Fanout, Reply]
    first, second, fanout = sends[:3]
    assert isinstance(first, Push) and first.to == a.easyrtcid
    assert isinstance(second, Push) and second.to == b.easyrtcid
    a_delta = first.body["msgData"]["roomData"]["default"]["clientListDelta"]
    assert list(a_delta["updateClient"]) == [b.easyrtcid, c.easyrtcid]
    b_delta = second.body["msgData"]["roomData"]["default"]["clientListDelta"]
    assert list(b_delta["updateClient"]) == [c.easyrtcid]
    assert isinstance(fanout, Fanout) and fanout.to == [a.easyrtcid, b.easyrtcid]
    assert fanout.body_for(b.easyrtcid) == {
        "senderEasyrtcid": c.easyrtcid,
        "msgType": "chat",
        "msgData": "hi",
        "targetRoom": "default",
        "serverTime": s.clock,
        "easyrtcid": b.easyrtcid,
    }
    assert s.core.flush_room_updates().sends == []  # everyone is current: nothing left


def test_a_member_who_left_and_came_back_within_a_tick_is_seen_leaving_first() -> None:
    s = Sockets(1.0)
    a = _login(s)
    b = _login(s)
    s.flush()
    leave = {"msgType": "roomLeave", "msgData": {"roomLeave": {"default": {"roomName": "default"}}}}
    s.event(b, "easyrtcCmd", leave)
    s.clock += 10
    join = {"msgType": "roomJoin", "msgData": {"roomJoin": {"default": {"roomName": "default"}}}}
    s.event(b, "easyrtcCmd", join)
    rejoined = s.clock
    s.flush()
    assert s.views[a.easyrtcid]["default"][b.easyrtcid]["roomJoinTime"] == rejoined
    s.check()


def test_the_token_copies_the_cached_list_instead_of_rebuilding_it() -> None:
    s = Sockets(0.0)
    peers = [_login(s) for _ in range(3)]
    room = s.core.apps["default"].rooms["default"]
    cached = room.entries[peers[0].easyrtcid]
    late = _login(s)
    assert s.views[late.easyrtcid]["default"][peers[0].easyrtcid] == cached
    assert room.entries[peers[0].easyrtcid] is cached  # not rebuilt by the join
