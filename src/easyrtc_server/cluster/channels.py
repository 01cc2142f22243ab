"""How inbox messages are published and subscribed: plain pub/sub, or sharded on a Redis Cluster.

On one Redis (or Sentinel's master) an inbox is a ``PUBLISH``/``SUBSCRIBE`` channel. On a Redis
Cluster plain pub/sub is broadcast to every node of the cluster (each message crosses the bus
to all of them), so inboxes use sharded pub/sub instead: ``SPUBLISH``/``SSUBSCRIBE`` on a channel
that lives in one slot, served by the master that owns it; each node's channel has a hash tag
of its own (``keys.ClusterKeys.inbox``), so the relays spread over the masters.

A node's subscription follows its channel's slot: on its own connection to the master that
owns the slot, it re-subscribes where the slot went when that master says the slot left it
(``sunsubscribe``, after a slot migration or a failover that demoted it), when it answers
``MOVED``, when the cluster's slot map, read after ``CHECK_EVERY`` seconds without a message,
names another master (a master demoted in a planned failover does not always say so), or
(through the inbox's retry) when the connection breaks. Messages published while
a channel has no subscriber are not stored by Redis: the publisher hears 0 listeners
(``links.RedisRelays``).

Knows redis-py and channel names, nothing of what the messages hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MovedError, RedisClusterException, RedisError

log = logging.getLogger("easyrtc_server.cluster")

UNHEARD_WAIT: Final = 5.0
"""Seconds a sharded message nobody heard is published again: a subscription following its
slot to another master is back within a second of the move (retries 0.5 s apart). A failover
takes about ``cluster-node-timeout`` plus an election: longer than this, and what was sent to
the dead master's inboxes meanwhile is lost, as with Sentinel."""

CLIENT_ERRORS: Final = (RedisError, RedisClusterException, OSError)
"""What a cluster command fails with while a master is away."""
CHECK_EVERY: Final = 1.0
"""Seconds without a message after which a subscription looks where its slot is (reads the
cluster's slot map): one that hears messages is where they are published."""
REFRESH_EVERY: Final = 0.5
"""Seconds at least between two readings of the slot map by a publisher nobody heard."""
MOVE_WAIT: Final = 2.0
"""Seconds at most a subscription told its slot left a master waits for the slot map to name
another one (read every ``REREAD_EVERY`` seconds), within ``UNHEARD_WAIT``."""
REREAD_EVERY: Final = 0.1
DRAIN_WAIT: Final = 1.0
"""Seconds at most a subscription following its slot reads the master it leaves for what that
master still delivers, until it confirms the ``SUNSUBSCRIBE`` (a master away says nothing)."""

Message = tuple[str, bytes]
"""A channel and what to publish on it."""


class Subscription(Protocol):
    """One node's subscription to its inbox channel."""

    async def subscribe(self, channel: str) -> None:
        """Subscribe (again, after a failure) to ``channel``."""
        ...

    async def next_message(self) -> bytes | None:
        """Wait for the next message on the channel: its data, or None for anything else
        (a confirmation, a move followed). Raises what redis-py raises when Redis is away."""
        ...

    async def aclose(self) -> None: ...


async def listen(
    subscription: Subscription,
    channel: str,
    take: Callable[[bytes], Awaitable[None]],
    subscribed: asyncio.Event,
    retry_delay: float,
) -> None:
    """Forever: subscribe to ``channel`` (``subscribed`` set once it is), hand each message's
    data to ``take``, in order; a Redis that is away is waited out and subscribed to again."""
    while True:
        try:
            await subscription.subscribe(channel)
            subscribed.set()
            while True:
                data = await subscription.next_message()
                if data is not None:
                    await take(data)
        except CLIENT_ERRORS:
            await asyncio.sleep(retry_delay)


class Channels(Protocol):
    """Publishing to inbox channels, and subscribing to one."""

    unheard_wait: float
    """Seconds a message nobody heard is published again before it is dropped: 0 where a
    subscription away means its node is gone (one Redis), some where it follows its slot."""

    async def publish(self, messages: Sequence[Message]) -> list[int]:
        """Publish each message; how many subscribers heard each."""
        ...

    def subscription(self) -> Subscription: ...


