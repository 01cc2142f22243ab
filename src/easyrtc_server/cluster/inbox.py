"""Per-node inboxes: relayed messages for sockets on other nodes.

Relays change no state, so they do not go through the log. The sender's node runs the rule on
its own replica; a push whose recipient is connected to another node is queued here for that
node. The queues are sent once per event-loop pass, one message per node carrying the list of
pushes, by one task: one sender's messages to one target keep their order. They go by Redis
pub/sub (one ``PUBLISH`` per node, in one pipeline) or over direct links between the nodes
(``links``, ``cluster_relay``). Each node subscribes to its own channel (``keys.inbox``) and
takes its links; it sends each push to its socket.

A message is a list of relays ``[easyrtcid, event, body]`` (``[easyrtcid, None, None]`` asks the
owner to close that socket: ``server.disconnect`` of a client on another node), headed by
``["", sender, [first, after...]]``: the sending node, the index of its first relay among those
it queued to this node, and for each relay the sequence number of the last log entry its node
had appended before it (``ordering.Stamps``; -1: a relay dropped at encoding), with which the
receiving node keeps the sender's order across the log and its inbox (``ordering.Arrivals``).
The header is a relay to nobody (no easyrtcid is empty): a node of before the ordering skips
it and delivers the rest as they come; a message without one (from such a node) is delivered so.
An item is ``[easyrtcid, event, body]``; ``[[easyrtcid, ...], event, body]`` is a room or group
message to several of that node's sockets, its body (without ``easyrtcid``) carried once, each
recipient's easyrtcid added by the owner (``outcome.Fanout``); ``[easyrtcid, None, n]`` (an
integer) tells the node that kept relayed message ``n`` for that connection that its client
confirmed it (``delivery``).

Neither task stops on what it carries: a push that cannot be encoded (a binary attachment, or
JSON nested deeper than orjson writes, with ``max_json_depth = 0``) is written by the standard
library or, failing that, dropped; a message that cannot be delivered is dropped; each kind is
logged once and counted (``health``, ``easyrtc_cluster_inbox_drops``).

Both paths deliver at most once: what is published while a node's subscription is down, or
sent while a link is broken, is lost.
A relay to a keyed client that confirms its messages is kept by its sender's node until
confirmed, and sent again where the client resumes (``delivery``); other relays are lost, as a
relayed message to a socket that dropped would be. State never travels this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .channels import Channels, Subscription, listen
from .health import ReaderHealth
from .keys import ClusterKeys
from .links import Batch, Dropped, Outbound, RedisRelays
from .ordering import DROPPED, Stamps
from .redisclient import REDIS_ERRORS

log = logging.getLogger("easyrtc_server.cluster")

Item = list[Any]
RETRY_DELAY = 0.5

Deliver = Callable[[str | None, int, list[Any], list[Any]], Awaitable[None]]
"""What a node does with an inbox message: its sender (None: a node of before the ordering),
its first relay's index, each relay's ``after`` and the relays."""


class _Queue:
    """The relays queued to one node in this loop pass, the index of the first, and the
    sequence number of the entry before each."""

    __slots__ = ("afters", "first", "items")

    def __init__(self, first: int) -> None:
        self.first = first
        self.afters: list[Any] = []
        self.items: list[Item] = []


class Inbox:
    """This node's outgoing queues to other nodes' inboxes, and its own subscription."""

    def __init__(
        self,
        channels: Channels,
        keys: ClusterKeys,
        node_id: str,
        deliver: Deliver,
        health: ReaderHealth | None = None,
        stamps: Stamps | None = None,
        outbound: Callable[[Dropped], Outbound] | None = None,
    ) -> None:
        self.channels = channels
        self.keys = keys
        self.node_id = node_id
        self._deliver = deliver
        self.health = health or ReaderHealth()
        self.stamps = stamps or Stamps()
        """This node's sequence, shared with its log appends (``ordering``)."""
        self.outbound: Outbound = (
            outbound(self._dropped)
            if outbound is not None
            else RedisRelays(channels, keys, self._dropped)
        )
        """How this node's messages reach the others (``links``)."""
        self._queues: dict[str, _Queue] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None
        self._subscribed = asyncio.Event()

    def send(
        self, node: str, to: str | list[str], event: str | None, body: Any, after: Any = None
    ) -> None:
        """Queue a push for ``node``'s inbox (published at the end of this loop pass), stamped
        with this node's last log entry appended before it, or with ``after`` (the partitioned
        state's stamp, ``factorder``)."""
        stamps = self.stamps
        if after is None:
            after = stamps.seq
        index = stamps.relay(node)
        queue = self._queues.get(node)
        if queue is None:
            queue = self._queues[node] = _Queue(index)
            self._wake.set()
        queue.afters.append(after)
        queue.items.append([to, event, body])

    async def start(self) -> None:
        await self.outbound.start()
        self._subscription = self.channels.subscription()
        self._tasks = [
            asyncio.create_task(self._publish_forever(), name="cluster-inbox-out"),
            asyncio.create_task(
                listen(
                    self._subscription,
                    self.keys.inbox(self.node_id),
                    self.receive,
                    self._subscribed,
                    RETRY_DELAY,
                ),
                name="cluster-inbox-in",
            ),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._subscribed.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._subscription is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._subscription.aclose()
            self._subscription = None
        await self.outbound.stop()

    def forget(self, node: str) -> None:
        """``node`` is gone: nothing more is sent to it."""
        self.outbound.forget(node)

    def _dropped(self, batch: Batch, why: str) -> None:
        """A message did not reach its node: its relays are not waited for there
        (``ordering``); counted unless nobody was listening (a node gone or restarting)."""
        self.stamps.dropped(batch.node, batch.upto)
        if why:
            self.health.inbox_drops += batch.count
        if why.startswith("link"):
            self.health.once(
                "inbox-" + why, "relays to node %s dropped (%s)", batch.node, LINK_DROPS[why]
            )

    async def _publish_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # one more loop pass: the sockets read in it join the batch
            self._wake.clear()
            queues, self._queues = self._queues, {}
            try:
                batches = [
                    Batch(
                        node,
                        self._encode(queue),
                        queue.first + len(queue.afters),
                        len(queue.items),
                    )
                    for node, queue in queues.items()
                ]
            except Exception as exc:  # a bug: the publisher must go on for the next pushes
                self.health.inbox_drops += sum(len(queue.items) for queue in queues.values())
                self.health.once("inbox-out", "relays to other nodes dropped: %r", exc)
                continue
            await self.outbound.send(batches)

    def _encode(self, queue: _Queue) -> bytes:
        """``queue`` as one message; a relay not JSON to orjson is written by the standard
        library (nesting beyond 254 levels) or, not JSON at all, dropped and counted (its
        ``after`` stays, as ``DROPPED``: the indices of the others stay right)."""
        afters = queue.afters
        try:
            return orjson.dumps([["", self.node_id, [queue.first, *afters]], *queue.items])
        except TypeError:
            pass
        parts: list[bytes] = []
        for i, item in enumerate(queue.items):
            try:
                parts.append(orjson.dumps(item))
                continue
            except TypeError:
                pass
            try:
                parts.append(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
            except (TypeError, ValueError, RecursionError) as exc:
                afters[i] = DROPPED
                self.health.inbox_drops += 1
                self.health.once("inbox-encode", "dropped a relay to another node: %r", exc)
        parts.insert(0, orjson.dumps(["", self.node_id, [queue.first, *afters]]))
        return b"[" + b",".join(parts) + b"]"

    async def receive(self, data: bytes) -> None:
        """One message to this node's inbox, by either path: each relay to its socket. Never
        raises on what it carries: an unusable one is counted (and logged once)."""
        try:
            items = orjson.loads(data)
            if not isinstance(items, list):
                raise TypeError("not a list of pushes")
            head = items[0] if items else None
            if not (type(head) is list and len(head) == 3 and head[0] == ""):
                await self._deliver(None, 0, [], items)  # a node of before
                return
            _, sender, stamps = head
            if not (
                isinstance(sender, str)
                and type(stamps) is list
                and stamps
                and type(stamps[0]) is int
            ):
                raise TypeError("not an inbox message's header")
            await self._deliver(sender, stamps[0], stamps[1:], items[1:])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever was sent: the next one counts
            self.health.inbox_drops += 1
            self.health.once("inbox-in", "unusable inbox message to %s: %r", self.node_id, exc)


LINK_DROPS = {
    "link": "the link to it could not be made or broke",
    "link-full": "too many waited for its link to connect",
    "link-bug": "a bug, logged with its traceback",
}
