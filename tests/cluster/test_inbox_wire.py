"""The inbox's messages as another node reads them: each relay with its stamp, the sender's
header skipped by nodes of before the ordering, a message of such a node delivered as it comes.

A stand-in for Redis pub/sub carries what one ``Inbox`` publishes to another's subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from easyrtc_server.cluster.channels import PlainChannels
from easyrtc_server.cluster.inbox import Inbox
from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.links import Batch, RedisRelays
from easyrtc_server.cluster.ordering import DROPPED, Stamps

KEYS = ClusterKeys("wire")


class PubSub:
    """One subscription: what is published to its channel, in order."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def subscribe(self, channel: str) -> None:
        self.bus.subscribers[channel] = self

    async def get_message(self, **_: Any) -> dict[str, Any]:
        return await self.queue.get()

    async def aclose(self) -> None:
        pass


class Bus:
    """Redis as far as inboxes use it: ``publish`` (one at a time) and ``pubsub``."""

    def __init__(self) -> None:
        self.subscribers: dict[str, PubSub] = {}
        self.published: list[bytes] = []

    def pubsub(self, **_: Any) -> PubSub:
        return PubSub(self)

    async def publish(self, channel: str, data: bytes) -> int:
        self.published.append(data)
        sub = self.subscribers.get(channel)
        if sub is None:
            return 0
        sub.queue.put_nowait({"type": "message", "data": data})
        return 1


Got = tuple[str | None, int, list[Any], list[Any]]


@asynccontextmanager
async def two_inboxes() -> AsyncIterator[tuple[Inbox, Bus, asyncio.Queue[Got]]]:
    """Node x's inbox (its stamps), the bus, and what node b's inbox hands its node."""
    bus = Bus()
    got: asyncio.Queue[Got] = asyncio.Queue()

    async def deliver(sender: str | None, first: int, afters: list[Any], items: list[Any]) -> None:
        got.put_nowait((sender, first, afters, items))

    async def nothing(*_: Any) -> None:
        raise AssertionError("node x received something")

    channels = PlainChannels(bus)  # type: ignore[arg-type]
    x = Inbox(channels, KEYS, "x", nothing, stamps=Stamps())
    b = Inbox(channels, KEYS, "b", deliver)
    await b.start()
    await x.start()
    try:
        yield x, bus, got
    finally:
        await x.stop()
        await b.stop()


async def test_relays_carry_the_sender_its_first_index_and_the_entry_before_each() -> None:
    async with two_inboxes() as (x, _bus, got):
        x.send("b", "bob", "easyrtcMsg", {"n": 1})
        x.stamps.entry()  # entry 1 appended
        x.send("b", "bob", "easyrtcMsg", {"n": 2})
        x.send("b", "bob", None, None)  # close bob's socket
        assert await asyncio.wait_for(got.get(), 5) == (
            "x",
            0,
            [0, 1, 1],
            [["bob", "easyrtcMsg", {"n": 1}], ["bob", "easyrtcMsg", {"n": 2}], ["bob", None, None]],
        )
        x.send("b", "bob", "easyrtcMsg", {"n": 3})
        assert (await asyncio.wait_for(got.get(), 5))[:3] == ("x", 3, [1])
        assert x.stamps.entry() == (2, {"b": 4})


async def test_a_relay_that_cannot_be_encoded_is_dropped_and_still_counted() -> None:
    async with two_inboxes() as (x, _bus, got):
        x.send("b", "bob", "easyrtcMsg", {"n": 1})
        x.send("b", "bob", "easyrtcMsg", {"binary": b"\x00"})
        x.send("b", "bob", "easyrtcMsg", {"n": 3})
        sender, first, afters, items = await asyncio.wait_for(got.get(), 5)
        assert (sender, first, afters) == ("x", 0, [0, DROPPED, 0])
        assert items == [["bob", "easyrtcMsg", {"n": 1}], ["bob", "easyrtcMsg", {"n": 3}]]
        assert x.health.inbox_drops == 1


