"""The member lists a client holds, as easyrtc.js builds them from what it receives.

Coalesced room updates (``room_update_tick`` > 0) merge the ``roomData`` deltas a client would
get one by one into fewer pushes. What a user notices is not the pushes but the lists the client
holds whenever it looks at them, so the differential tests compare those: `applied_views`
replaces each client's delta pushes with the lists it holds at the next thing it observes (an
ack, a ``sync`` marker, any other push), shown only where they changed. Everything else stays
in the trace as it was.

Applying follows easyrtc.js's ``processRoomData`` (node_modules/open-easyrtc/api/
easyrtc_int.js): a ``clientList`` replaces the room's list; a ``clientListDelta`` adds each
``updateClient`` entry the list lacks, refreshes only ``apiField`` and ``presence`` of one it
has, then deletes each ``removeClient`` id; ``roomStatus: "leave"`` forgets the room. It reads
the ``roomData`` of tokens, of ``roomJoin`` / ``roomLeave`` replies and of ``roomData`` pushes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Final

from .trace import Event

APPLIED: Final = "roomData (applied)"
"""The event name of a view: ``push roomData (applied)`` in a rendering."""

Lists = dict[str, dict[str, Any]]
"""Room name → {easyrtcid: the client's entry for that member}."""

_DELTA_KEYS: Final = frozenset({"roomName", "roomStatus", "clientListDelta"})
_REFRESHED: Final = ("apiField", "presence")


def room_data(event: Event) -> dict[str, Any] | None:
    """The ``roomData`` easyrtc.js applies from ``event``, or None."""
    data = event.data
    if not isinstance(data, dict) or event.kind not in {"ack", "push"}:
        return None
    if event.kind == "push" and (event.event != "easyrtcCmd" or data.get("msgType") != "roomData"):
        return None
    if event.kind == "ack" and data.get("msgType") not in {"token", "roomData"}:
        return None
    msg_data = data.get("msgData")
    rooms = msg_data.get("roomData") if isinstance(msg_data, dict) else None
    return rooms if isinstance(rooms, dict) else None


def is_delta_push(event: Event) -> bool:
    """A ``roomData`` push made only of member-list deltas (``roomStatus: "update"``, no
    ``clientList``, no room ``field``): what coalescing may merge."""
    rooms = room_data(event)
    if event.kind != "push" or not rooms:
        return False
    return all(
        isinstance(entry, dict)
        and set(entry) <= _DELTA_KEYS
        and entry.get("roomStatus") == "update"
        and isinstance(entry.get("clientListDelta"), dict)
        for entry in rooms.values()
    )


def apply(lists: Lists, rooms: dict[str, Any]) -> None:
    """``rooms`` (a message's ``roomData``) applied to ``lists`` as easyrtc.js does."""
    for name, entry in rooms.items():
        if not isinstance(entry, dict):
            continue
        if entry.get("roomStatus") == "leave":
            lists.pop(name, None)
            continue
        client_list = entry.get("clientList")
        delta = entry.get("clientListDelta")
        if _truthy(client_list):
            lists[name] = copy.deepcopy(client_list) if isinstance(client_list, dict) else {}
        elif isinstance(delta, dict):
            updates = delta.get("updateClient")
            if isinstance(updates, dict) and updates:
                members = lists.setdefault(name, {})
                for cid, fields in updates.items():
                    if not _truthy(members.get(cid)):
                        members[cid] = copy.deepcopy(fields)
                    elif isinstance(fields, dict) and isinstance(members[cid], dict):
                        for key in _REFRESHED:
                            if key in fields:
                                members[cid][key] = copy.deepcopy(fields[key])
            removes = delta.get("removeClient")
            if isinstance(removes, dict) and name in lists:
                for cid in removes:
                    lists[name].pop(cid, None)


def _changed(lists: Lists, shown: Lists) -> dict[str, Any]:
    """The rooms whose list differs from what was last shown (None: the room is gone)."""
    return {
        name: lists.get(name)
        for name in sorted(set(lists) | set(shown))
        if lists.get(name) != shown.get(name)
    }


@dataclass(frozen=True)
class Points:
    """Where the lists a client holds are compared: before each event it observes."""

    sync: bool
    """``sync`` markers are such events. Not in a cluster whose barriers do not wait for the
    other nodes (``test_differential.CLUSTER_POINTS``): there a delta from another node may
    reach its client after the barrier that follows the change, up to the client's next other
    event; and when that event brings a room's whole list (a token, a ``roomJoin`` reply), the
    coalesced delta may be folded into it, so that list alone shows the room's changes."""


EVERY_EVENT: Final = Points(sync=True)
BESIDE_BARRIERS: Final = Points(sync=False)


def applied_views(events: list[Event], points: Points = EVERY_EVENT) -> list[Event]:
    """``events`` with every client's delta pushes replaced by ``push roomData (applied)``
    events: before each event it observes (``points``) and at the end of the client's events,
    the lists of the rooms that changed since they were last seen whole. Events of the other
    kinds, full lists included, are kept as they are. Views already in ``events`` (a golden
    trace) are applied as the lists they show, so that views taken at ``EVERY_EVENT`` can be
    taken again at fewer points."""
    out: list[Event] = []
    lists: dict[str, Lists] = {}
    shown: dict[str, Lists] = {}

    def show(client: str, folded: frozenset[str] = frozenset()) -> None:
        held = lists.get(client, {})
        changed = _changed(held, shown.get(client, {}))
        for name in folded:
            changed.pop(name, None)
        if changed:
            out.append(Event("push", client, APPLIED, copy.deepcopy(changed)))
            shown[client] = copy.deepcopy(held)

    last: str | None = None
    for event in events:
        client = event.client
        if last is not None and client != last:
            show(last)
        last = client
        held = lists.setdefault(client, {})
        if event.kind == "push" and event.event == APPLIED:  # a view made before (golden)
            for name, members in event.data.items():
                if members is None:
                    held.pop(name, None)
                else:
                    held[name] = copy.deepcopy(members)
            continue
        if is_delta_push(event):
            apply(held, room_data(event) or {})
            continue
        rooms = room_data(event)
        if event.kind != "sync":
            show(client, frozenset() if points.sync else _whole_lists(rooms))
        elif points.sync:
            show(client)
        out.append(event)
        if rooms is not None:  # seen whole: the event itself is compared as it is
            apply(held, rooms)
            shown[client] = copy.deepcopy(held)
    if last is not None:
        show(last)
    return out


def _whole_lists(rooms: dict[str, Any] | None) -> frozenset[str]:
    """The rooms whose whole list ``rooms`` (a message's ``roomData``) gives."""
    if not rooms:
        return frozenset()
    return frozenset(
        name
        for name, entry in rooms.items()
        if isinstance(entry, dict) and _truthy(entry.get("clientList"))
    )


def _truthy(value: Any) -> bool:
    """JavaScript's truth (``{}`` is true): what easyrtc.js's ``if (x)`` tests."""
    return value is not None and value is not False and value != 0 and value != ""
