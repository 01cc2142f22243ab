"""Coalesced room updates: the membership deltas one socket receives within a short tick go out
as one ``roomData`` push.

In a join storm every join is announced to every member, so N joiners cost N² pushes, each
encoded, framed and parsed by a browser. A member that receives several membership deltas in a
row needs only their sum. ``CoalescingLink`` wraps a transport ``Link``: a ``roomData`` push that
carries only ``clientListDelta`` changes is held and merged with the next ones for up to
``room_update_tick`` seconds; anything else for that socket (another push, a reply, a close)
sends what is held first.

Merging is exact, given how ``easyrtc.js`` applies a delta (``updateClient`` before
``removeClient``; a known member keeps its entry and takes only ``presence`` and ``apiField``): a
socket sees the same sequence of states as without coalescing, with intermediate ones skipped.
Where one delta cannot express two (a member removed, then added again), what is held is sent
first. Knows nothing of the core: it reads the wire shapes only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .transport import Link

Json = dict[str, Any]

_UPDATABLE = ("apiField", "presence")
"""The keys easyrtc.js takes from an update of a member it already lists."""


class RoomUpdateBatcher:
    """One timer for every socket with held deltas; ``wrap`` puts a link under it."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._due: dict[int, CoalescingLink] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    def wrap(self, link: Link) -> Link:
        """``link`` itself when coalescing is off (tick 0), else a coalescing wrapper."""
        return CoalescingLink(link, self) if self.tick > 0 else link

    def _hold(self, link: CoalescingLink) -> None:
        self._due[id(link)] = link
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self.tick, self._tick)

    def _release(self, link: CoalescingLink) -> None:
        self._due.pop(id(link), None)

    def _tick(self) -> None:
        self._handle = None
        due, self._due = self._due, {}
        if due:
            task = asyncio.ensure_future(_flush_all(list(due.values())))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)


async def _flush_all(links: list[CoalescingLink]) -> None:
    for link in links:
        await link.flush()


class CoalescingLink:
    """A ``Link`` that merges consecutive membership deltas (see the module docstring)."""

    __slots__ = ("_batcher", "_held", "_link")

    def __init__(self, link: Link, batcher: RoomUpdateBatcher) -> None:
        self._link = link
        self._batcher = batcher
        self._held: Json | None = None

    @property
    def remote_address(self) -> str | None:
        return self._link.remote_address

    @property
    def inner(self) -> Link:
        """The transport's link underneath."""
        return self._link

    async def send(self, event: str, data: Any) -> None:
        if event == "easyrtcCmd" and _membership_rooms(data) is not None:
            held = self._held
            if held is None:
                self._held = _copy_delta(data)
                self._batcher._hold(self)
                return
            if _merge(held, data):
                return
            await self.flush()
            self._held = _copy_delta(data)
            self._batcher._hold(self)
            return
        if self._held is not None:
            await self.flush()
        await self._link.send(event, data)

    async def flush(self) -> None:
        """Send what is held now (before a reply, a close, or at the end of the tick)."""
        held = self._held
        if held is not None:
            self._held = None
            self._batcher._release(self)
            for room in held["msgData"]["roomData"].values():
                delta = room["clientListDelta"]
                for key in ("updateClient", "removeClient"):
                    if not delta[key]:
                        del delta[key]
            await self._link.send("easyrtcCmd", held)

    async def close(self) -> None:
        await self.flush()
        await self._link.close()


def _membership_rooms(data: Any) -> dict[str, Json] | None:
    """The rooms of a ``roomData`` push that only changes member lists, else None."""
    if type(data) is not dict or data.get("msgType") != "roomData":
        return None
    msg_data = data.get("msgData")
    rooms = msg_data.get("roomData") if type(msg_data) is dict else None
    if type(rooms) is not dict or not rooms:
        return None
    for room in rooms.values():
        if (
            type(room) is not dict
            or room.get("roomStatus") != "update"
            or "clientListDelta" not in room
            or "field" in room
        ):
            return None
    return rooms


def _copy_delta(data: Json) -> Json:
    """A private copy of a push (the core shares one delta among all its recipients)."""
    rooms: Json = {}
    for name, room in data["msgData"]["roomData"].items():
        delta = room["clientListDelta"]
        rooms[name] = {
            "roomName": room.get("roomName", name),
            "roomStatus": "update",
            "clientListDelta": {
                "updateClient": dict(delta.get("updateClient") or {}),
                "removeClient": dict(delta.get("removeClient") or {}),
            },
        }
    copy = dict(data)
    copy["msgData"] = {"roomData": rooms}
    return copy


def _merge(held: Json, data: Json) -> bool:
    """Fold ``data`` into ``held``; False (nothing changed) if one delta cannot say both."""
    held_rooms: Json = held["msgData"]["roomData"]
    rooms: Json = data["msgData"]["roomData"]
    for name, room in rooms.items():
        target = held_rooms.get(name)
        if target is None:
            continue
        removed = target["clientListDelta"]["removeClient"]
        if any(cid in removed for cid in room["clientListDelta"].get("updateClient") or ()):
            return False  # removed, then back: the client must see the removal first
    for name, room in rooms.items():
        delta = room["clientListDelta"]
        target = held_rooms.get(name)
        if target is None:
            held_rooms[name] = _copy_delta({"msgData": {"roomData": {name: room}}})["msgData"][
                "roomData"
            ][name]
            continue
        updated = target["clientListDelta"]["updateClient"]
        removed = target["clientListDelta"]["removeClient"]
        for cid, entry in (delta.get("updateClient") or {}).items():
            before = updated.get(cid)
            if before is None:
                updated[cid] = entry
            else:  # as the client applies a second update: only these two keys change
                merged = dict(before)
                for key in _UPDATABLE:
                    if key in entry:
                        merged[key] = entry[key]
                updated[cid] = merged
        for cid, entry in (delta.get("removeClient") or {}).items():
            updated.pop(cid, None)
            removed[cid] = entry
    held["serverTime"] = data.get("serverTime", held.get("serverTime"))
    return True
