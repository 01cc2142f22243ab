"""The trace's cluster barrier (``support.trace``) against a server that, as a cluster does, acks
a relay or a state change before its push reaches a client on another node: the barrier must
wait for the push, so it lands where it does on one server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import socketio
from aiohttp import web

from support.ports import free_port
from support.trace import READ_COMMANDS, Trace, TraceClient, payload

LAG = 0.2
"""Seconds the fake server takes to bring a push to another client after acking its cause: far
longer than a barrier round trip on an idle machine, so without the cluster barrier the push
lands after its target's next reply."""


@asynccontextmanager
async def lagging_server() -> AsyncIterator[str]:
    """A minimal EasyRTC server, its URL. It answers at once but for a client's own state change,
    answered once everything sent to that client before has arrived (as a node applies the log in
    order); an ``easyrtcMsg`` reaches its target, and a ``setPresence`` every other client,
    ``LAG`` s after the sender's ack, in the order sent."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    new_ids = (f"{n:016d}" for n in itertools.count(1))
    sids: dict[str, str] = {}
    easyrtcids: dict[str, str] = {}
    in_flight: dict[str, list[asyncio.Future[None]]] = {}
    loop = asyncio.get_running_loop()

    def push_later(to: str, event: str, body: dict[str, Any]) -> None:
        arrived = loop.create_future()
        in_flight.setdefault(to, []).append(arrived)

        async def push() -> None:
            await sio.emit(event, body, to=to)
            arrived.set_result(None)

        loop.call_later(LAG, lambda: loop.create_task(push()))

    @sio.on("easyrtcAuth")
    async def auth(sid: str, data: Any) -> dict[str, Any]:
        easyrtcid = next(new_ids)
        sids[easyrtcid], easyrtcids[sid] = sid, easyrtcid
        application = {"applicationName": data["msgData"]["applicationName"]}
        return {"msgType": "token", "msgData": {"easyrtcid": easyrtcid, "application": application}}

    @sio.on("easyrtcCmd")
    async def cmd(sid: str, data: Any) -> dict[str, Any]:
        if data["msgType"] in READ_COMMANDS:
            return {"msgType": "ack"}
        await asyncio.gather(*in_flight.pop(sid, []))
        if data["msgType"] == "setPresence":
            delta = {"msgType": "roomData", "msgData": {"presence": data["msgData"]}}
            for other in easyrtcids:
                if other != sid:
                    push_later(other, "easyrtcCmd", delta)
        return {"msgType": "roomData", "msgData": {}}

    @sio.on("easyrtcMsg")
    async def msg(sid: str, data: Any) -> dict[str, Any]:
        push_later(sids[data["targetEasyrtcid"]], "easyrtcMsg", {**data, "from": easyrtcids[sid]})
        return {"msgType": "ack"}

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def headers(trace: Trace, client: str) -> list[str]:
    """``client``'s events, without their data."""
    return [
        line for line in trace.lines() if line.startswith(f"{client} | ") and "|    " not in line
    ]


async def two_nodes(url: str) -> tuple[Trace, TraceClient, TraceClient]:
    """alice and bob, logged in, on what the barrier takes for two nodes (two URLs)."""
    trace = Trace("lag", cluster_barrier=True)
    alice, bob = trace.client("alice"), trace.client("bob")
    await alice.connect(url + "/?node=a")
    await bob.connect(url + "/?node=b")
    await alice.auth()
    await bob.auth()
    return trace, alice, bob


BOB_SEES_IT_IN_PLACE = [
    "bob | ack easyrtcAuth/authenticate",
    "bob | sync",
    "bob | push {}",  # before the barrier's sync marker, as on one server
    "bob | sync",
    "bob | ack easyrtcCmd/getRoomList",
    "bob | sync",
    "bob | sync",
]


async def test_the_barrier_waits_for_a_relay_acked_before_it_arrived() -> None:
    async with lagging_server() as url:
        trace, alice, bob = await two_nodes(url)
        await alice.msg(payload("chat", "hi", targetEasyrtcid=bob.id))
        await bob.cmd(payload("getRoomList"))
        await trace.close()
    assert headers(trace, "bob") == [line.format("easyrtcMsg") for line in BOB_SEES_IT_IN_PLACE]


async def test_the_barrier_waits_for_a_state_change_acked_before_its_push_arrived() -> None:
    async with lagging_server() as url:
        trace, alice, bob = await two_nodes(url)
        await alice.cmd(payload("setPresence", {"setPresence": {"show": "away"}}))
        await bob.cmd(payload("getRoomList"))
        await trace.close()
    assert headers(trace, "bob") == [line.format("easyrtcCmd") for line in BOB_SEES_IT_IN_PLACE]
