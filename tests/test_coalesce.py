"""Coalesced room updates end to end: a join storm over real sockets converges with far fewer
pushes, on one process and on a 3-node cluster (the core's property test,
``tests/core/test_room_updates.py``, checks every view)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.client import TIMEOUT, Client
from support.nodes import running_nodes
from support.ours import serving
from support.redisserver import running_redis


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


def _view(token: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        name: {cid: dict(entry) for cid, entry in room["clientList"].items()}
        for name, room in token["msgData"]["roomData"].items()
    }


def _as_seen(lists: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Who a client sees in each room, with their presence status."""
    return {
        name: {cid: (entry.get("presence") or {}).get("status") for cid, entry in members.items()}
        for name, members in lists.items()
    }


@pytest.mark.parametrize("seed", [1, 2])
async def test_coalesced_updates_converge_on_a_three_node_cluster(seed: int) -> None:
    """Clients spread over three nodes log in to shared rooms at once, some change presence,
    some leave: every client's lists end as the truth, each node telling only its own clients
    (far fewer pushes than one per change)."""
    rng = random.Random(seed)
    count = 24
    env = {"EASYRTC_ROOM_UPDATE_TICK": "0.02", "EASYRTC_ROOM_MAX_CONNECTION": "0"}
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 3, cluster=f"coalesce{seed}", env=env) as nodes,
    ):
        clients = [Client() for _ in range(count)]
        await asyncio.gather(*(c.connect(nodes[i % 3].url) for i, c in enumerate(clients)))
        rooms_of = [["a", "b"] if rng.random() < 0.4 else ["a"] for _ in clients]
        tokens = await asyncio.gather(
            *(
                c.login(roomJoin={r: {"roomName": r} for r in rooms})
                for c, rooms in zip(clients, rooms_of, strict=True)
            )
        )
        lists = [_view(token) for token in tokens]
        status: dict[str, str | None] = {c.easyrtcid: None for c in clients}
        leaving = set(rng.sample(range(count), count // 6))
        changing = set(rng.sample(range(count), count // 3)) - leaving

        async def act(i: int) -> None:
            client = clients[i]
            if i in leaving:
                await client.sio.disconnect()
            elif i in changing:
                text = f"s{i}"
                presence = {"show": "away", "status": text}
                reply = await client.cmd("setPresence", msgData={"setPresence": presence})
                apply_like_easyrtc_js(lists[i], reply)  # its own change: told in the reply
                status[client.easyrtcid] = text

        await asyncio.gather(*(act(i) for i in range(count)))
        staying = [i for i in range(count) if i not in leaving]
        pushes = 0
        for i in staying:
            expected = {
                room: {
                    clients[j].easyrtcid: status[clients[j].easyrtcid]
                    for j in staying
                    if room in rooms_of[j]
                }
                for room in rooms_of[i]
            }
            while _as_seen(lists[i]) != expected:
                body = await asyncio.wait_for(clients[i].cmds.get(), TIMEOUT)
                pushes += 1
                apply_like_easyrtc_js(lists[i], body)
        await asyncio.gather(*(clients[i].sio.disconnect() for i in staying))
    # one push per change would be at least a login's worth of pushes to each member of "a"
    assert pushes < (count - 1) * count / 2 / 2
