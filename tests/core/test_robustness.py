"""No input a client can send makes the core raise or leaves a room list wrong."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.protocol.core import COMMANDS
from easyrtc_server.protocol.errors import ErrorCode
from support.corekit import Harness

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
msg_types = st.sampled_from([*COMMANDS, "authenticate", "x", ""])
names = st.sampled_from(["default", "r1", "constructor", "__proto__", "a b", "", "id-1", "id-2"])
shaped = st.fixed_dictionaries(
    {"msgType": msg_types},
    optional={
        "msgData": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "roomJoin": st.dictionaries(names, st.fixed_dictionaries({"roomName": names})),
                "roomLeave": st.dictionaries(names, st.fixed_dictionaries({"roomName": names})),
                "setPresence": st.dictionaries(st.sampled_from(["show", "status"]), json_values),
                "setRoomApiField": st.fixed_dictionaries(
                    {"roomName": names}, optional={"field": json_values}
                ),
                "apiVersion": st.just("1"),
            },
        ),
        "targetEasyrtcid": names | json_values,
        "targetRoom": names | json_values,
        "targetGroup": names | json_values,
    },
)
events = st.tuples(
    st.integers(0, 2),
    st.sampled_from(["easyrtcAuth", "easyrtcCmd", "easyrtcMsg", "other"]),
    shaped | json_values,
    st.booleans(),
)


def _check_consistent(h: Harness) -> None:
    """Every room member is a live connection that knows it is in that room."""
    for app in h.core.apps.values():
        for room in app.rooms.values():
            for cid, member in room.members.items():
                assert app.connections.get(cid) is member.connection
                assert member.connection.rooms[room.name] is member
        for cid, conn in app.connections.items():
            assert h.core.peers[cid].connection is conn
            for name, member in conn.rooms.items():
                assert app.rooms[name].members[cid] is member


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=25), st.lists(st.integers(0, 2), max_size=3))
def test_random_traffic_never_raises_or_corrupts_rooms(
    script: list[tuple[int, str, Any, bool]], closes: list[int]
) -> None:
    h = Harness(room_max_connection=2)
    peers = [h.login(), h.login(), h.open()]
    for index, event, payload, ack in script:
        result = h.send(peers[index], event, payload, ack=ack)
        if result.reply is not None:
            assert result.reply.get("msgType") in {
                "ack",
                "error",
                "token",
                "roomData",
                "roomList",
                "iceConfig",
            }
        _check_consistent(h)
    for index in closes:
        h.close(peers[index])
        _check_consistent(h)


def test_command_before_login_is_refused_with_strict_errors() -> None:
    h = Harness(strict_errors=True)
    peer = h.open()
    assert h.send(peer, "easyrtcCmd", {"msgType": "getRoomList"}).code == (
        ErrorCode.MSG_REJECT_NO_AUTH
    )
    assert h.send(peer, "easyrtcMsg", {"msgType": "x"}).code == ErrorCode.MSG_REJECT_NO_AUTH


def test_events_without_ack_are_ignored() -> None:
    h = Harness()
    a, b = h.login(), h.login()
    result = h.send(
        a,
        "easyrtcCmd",
        {"msgType": "offer", "targetEasyrtcid": b.easyrtcid, "msgData": {"s": 1}},
        ack=False,
    )
    assert result.outcome.sends == []


def test_unknown_event_names_are_ignored() -> None:
    h = Harness()
    assert h.send(h.login(), "message", {"msgType": "x"}).outcome.sends == []


def test_deeply_nested_api_field_is_refused_as_too_large() -> None:
    h = Harness()
    a = h.login()
    deep: Any = "x"
    for _ in range(600):
        deep = {"d": deep}
    msg_data = {"setRoomApiField": {"roomName": "default", "field": deep}}
    assert h.cmd(a, "setRoomApiField", msgData=msg_data).code == ErrorCode.MSG_REJECT_BAD_SIZE
