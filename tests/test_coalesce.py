"""Coalesced room updates: a socket sees the same member lists as without coalescing."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.coalesce import CoalescingLink, RoomUpdateBatcher
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.client import TIMEOUT, Client
from support.ours import serving


class Recorder:
    """A transport link that records what it is asked to send."""

    remote_address = "127.0.0.1"

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.closed = False
        self.got_one = asyncio.Event()

    async def send(self, event: str, data: Any) -> None:
        self.sent.append((event, data))
        self.got_one.set()

    async def close(self) -> None:
        self.closed = True


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


def delta(room: str, *, update: dict[str, Any] | None = None, remove: list[str] = ()) -> Any:
    change: dict[str, Any] = {}
    if update:
        change["updateClient"] = update
    if remove:
        change["removeClient"] = {cid: {"easyrtcid": cid} for cid in remove}
    rooms = {room: {"roomName": room, "roomStatus": "update", "clientListDelta": change}}
    return {
        "msgType": "roomData",
        "msgData": {"roomData": rooms},
        "easyrtcid": "me",
        "serverTime": 1,
    }


def entry(cid: str, join_time: int, presence: str, api: Any = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "easyrtcid": cid,
        "roomJoinTime": join_time,
        "presence": {"show": presence, "status": None},
    }
    if api is not None:
        value["apiField"] = api
    return value


_changes = st.lists(
    st.tuples(
        st.sampled_from(["update", "remove", "other", "flush"]),
        st.sampled_from(["r1", "r2"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 3),
        st.sampled_from(["chat", "away", "dnd"]),
        st.one_of(st.none(), st.just({"mediaIds": {"fieldValue": 1}}), st.just({})),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_changes)
def test_every_socket_ends_with_the_lists_it_would_have_had(changes: list[Any]) -> None:
    async def run() -> None:
        direct: dict[str, dict[str, Any]] = {}
        recorder = Recorder()
        link = CoalescingLink(recorder, RoomUpdateBatcher(60.0))
        for kind, room, cid, join_time, presence, api in changes:
            if kind == "update":
                body = delta(room, update={cid: entry(cid, join_time, presence, api)})
            elif kind == "remove":
                body = delta(room, remove=[cid])
            elif kind == "flush":
                await link.flush()
                continue
            else:
                await link.send("easyrtcMsg", {"msgType": "chat"})
                continue
            apply_like_easyrtc_js(direct, body)
            await link.send("easyrtcCmd", body)
        await link.flush()
        coalesced: dict[str, dict[str, Any]] = {}
        for event, body in recorder.sent:
            if event == "easyrtcCmd":
                apply_like_easyrtc_js(coalesced, body)
        assert coalesced == direct
        # nothing but membership deltas is merged, and other messages keep their order
        others = [body for event, body in recorder.sent if event != "easyrtcCmd"]
        assert len(others) == sum(1 for c in changes if c[0] == "other")

    asyncio.run(run())


async def test_a_burst_of_deltas_goes_out_as_one_push_at_the_end_of_the_tick() -> None:
    recorder = Recorder()
    link = CoalescingLink(recorder, RoomUpdateBatcher(0.005))
    for i in range(50):
        await link.send("easyrtcCmd", delta("r1", update={f"c{i}": entry(f"c{i}", i, "chat")}))
    assert recorder.sent == []
    await asyncio.wait_for(recorder.got_one.wait(), TIMEOUT)  # the batcher's timer sends it
    [(event, body)] = recorder.sent
    assert event == "easyrtcCmd"
    assert len(body["msgData"]["roomData"]["r1"]["clientListDelta"]["updateClient"]) == 50
    assert "removeClient" not in body["msgData"]["roomData"]["r1"]["clientListDelta"]


async def test_other_messages_and_close_send_held_deltas_first() -> None:
    recorder = Recorder()
    link = CoalescingLink(recorder, RoomUpdateBatcher(60.0))
    await link.send("easyrtcCmd", delta("r1", update={"a": entry("a", 1, "chat")}))
    await link.send("easyrtcMsg", {"msgType": "hello"})
    await link.send("easyrtcCmd", delta("r1", remove=["a"]))
    await link.close()
    assert [event for event, _ in recorder.sent] == ["easyrtcCmd", "easyrtcMsg", "easyrtcCmd"]
    assert recorder.closed


async def test_a_member_removed_and_back_is_not_merged_into_one_delta() -> None:
    recorder = Recorder()
    link = CoalescingLink(recorder, RoomUpdateBatcher(60.0))
    await link.send("easyrtcCmd", delta("r1", remove=["a"]))
    await link.send("easyrtcCmd", delta("r1", update={"a": entry("a", 9, "chat")}))
    await link.flush()
    assert len(recorder.sent) == 2


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
