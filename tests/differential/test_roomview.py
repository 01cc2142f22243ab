"""The member lists the differential tests compare instead of raw ``roomData`` deltas
(``support.roomview``): merged and one-by-one deltas must look the same, different lists must
not, and everything that is not a delta stays where it was."""

from __future__ import annotations

from typing import Any

from support.roomview import APPLIED, BESIDE_BARRIERS, applied_views
from support.trace import Event, parse, render

ALICE = {"easyrtcid": "@alice", "roomJoinTime": "<time>", "presence": {"show": "chat"}}
BOB = {"easyrtcid": "@bob", "roomJoinTime": "<time>", "presence": {"show": "chat"}}
CAROL = {"easyrtcid": "@carol", "roomJoinTime": "<time>"}


def delta(rooms: dict[str, dict[str, Any]]) -> Event:
    """A roomData push to alice: {room: {"updateClient"/"removeClient": {...}}}."""
    room_data = {
        name: {"roomName": name, "roomStatus": "update", "clientListDelta": change}
        for name, change in rooms.items()
    }
    body = {"msgType": "roomData", "msgData": {"roomData": room_data}, "easyrtcid": "@alice"}
    return Event("push", "alice", "easyrtcCmd", body)


def token(members: dict[str, Any]) -> Event:
    room = {"roomName": "r1", "roomStatus": "join", "clientList": members}
    body = {"msgType": "token", "msgData": {"roomData": {"r1": room}}}
    return Event("ack", "alice", "easyrtcAuth", body, "authenticate")


SYNC = Event("sync", "alice", "")
ACK = Event("ack", "alice", "easyrtcCmd", {"msgType": "ack"}, "setPresence")


def views(events: list[Event]) -> list[Any]:
    return [e.data for e in applied_views(events) if e.event == APPLIED]


def test_merged_deltas_give_the_same_lists_as_one_by_one() -> None:
    one_by_one = [
        token({"@alice": ALICE}),
        delta({"r1": {"updateClient": {"@bob": BOB}}}),
        delta({"r1": {"updateClient": {"@carol": CAROL}}}),
        delta({"r1": {"removeClient": {"@bob": {"easyrtcid": "@bob"}}}}),
        delta({"r2": {"updateClient": {"@carol": CAROL}}}),
        SYNC,
    ]
    merged = [
        token({"@alice": ALICE}),
        delta(
            {
                "r1": {
                    "updateClient": {"@carol": CAROL},
                    "removeClient": {"@bob": {"easyrtcid": "@bob"}},
                },
                "r2": {"updateClient": {"@carol": CAROL}},
            }
        ),
        SYNC,
    ]
    assert render(applied_views(one_by_one)) == render(applied_views(merged))
    assert views(merged) == [{"r1": {"@alice": ALICE, "@carol": CAROL}, "r2": {"@carol": CAROL}}]


def test_a_delta_after_the_observation_is_a_difference() -> None:
    on_time = [delta({"r1": {"updateClient": {"@bob": BOB}}}), ACK, SYNC]
    late = [ACK, delta({"r1": {"updateClient": {"@bob": BOB}}}), SYNC]
    assert render(applied_views(on_time)) != render(applied_views(late))
    assert [e.kind for e in applied_views(late)] == ["ack", "push", "sync"]


def test_a_different_list_is_a_difference() -> None:
    expected = [delta({"r1": {"updateClient": {"@bob": BOB}}}), SYNC]
    other = [delta({"r1": {"updateClient": {"@carol": CAROL}}}), SYNC]
    assert views(expected) != views(other)


def test_an_update_of_a_known_member_refreshes_only_presence_and_api_field() -> None:
    """As easyrtc.js: a member already listed keeps its other fields; so an update that carries
    an unchanged apiField again leaves the same list as one without it."""
    api = {"x": {"fieldName": "x", "fieldValue": 1}}
    known = [token({"@bob": {**BOB, "apiField": api}})]
    away = {"show": "away"}
    without = delta({"r1": {"updateClient": {"@bob": {"easyrtcid": "@bob", "presence": away}}}})
    with_api = delta(
        {"r1": {"updateClient": {"@bob": {**BOB, "presence": away, "apiField": api, "x": 1}}}}
    )
    assert views([*known, without, SYNC]) == views([*known, with_api, SYNC])
    assert views([*known, without, SYNC]) == [
        {"r1": {"@bob": {**BOB, "presence": away, "apiField": api}}}
    ]


