"""Coalesced room updates end to end: a join storm over real sockets converges with far fewer
pushes (the core's property test, ``tests/core/test_room_updates.py``, checks every view)."""

from __future__ import annotations

import asyncio
from typing import Any

from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.client import TIMEOUT, Client
from support.ours import serving


def apply_like_easyrtc_js(lists: dict[str, dict[str, dict[str, Any]]], body: Any) -> None:
    """What easyrtc.js does with a roomData update (processRoomData)."""
    for name, room in body["msgData"]["roomData"].items():
        delta = room["clientListDelta"]
        members = lists.setdefault(name, {})
        for cid, entry in (delta.get("updateClient") or {}).items():
            if cid not in members:
                members[cid] = dict(entry)
            for key in ("apiField", "presence"):
                if key in entry:
                    members[cid][key] = entry[key]
        for cid in delta.get("removeClient") or {}:
            members.pop(cid, None)


async def _storm(tick: float, count: int) -> list[tuple[int, bool]]:
    """``count`` clients log in to one room at once; each one's pushes and whether it converged."""
    server = EasyRtcServer(Options(room_update_tick=tick, room_max_connection=0))
    async with serving(server) as url:
        clients = [Client() for _ in range(count)]
        await asyncio.gather(*(c.connect(url) for c in clients))
        tokens = await asyncio.gather(*(c.login() for c in clients))
        everyone = {c.easyrtcid for c in clients}
        results = []
        for client, token in zip(clients, tokens, strict=True):
            lists = {"default": dict(token["msgData"]["roomData"]["default"]["clientList"])}
            pushes = 0
            while set(lists["default"]) != everyone:
                body = await asyncio.wait_for(client.cmds.get(), TIMEOUT)
                pushes += 1
                apply_like_easyrtc_js(lists, body)
            results.append((pushes, set(lists["default"]) == everyone))
        await asyncio.gather(*(c.sio.disconnect() for c in clients))
    return results


async def test_join_storm_converges_with_fewer_pushes() -> None:
    results = await _storm(0.02, 30)
    assert all(converged for _, converged in results)
    # without coalescing the first of 30 joiners gets 29 pushes; with it, far fewer
    assert sum(pushes for pushes, _ in results) < 29 * 30 / 2 / 2
