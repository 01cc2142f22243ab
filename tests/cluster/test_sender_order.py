"""A sender's relays and state changes reach a client on another node in the order sent.

Alice (node 1) and Bob (node 2) share a room. Alice sends Bob a burst of messages, the last one
"bye", and leaves the room, back to back, as easyrtc.js may: on one server Bob gets every
message, then her ``removeClient``. Then she joins again and, once joined, sends "hello": Bob is
told she joined before he gets it. In a cluster the messages travel over Redis pub/sub and the
room changes through the log (or over a direct link between the nodes, ``cluster_relay``), two
paths that used to race (on main ``901d301``, under load:
``removeClient`` before "bye" in 8 to 23 of 150 tries, "hello" before the join in 0 to 14);
the nodes now deliver both in the order Alice's node produced them (``cluster/ordering.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ops.opskit import scrape
from support.client import Client
from support.nodes import running_nodes
from support.redisserver import running_redis

TRIES = 150
CHATTER = 50
"""Messages before "bye": they keep the sender's inbox publisher busy while the log goes on."""
WAIT = 10.0
"""Seconds one step of a try may take (a bound on a hang, not a speed test)."""
ROOM = "order"
LATES = "easyrtc_cluster_order_timeouts_total"
NODE_ENV = {"EASYRTC_MESSAGE_RATE": "0", "EASYRTC_ROOM_UPDATE_TICK": "0"}
"""No rate limit (a try sends 53 events as fast as they go); member-list changes pushed at once,
as the reference does, not 5 ms later (which hides most of the race)."""


class Recorder:
    """Bob's side: every ``easyrtcMsg`` and ``easyrtcCmd`` push in the order they arrived."""

    def __init__(self, client: Client) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        client.sio.on("easyrtcMsg", lambda body: self._add("msg", body))
        client.sio.on("easyrtcCmd", lambda body: self._add("cmd", body))

    def _add(self, kind: str, body: dict[str, Any]) -> None:
        self.events.append((kind, body))
        self.changed.set()

    async def until(self, found: Any) -> int:
        """The index of the first event ``found`` accepts (waits for it)."""
        async with asyncio.timeout(WAIT):
            while True:
                for i, (kind, body) in enumerate(self.events):
                    if found(kind, body):
                        return i
                self.changed.clear()
                await self.changed.wait()


def message(n: int) -> Any:
    return lambda kind, body: kind == "msg" and body.get("msgData", {}).get("n") == n


def delta(change: str, easyrtcid: str) -> Any:
    """A ``roomData`` push telling that ``easyrtcid`` was removed from (or added to) the room."""

    def found(kind: str, body: dict[str, Any]) -> bool:
        if kind != "cmd" or body.get("msgType") != "roomData":
            return False
        room = body["msgData"]["roomData"].get(ROOM, {})
        if change == "removeClient":
            return easyrtcid in room.get("clientListDelta", {}).get("removeClient", {})
        added = {
            **room.get("clientListDelta", {}).get("updateClient", {}),
            **room.get("clientList", {}),
        }
        return easyrtcid in added

    return found


@pytest.mark.parametrize("relay", ["redis", "direct"])
async def test_a_message_then_a_room_change_arrive_in_the_order_sent(relay: str) -> None:
    """Over either path of a relay (``cluster_relay``): Redis pub/sub, or a direct link."""
    env = {**NODE_ENV, "EASYRTC_CLUSTER_RELAY": relay}
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 2, cluster="order", env=env) as (first, second),
    ):
        alice, bob = Client(), Client()
        bob_saw = Recorder(bob)
        await alice.connect(first.url)
        await bob.connect(second.url)
        try:
            await bob.login(applicationName="order", roomJoin={ROOM: {"roomName": ROOM}})
            await alice.login(applicationName="order", roomJoin={ROOM: {"roomName": ROOM}})
            await bob_saw.until(delta("updateClient", alice.easyrtcid))
            join = {"roomJoin": {ROOM: {"roomName": ROOM}}}
            leave = {"roomLeave": {ROOM: {"roomName": ROOM}}}
            late_bye: list[int] = []
            early_hello: list[int] = []
            for n in range(TRIES):
                bob_saw.events.clear()
                for k in range(CHATTER):
                    chat = {
                        "msgType": "chat",
                        "targetEasyrtcid": bob.easyrtcid,
                        "msgData": {"k": k},
                    }
                    await alice.sio.emit("easyrtcMsg", chat, callback=lambda *_: None)
                bye = {"msgType": "bye", "targetEasyrtcid": bob.easyrtcid, "msgData": {"n": n}}
                await alice.sio.emit("easyrtcMsg", bye, callback=lambda *_: None)
                reply = await alice.cmd("roomLeave", msgData=leave)
                assert reply["msgType"] == "roomData", reply
                got_bye = await bob_saw.until(message(n))
                removed = await bob_saw.until(delta("removeClient", alice.easyrtcid))
                if removed < got_bye:
                    late_bye.append(n)
                bob_saw.events.clear()
                assert (await alice.cmd("roomJoin", msgData=join))["msgType"] == "roomData"
                hello = {
                    "msgType": "hello",
                    "targetEasyrtcid": bob.easyrtcid,
                    "msgData": {"n": -n - 1},
                }
                assert (await alice.call("easyrtcMsg", hello))["msgType"] == "ack"
                got_hello = await bob_saw.until(message(-n - 1))
                added = await bob_saw.until(delta("updateClient", alice.easyrtcid))
                if got_hello < added:
                    early_hello.append(n)
            _, samples = await scrape(second.url + "/metrics")
            lates = {  # waits that ran out on Bob's node (then the order may not hold)
                waiting: samples.get((LATES, frozenset({("waiting", waiting)})))
                for waiting in ("relay", "entry")
            }
        finally:
            await alice.sio.disconnect()
            await bob.sio.disconnect()
    assert (late_bye, early_hello) == ([], []), (
        f"the removeClient came before the message in {len(late_bye)} tries, "
        f"the message before the join in {len(early_hello)}; waits that ran out: {lates}"
    )