def test_deltas_that_change_nothing_show_nothing() -> None:
    joined_and_left = [
        token({"@alice": ALICE}),
        delta({"r1": {"updateClient": {"@bob": BOB}}}),
        delta({"r1": {"removeClient": {"@bob": {"easyrtcid": "@bob"}}}}),
        SYNC,
    ]
    assert views(joined_and_left) == []


def test_full_lists_and_other_events_are_kept_as_they_are() -> None:
    events = [token({"@alice": ALICE}), ACK, SYNC, Event("push", "alice", "easyrtcMsg", {"m": 1})]
    assert applied_views(events) == events


def test_views_are_per_client() -> None:
    bob_sync = Event("sync", "bob", "")
    events = [delta({"r1": {"updateClient": {"@bob": BOB}}}), bob_sync]
    assert [(e.client, e.kind) for e in applied_views(events)] == [
        ("alice", "push"),
        ("bob", "sync"),
    ]


def test_a_golden_view_taken_again_at_fewer_points() -> None:
    """Views taken at every event and rendered (a golden trace) give, parsed and taken again
    at every event but sync markers, what the deltas give taken there directly."""
    events = [
        token({"@alice": ALICE}),
        delta({"r1": {"updateClient": {"@bob": BOB}}}),
        SYNC,
        delta({"r1": {"removeClient": {"@bob": {"easyrtcid": "@bob"}}}}),
        delta({"r1": {"updateClient": {"@carol": CAROL}}}),
        SYNC,
        ACK,
    ]
    lines = render(applied_views(events))
    assert render(parse(lines)) == lines
    again = render(applied_views(parse(lines), BESIDE_BARRIERS))
    assert again == render(applied_views(events, BESIDE_BARRIERS))
    assert [line for line in again if " | " in line and "    " not in line][-2:] == [
        "alice | push roomData (applied)",
        "alice | ack easyrtcCmd/setPresence",
    ]


def test_in_a_cluster_a_late_delta_may_be_folded_into_the_next_whole_list() -> None:
    """Beside barriers, a change the next reply's whole list brings is shown by that list; at
    every event the client held it before the reply."""
    joined = token({"@alice": ALICE, "@bob": BOB})
    folded = [token({"@alice": ALICE}), SYNC, joined]
    told = [token({"@alice": ALICE}), delta({"r1": {"updateClient": {"@bob": BOB}}}), SYNC, joined]
    assert render(applied_views(told, BESIDE_BARRIERS)) == render(
        applied_views(folded, BESIDE_BARRIERS)
    )
    assert render(applied_views(told)) != render(applied_views(folded))
    other_room = [token({"@alice": ALICE}), delta({"r2": {"updateClient": {"@bob": BOB}}}), joined]
    assert views_beside_barriers(other_room) == [{"r2": {"@bob": BOB}}]


def views_beside_barriers(events: list[Event]) -> list[Any]:
    return [e.data for e in applied_views(events, BESIDE_BARRIERS) if e.event == APPLIED]


def test_an_empty_client_list_empties_the_room() -> None:
    """``{}`` is true to JavaScript: easyrtc.js replaces the list with it (and then ignores the
    entry's delta)."""
    emptied = Event(
        "push",
        "alice",
        "easyrtcCmd",
        {
            "msgType": "roomData",
            "msgData": {"roomData": {"r1": {"roomName": "r1", "clientList": {}}}},
        },
    )
    events = [
        token({"@alice": ALICE, "@bob": BOB}),
        emptied,
        delta({"r1": {"updateClient": {"@carol": CAROL}}}),
        SYNC,
    ]
    assert views(events) == [{"r1": {"@carol": CAROL}}]