async def test_a_node_of_before_reads_the_relays_and_skips_the_header() -> None:
    async with two_inboxes() as (x, bus, got):
        x.send("b", "bob", "easyrtcMsg", {"n": 1})
        await asyncio.wait_for(got.get(), 5)
        (data,) = bus.published
        old_items = orjson.loads(data)
        header, relay = old_items  # what a node of before unpacks: [easyrtcid, event, body]
        to, _event, _body = header
        assert to == ""  # a relay to nobody: no easyrtcid is empty
        assert relay == ["bob", "easyrtcMsg", {"n": 1}]


async def test_a_message_of_a_node_of_before_is_delivered_as_it_comes() -> None:
    async with two_inboxes() as (_x, bus, got):
        old = [["bob", "easyrtcMsg", {"n": 1}]]
        await bus.publish(KEYS.inbox("b"), orjson.dumps(old))
        assert await asyncio.wait_for(got.get(), 5) == (None, 0, [], old)


class WatchedStamps(Stamps):
    """Stamps that tell when the inbox finds relays were not heard."""

    def __init__(self) -> None:
        super().__init__()
        self.unheard = asyncio.Event()

    def dropped(self, node: str, upto: int) -> None:
        super().dropped(node, upto)
        self.unheard.set()


async def test_relays_nobody_heard_are_not_waited_for() -> None:
    async with two_inboxes() as (x, _bus, _got):
        stamps = x.stamps = WatchedStamps()
        x.send("gone", "carol", "easyrtcMsg", {"n": 1})  # no node listens there
        await asyncio.wait_for(stamps.unheard.wait(), 5)
        assert stamps.entry() == (1, {})
        x.send("gone", "carol", "easyrtcMsg", {"n": 2})
        assert stamps.entry() == (2, {"gone": 2})  # a relay not known lost yet: waited for


class MovingChannels:
    """Sharded channels as a publisher sees them while subscriptions move: a message to a
    channel nobody listens on is heard by 0 (``unheard_wait``: how long it is tried again)."""

    unheard_wait = 0.5

    def __init__(self) -> None:
        self.listening: set[str] = set()
        self.heard: list[bytes] = []
        self.changed = asyncio.Event()

    async def publish(self, messages: list[tuple[str, bytes]]) -> list[int]:
        counts = []
        for channel, data in messages:
            counts.append(int(channel in self.listening))
            if channel in self.listening:
                self.heard.append(data)
                self.changed.set()
        return counts

    async def until(self, done: Any) -> None:
        async with asyncio.timeout(5):
            while not done():
                self.changed.clear()
                await self.changed.wait()


async def test_a_batch_nobody_heard_is_published_again_in_order_then_dropped() -> None:
    channels = MovingChannels()
    dropped: list[tuple[str, int]] = []

    def drop(batch: Batch, _why: str) -> None:
        dropped.append((batch.node, batch.upto))
        channels.changed.set()

    relays = RedisRelays(channels, KEYS, drop)  # type: ignore[arg-type]
    try:
        channels.listening.add(KEYS.inbox("d"))
        await relays.send([Batch("b", b"b1", 1, 1)])  # b's subscription is moving: kept
        await relays.send([Batch("b", b"b2", 2, 1), Batch("c", b"c1", 1, 1)])
        channels.listening.add(KEYS.inbox("c"))
        await relays.send([Batch("c", b"c2", 2, 1), Batch("d", b"d1", 1, 1)])
        assert channels.heard == [b"d1"]  # d's at once; c2 waits behind c1
        channels.listening.add(KEYS.inbox("b"))  # b subscribed where its slot went
        await channels.until(lambda: len(channels.heard) == 5)
        for node in "bc":  # each node's in their order
            assert [d for d in channels.heard if d.startswith(node.encode())] == [
                f"{node}1".encode(),
                f"{node}2".encode(),
            ]
        assert dropped == []
        await relays.send([Batch("gone", b"x", 1, 1)])  # a node gone for good
        await channels.until(lambda: dropped == [("gone", 1)])
        assert b"x" not in channels.heard
    finally:
        await relays.stop()
