"""Coalesced member-list updates (``room_update_tick`` > 0): one delta per room per tick.

A change is noted in its room (``mark_changed``); the server calls ``flush`` once per tick,
which builds each room's delta once and pushes it to every member whose list is behind. A
member whose list is already current (a token or ``roomJoin`` reply built after the change,
``mark_current``) gets nothing, and nobody is told of their own change. Before any other send
to a member (a reply, a relayed message), ``settle`` catches it up first, so the order a member
sees is the order of the changes.

The bookkeeping is per node: which members a node builds updates for is ``here`` (its own
sockets). On a cluster every replica notes the same changes, in log order, and each node
flushes for its own sockets on its own tick; no update is built for, or sent to, another
node's socket. Owns the counters in ``Room`` (``seq``, ``flushed``, ``changed``,
``api_cleared``) and ``Membership.seen``; knows nothing of sockets or the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .model import Membership, Room
from .outcome import Fanout, Json, Outcome, Push, Reply, Send

if TYPE_CHECKING:
    from .state import State


class Coalescer:
    """The member-list changes one node has not told its sockets yet."""

    def __init__(
        self, state: State, tick: float, here: Callable[[str], bool] | None = None
    ) -> None:
        """``tick``: seconds (0: off, each change is told at once by ``State``); ``here``:
        whether an easyrtcid's socket is this node's (None: all are)."""
        self.state = state
        self.tick_ms = tick * 1000
        self.active = tick > 0
        self.here = here
        self.pending_rooms: dict[int, Room] = {}
        """Rooms with changes not yet told, by ``id`` (the dict holds them alive)."""
        self.pending_since = 0

    def mark_changed(self, room: Room, easyrtcid: str, *, api_cleared: bool = False) -> None:
        member = room.members.get(easyrtcid)
        current = member if member is not None and member.seen == room.seq else None
        room.seq += 1
        if current is not None:  # nobody is told of their own change
            current.seen = room.seq
        room.changed.pop(easyrtcid, None)  # keep the order of last changes
        room.changed[easyrtcid] = room.seq
        if api_cleared:
            room.api_cleared.add(easyrtcid)
        if not self.pending_rooms:
            self.pending_since = self.state.now()
        self.pending_rooms[id(room)] = room

    @staticmethod
    def mark_current(member: Membership) -> None:
        """``member`` got its room's whole state (a token or ``roomJoin`` reply)."""
        member.seen = member.room.seq

    def forget(self, room: Room) -> None:
        """``room`` is gone: nothing is pending for it."""
        self.pending_rooms.pop(id(room), None)

    def reset(self, rooms: list[Room]) -> None:
        """Nothing is pending any more (the state is being rebuilt)."""
        self.pending_rooms = {}
        for room in rooms:
            room.changed.clear()
            room.api_cleared.clear()
            room.flushed = room.seq

    def next_flush(self) -> int | None:
        """When (clock ms) the pending changes are due, or None."""
        if not self.pending_rooms:
            return None
        return self.pending_since + int(self.tick_ms)

    def flush(self, rooms: list[Room] | None = None, out: Outcome | None = None) -> Outcome:
        """One push per member behind (all pending rooms, or ``rooms``), holding every change
        of its rooms since its list was last current; the members told the same deltas share
        one ``Fanout``. Pushes put in an ``out`` not carried out yet are marked ``settled``:
        ``settle`` puts nothing before them."""
        out = out if out is not None else Outcome()
        whole = rooms is None
        if rooms is None:
            rooms = list(self.pending_rooms.values())
            self.pending_rooms = {}
        here = self.here
        pushes: dict[str, Json] = {}
        for room in rooms:
            self.pending_rooms.pop(id(room), None)
            if not room.changed:
                continue
            shared: Json | None = None
            for cid, member in room.members.items():
                if member.seen >= room.seq or (here is not None and not here(cid)):
                    continue
                if member.seen == room.flushed and cid not in room.changed:
                    if shared is None:
                        shared = _delta(room, list(room.changed))
                    delta = shared
                else:
                    delta = _delta(room, _changed_since(room, member))
                member.seen = room.seq
                if delta is not None:
                    pushes.setdefault(cid, {})[room.name] = delta
            room.flushed = room.seq
            room.changed.clear()
            room.api_cleared.clear()
        # members told the same deltas (most of a room: the shared one) get one Fanout, its
        # body encoded once for all of them; the others a push each
        same: dict[tuple[tuple[str, int], ...], list[str]] = {}
        for cid, room_deltas in pushes.items():
            kind = tuple((name, id(delta)) for name, delta in room_deltas.items())
            members = same.get(kind)
            if members is None:
                same[kind] = [cid]
            else:
                members.append(cid)
        now = self.state.now()
        sends = out.sends
        settled = not whole
        for cids in same.values():
            first = cids[0]
            body: Json = {"msgType": "roomData", "msgData": {"roomData": pushes[first]}}
            if len(cids) == 1:
                body["easyrtcid"] = first
                body["serverTime"] = now
                sends.append(Push(first, "easyrtcCmd", body, settled=settled))
            else:
                after = {"serverTime": now}
                sends.append(Fanout(cids, "easyrtcCmd", body, settled=settled, after=after))
        return out

    def settle(self, out: Outcome, sender: str | None) -> Outcome:
        """``out`` with each recipient of this node caught up on its rooms' pending changes
        before its first send (a reply goes to ``sender``)."""
        if not self.pending_rooms:
            return out
        here = self.here
        sends: list[Send] = []
        caught_up: set[str] = set()
        for send in out.sends:
            if isinstance(send, Reply):
                to = sender
            elif send.settled:  # a delta made before a change this outcome holds
                sends.append(send)
                continue
            elif isinstance(send, Fanout):  # each recipient's catch-up before it, in their order
                for cid in send.to:
                    if cid not in caught_up and (here is None or here(cid)):
                        caught_up.add(cid)
                        catch_up = self._catch_up(cid)
                        if catch_up is not None:
                            sends.append(catch_up)
                sends.append(send)
                continue
            else:
                to = send.to
            if to is not None and to not in caught_up and (here is None or here(to)):
                caught_up.add(to)
                catch_up = self._catch_up(to)
                if catch_up is not None:
                    sends.append(catch_up)
            sends.append(send)
        out.sends = sends
        return out

    def _catch_up(self, easyrtcid: str) -> Push | None:
        peer = self.state.peers.get(easyrtcid)
        conn = peer.connection if peer is not None else None
        if conn is None:
            return None
        rooms: Json = {}
        for name, member in conn.rooms.items():
            room = member.room
            if member.seen < room.seq and room.changed:
                delta = _delta(room, _changed_since(room, member))
                member.seen = room.seq
                if delta is not None:
                    rooms[name] = delta
        if not rooms:
            return None
        body = {
            "msgType": "roomData",
            "msgData": {"roomData": rooms},
            "easyrtcid": easyrtcid,
            "serverTime": self.state.now(),
        }
        return Push(easyrtcid, "easyrtcCmd", body)


def _changed_since(room: Room, member: Membership) -> list[str]:
    me, seen = member.connection.easyrtcid, member.seen
    return [cid for cid, seq in room.changed.items() if seq > seen and cid != me]


def _delta(room: Room, changed: list[str]) -> Json | None:
    """One room's delta saying the current state of the ``changed`` members."""
    update: Json = {}
    remove: Json = {}
    entries = room.entries
    for cid in changed:
        entry = entries.get(cid)
        if entry is None:
            remove[cid] = {"easyrtcid": cid}
        else:
            if cid in room.api_cleared and "apiField" not in entry:
                entry = {**entry, "apiField": {}}  # so peers drop the old value
            update[cid] = entry
    if not update and not remove:
        return None
    delta: Json = {}
    if update:
        delta["updateClient"] = update
    if remove:
        delta["removeClient"] = remove
    return {"roomName": room.name, "roomStatus": "update", "clientListDelta": delta}