class PlainChannels:
    """``PUBLISH`` (several in one pipeline) and ``SUBSCRIBE`` on one Redis."""

    unheard_wait = 0.0

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def publish(self, messages: Sequence[Message]) -> list[int]:
        if len(messages) == 1:  # the usual case: no pipeline object to build
            ((channel, data),) = messages
            return [await self.redis.publish(channel, data)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, data in messages:
                pipe.publish(channel, data)
            heard: list[int] = await pipe.execute()
        return heard

    def subscription(self) -> PlainSubscription:
        return PlainSubscription(self.redis.pubsub(ignore_subscribe_messages=True))


class PlainSubscription:
    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub

    async def subscribe(self, channel: str) -> None:
        await self.pubsub.subscribe(channel)

    async def next_message(self) -> bytes | None:
        message = await self.pubsub.get_message(timeout=None)
        if message is None or message.get("type") != "message":
            return None
        data: bytes = message["data"]
        return data

    async def aclose(self) -> None:
        await self.pubsub.aclose()


class ShardedChannels:
    """``SPUBLISH`` and ``SSUBSCRIBE`` on a Redis Cluster."""

    unheard_wait = UNHEARD_WAIT

    def __init__(self, cluster: RedisCluster, node_kwargs: dict[str, Any]) -> None:
        self.cluster = cluster
        self.node_kwargs = node_kwargs
        """How to connect to one node (credentials, TLS, timeouts) for a subscription."""
        self._refreshed = 0.0

    async def publish(self, messages: Sequence[Message]) -> list[int]:
        """Each message to its channel's master, one after the other: channels of several
        slots cannot share a command (a cluster pipeline would send them node by node too).
        A message nobody heard may have gone to a master demoted since (a planned failover:
        a replica takes ``SPUBLISH`` without ``MOVED``), so the slot map is read again then,
        at most every ``REFRESH_EVERY`` seconds."""
        await self.cluster.initialize()  # at once once it is: else SPUBLISH cannot be routed
        heard: list[int] = []
        failed: Exception | None = None
        for channel, data in messages:
            try:
                heard.append(await self.cluster.spublish(channel, data))
            except CLIENT_ERRORS as exc:  # its master away: heard by nobody (the others were)
                heard.append(0)
                failed = exc
        if failed is not None and not any(heard):
            raise failed
        if not all(heard) and time.monotonic() - self._refreshed > REFRESH_EVERY:
            self._refreshed = time.monotonic()
            with contextlib.suppress(*CLIENT_ERRORS):
                await self.cluster.nodes_manager.initialize()
        return heard

    def subscription(self) -> ShardSubscription:
        return ShardSubscription(self.cluster, self.node_kwargs)


class ShardSubscription:
    """``SSUBSCRIBE`` on a connection of its own to the master owning the channel's slot."""

    def __init__(self, cluster: RedisCluster, node_kwargs: dict[str, Any]) -> None:
        self.cluster = cluster
        self.node_kwargs = node_kwargs
        self.channel: str | None = None
        self.address: tuple[str, int] | None = None
        """The master subscribed at, if any."""
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._pending: deque[bytes] = deque()
        """Messages read from a master left, handed out before the next ones."""
        self._checked = 0.0

    async def subscribe(self, channel: str) -> None:
        self.channel = channel
        await self._attach(None)

    async def _where(self, channel: str, left: tuple[str, int] | None) -> tuple[str, int]:
        """The master the cluster says owns the channel's slot now. Not ``left`` (the master
        that said the slot left it) while the map still names it, for up to ``MOVE_WAIT``
        seconds: the node redis-py asks may not know of a failover yet, and a subscription
        back at the demoted master hears none of what the new master's publishers send."""
        deadline = time.monotonic() + MOVE_WAIT
        while True:
            await self.cluster.initialize()
            await self.cluster.nodes_manager.initialize()  # the slot map as it is now
            node = self.cluster.get_node_from_key(channel)
            if node is None:
                raise RedisError("no master serves the inbox channel's slot")
            at = node.host, int(node.port)
            if at != left or time.monotonic() > deadline:
                return at
            await asyncio.sleep(REREAD_EVERY)

    async def _attach(
        self, at: tuple[str, int] | None, left: tuple[str, int] | None = None
    ) -> None:
        """Leave the master subscribed at, if any (see ``_drain``), then subscribe at ``at``,
        or where the cluster says the channel's slot is now."""
        channel = self.channel
        if channel is None:
            raise RedisError("no channel to subscribe to")
        old, old_client = self._pubsub, self._client
        self._pubsub = self._client = self.address = None
        await self._drain(old, old_client, channel)
        if at is None:
            at = await self._where(channel, left)
        client = Redis(host=at[0], port=at[1], **self.node_kwargs)
        pubsub = client.pubsub()
        self._client, self._pubsub, self.address = client, pubsub, at
        self._checked = time.monotonic()
        await pubsub.ssubscribe(channel)

    async def _drain(self, pubsub: PubSub | None, client: Redis | None, channel: str) -> None:
        """Leave a master: ``SUNSUBSCRIBE`` there, and queue what it delivers until it
        confirms. Redis confirms after every message it queued for the connection, and a
        publisher still sending there (a demoted master takes ``SPUBLISH``) hears nobody from
        then on, so publishes again: nothing it counted as heard is lost (closing at once
        would drop what the connection holds unread), and the old master's messages are
        handed out before the new one's, in their order. Unsubscribed before subscribing
        at the new master: a message the old one passes on to it is not heard twice."""
        if pubsub is None:
            return
        connection = pubsub.connection
        try:
            if connection is None or not connection.is_connected:
                return  # broken: nothing to read, and no reconnecting to leave it
            # away, or no confirmation in time: what it had is read, or lost with it
            with contextlib.suppress(*CLIENT_ERRORS, TimeoutError):
                async with asyncio.timeout(DRAIN_WAIT):
                    await pubsub.execute_command("SUNSUBSCRIBE", channel)
                    while True:
                        message = await pubsub.get_message(timeout=DRAIN_WAIT)
                        if message is None:
                            continue
                        kind = message.get("type")
                        if kind in ("smessage", b"smessage"):
                            self._pending.append(message["data"])
                        elif kind in ("sunsubscribe", b"sunsubscribe") and not message["data"]:
                            break  # subscribed to nothing there: all it had is read
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
                if client is not None:
                    await client.aclose()

    async def next_message(self) -> bytes | None:
        if self._pending:
            return self._pending.popleft()
        if time.monotonic() - self._checked > CHECK_EVERY:
            await self._check()
        pubsub = self._pubsub
        if pubsub is None:
            raise RedisError("not subscribed")
        try:
            message = await pubsub.get_message(timeout=CHECK_EVERY)
        except MovedError as exc:  # subscribed where the slot is not (any more)
            await self._follow((exc.host, int(exc.port)))
            return None
        if message is None:
            return None
        kind = message.get("type")
        if kind in ("smessage", b"smessage"):
            self._checked = time.monotonic()  # heard: where the slot is
            data: bytes = message["data"]
            return data
        if kind in ("sunsubscribe", b"sunsubscribe"):  # the slot left this master: follow it
            await self._follow(None, left=self.address)
        return None

    async def _check(self) -> None:
        """Follow the slot if the cluster says it is elsewhere now (a master demoted in a
        planned failover does not always say so, and then hears nothing)."""
        self._checked = time.monotonic()
        channel = self.channel
        if channel is None:
            return
        await self.cluster.nodes_manager.initialize()
        node = self.cluster.get_node_from_key(channel)
        if node is not None and (node.host, int(node.port)) != self.address:
            await self._follow((node.host, int(node.port)))

    async def _follow(
        self, at: tuple[str, int] | None, left: tuple[str, int] | None = None
    ) -> None:
        was = self.address
        await self._attach(at, left)
        if self.address != was and self.address is not None:
            log.info("inbox channel's slot moved: subscribed at %s:%d now", *self.address)

    async def aclose(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = self.address = None
        with contextlib.suppress(RedisError, OSError):
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()
