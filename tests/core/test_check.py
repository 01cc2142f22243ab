"""``Core.check``: what a cluster logs of a state-changing event does what the event does.

The origin node checks a client's event with the core's own rules and logs only what they read
(never the raw payload, never the credential). Two cores in the same state, one fed the event
and one fed what ``check`` kept of it, must answer alike and end alike; a refusal is the same
refusal, and ``check`` changes nothing.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.protocol.core import changes_state
from easyrtc_server.protocol.model import Peer
from easyrtc_server.protocol.outcome import Outcome
from support.corekit import Harness, Result

JUNK = st.dictionaries(
    st.sampled_from(["junk", "x", "credential2"]), st.text(max_size=5), max_size=2
)
ROOM_NAMES = st.sampled_from(["r1", "r2", "bad name!", ""])
ROOM_MAP = st.one_of(
    st.dictionaries(
        ROOM_NAMES,
        st.fixed_dictionaries(
            {"roomName": ROOM_NAMES},
            optional={"roomParameter": st.one_of(st.integers(), st.just({"p": 1})), "extra": JUNK},
        ),
        max_size=3,
    ),
    st.just(["r1"]),
    st.none(),
)
PRESENCE = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "show": st.sampled_from(["away", "chat", "bogus"]),
            "status": st.one_of(st.text(max_size=4), st.integers()),
            "type": st.text(max_size=3),
            "other": st.integers(),
        },
    ),
    st.just([1]),
    st.just("away"),
)
CREDENTIAL = st.one_of(st.just({"password": "hunter2"}), st.just("hunter2"), st.just({}))


LOGIN = st.builds(
    lambda opt, junk: {"msgType": "authenticate", "msgData": {**opt, **junk}},
    st.fixed_dictionaries(
        {"apiVersion": st.sampled_from(["1.1.1-beta", "x y"])},
        optional={
            "applicationName": st.sampled_from(["default", "other", "bad app!"]),
            "username": st.sampled_from(["alice", "bad user!"]),
            "easyrtcsid": st.sampled_from(["sid1", "bad sid!"]),
            "credential": CREDENTIAL,
            "roomJoin": ROOM_MAP,
            "setPresence": PRESENCE,
        },
    ),
    JUNK,
)


def _command(msg_type: str, key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda v, junk, data_junk: {
            "msgType": msg_type,
            "msgData": {key: v, **data_junk} if v is not None else data_junk,
            **junk,
        },
        value,
        JUNK,
        JUNK,
    )


API_FIELD = st.fixed_dictionaries(
    {"roomName": ROOM_NAMES},
    optional={
        "field": st.one_of(
            st.just({"k": {"fieldName": "k", "fieldValue": 1}}), st.just({}), st.just(3)
        ),
        "extra": JUNK,
    },
)
COMMAND = st.one_of(
    _command("roomJoin", "roomJoin", ROOM_MAP),
    _command("roomLeave", "roomLeave", ROOM_MAP),
    _command("setPresence", "setPresence", PRESENCE),
    _command("setRoomApiField", "setRoomApiField", API_FIELD),
)


def _world() -> tuple[Harness, Peer, Peer]:
    h = Harness()
    alice = h.login(roomJoin={"r1": {"roomName": "r1"}})
    bob = h.login(roomJoin={"r1": {"roomName": "r1"}, "r2": {"roomName": "r2"}})
    return h, alice, bob


def _state(h: Harness) -> Any:
    return {
        name: (
            {r: dict(room.entries) for r, room in app.rooms.items()},
            {
                cid: (c.username, dict(c.presence), sorted(c.rooms))
                for cid, c in app.connections.items()
            },
        )
        for name, app in h.core.apps.items()
    }


def _same(event: str, msg: Any, *, fresh: bool) -> None:
    plain, a_alice, _ = _world()
    checked, c_alice, _ = _world()
    a_peer = plain.open() if fresh else a_alice
    c_peer = checked.open() if fresh else c_alice
    assert changes_state(c_peer, event, msg, True)
    before = _state(checked)
    kept = checked.core.check(c_peer, event, msg)
    assert _state(checked) == before  # checking changes nothing
    expected = plain.send(a_peer, event, msg)
    if isinstance(kept, Outcome):
        assert Result(kept).outcome.sends == expected.outcome.sends
        assert kept.close == expected.closes
        return
    assert "credential" not in str(kept)
    got = checked.send(c_peer, event, kept)
    assert got.outcome.sends == expected.outcome.sends
    assert got.closes == expected.closes
    assert _state(checked) == _state(plain)


@settings(max_examples=300, deadline=None)
@given(LOGIN)
def test_a_checked_login_does_what_the_login_does(msg: dict[str, Any]) -> None:
    _same("easyrtcAuth", msg, fresh=True)


@settings(max_examples=300, deadline=None)
@given(COMMAND)
def test_a_checked_command_does_what_the_command_does(msg: dict[str, Any]) -> None:
    _same("easyrtcCmd", msg, fresh=False)


def test_a_checked_login_keeps_no_credential_and_no_junk() -> None:
    h = Harness()
    peer = h.open()
    msg = {
        "msgType": "authenticate",
        "msgData": {
            "apiVersion": "1.1.1-beta",
            "credential": {"password": "hunter2"},
            "junk": "x" * 100_000,
            "roomJoin": {"r1": {"roomName": "r1", "junk": "y" * 1000}},
        },
    }
    kept = h.core.check(peer, "easyrtcAuth", msg)
    assert kept == {
        "msgType": "authenticate",
        "msgData": {"apiVersion": "1.1.1-beta", "roomJoin": {"r1": {"roomName": "r1"}}},
    }
