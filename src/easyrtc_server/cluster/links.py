"""How an inbox message reaches another node: Redis pub/sub, or a direct link to that node.

``inbox`` batches a node's relays per target node and loop pass; an ``Outbound`` carries each
batch. Two do:

- ``RedisRelays`` (``cluster_relay = "redis"``, the default): one ``PUBLISH`` to the target's
  channel per batch (a pipeline when several nodes get one in the same pass).
- ``DirectLinks`` (``cluster_relay = "direct"``): one websocket from this node to each node it
  relays to, on that node's internal listener (``forwarding``; ``LINK_PATH``), opened when first
  needed and signed with the cluster secret as forwarded requests are. Redis is left out of the
  relay's path: through it a relay costs a ``PUBLISH`` on the sender (38 µs of redis-py's
  client CPU each, measured) and Redis' own fan-out (19 µs), which is most of what a cross-node
  relay costs beyond a same-node one (``bench/cluster.py --breakdown``). Each link has its own
  queue and task, so a slow or unreachable node holds up no other.

Both deliver at most once, and keep one sender's messages to one node in order (one channel
read by one subscriber; one TCP connection), which is all ``ordering`` asks of them. What cannot
be carried (Redis away, no subscriber; a link that cannot be made or breaks, a queue past
``MAX_QUEUED`` while it connects) is dropped and reported (``Dropped``), so that the target is
not told to wait for it. A node receives on both paths whichever it sends on, so nodes of
either setting relay to each other. The links never fall back to Redis: switching paths in
the middle of a sender's stream could reorder it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from aiohttp import (
    ClientError,
    ClientSession,
    ClientTimeout,
    ClientWebSocketResponse,
    TCPConnector,
    WSMsgType,
    web,
)

from .channels import Channels
from .keys import ClusterKeys
from .redisclient import REDIS_ERRORS
from .registry import NodeRegistry
from .secret import NODE_AUTH, sign, verify

log = logging.getLogger("easyrtc_server.cluster")

LINK_PATH: Final = "/cluster/inbox"
"""The internal listener's path of the links (``forwarding`` serves it)."""
MAX_QUEUED: Final = 1024
"""Batches a link keeps while it connects; beyond, the oldest are dropped."""
UNHEARD_RETRY: Final = 0.1
"""Seconds between two attempts to publish a batch nobody heard (on a Redis Cluster)."""
RETRY_DELAY: Final = 0.5
"""Seconds a link that could not be made waits before it is tried again."""
CONNECT_TIMEOUT: Final = 2.0
HEARTBEAT: Final = 5.0
"""Seconds between the pings a link's sender sends (no pong in half of it: the link is
closed, what waits on it dropped)."""
MAX_MESSAGE: Final = 64 * 1024 * 1024
"""Bytes of one message a link takes (the nodes are trusted: only a bound for their bugs)."""


@dataclass(slots=True)
class Batch:
    """One inbox message for ``node``: ``count`` relays, ``upto`` the index after its last."""

    node: str
    data: bytes
    upto: int
    count: int


Dropped = Callable[[Batch, str], None]
"""Told of a batch that did not reach its node, and why (for the log, once per kind)."""


class Outbound(Protocol):
    """Carries this node's inbox messages to other nodes."""

    async def send(self, batches: list[Batch]) -> None:
        """Carry these (one per node) or report them ``Dropped``; never raises."""

    def forget(self, node: str) -> None:
        """``node`` is gone: nothing more goes to it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class RedisRelays:
    """Each batch published to its node's channel (``channels``).

    A batch nobody heard, or that Redis refused, is dropped at once on one Redis: its node is
    gone, or Redis is. On a Redis Cluster a node's subscription is expected to be away for a
    moment (it follows its slot to another master after a migration or a failover, and its
    publishers may reach the new master first), so there such a batch is kept and published
    again, with the ones queued to that node after it (their order kept), for up to
    ``channels.unheard_wait`` seconds, then dropped."""

    def __init__(self, channels: Channels, keys: ClusterKeys, dropped: Dropped) -> None:
        self.channels = channels
        self.keys = keys
        self._dropped = dropped
        self._failing = False
        self._kept: dict[str, tuple[float, str, deque[Batch]]] = {}
        """node -> since when (monotonic), why, its batches waiting to be published again."""
        self._retry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Nothing to open: the node's Redis client is."""

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        for node in list(self._kept):
            self._give_up(node)

    def forget(self, node: str) -> None:
        """Nothing published to it any more."""
        self._give_up(node)

    async def send(self, batches: list[Batch]) -> None:
        kept = self._kept
        fresh = []
        for batch in batches:
            if batch.node in kept:  # behind the ones kept for its node
                self._keep(batch, "")
            else:
                fresh.append(batch)
        if not fresh:
            return
        inbox = self.keys.inbox
        try:
            heard = await self.channels.publish([(inbox(b.node), b.data) for b in fresh])
        except REDIS_ERRORS as exc:
            if not self._failing:
                log.warning("relays to other nodes are lost while Redis is away: %s", exc)
                self._failing = True
            for batch in fresh:
                self._unheard(batch, "redis")
            return
        self._failing = False
        for batch, listeners in zip(fresh, heard, strict=True):
            if not listeners:  # that node is gone, or not subscribed right now
                self._unheard(batch, "")

    def _unheard(self, batch: Batch, why: str) -> None:
        if self.channels.unheard_wait > 0:
            self._keep(batch, why)
        else:
            self._dropped(batch, why)

    def _keep(self, batch: Batch, why: str) -> None:
        since, was, queue = self._kept.get(batch.node) or (time.monotonic(), why, deque())
        self._kept[batch.node] = since, was or why, queue
        queue.append(batch)
        while len(queue) > MAX_QUEUED:
            self._dropped(queue.popleft(), was or why)
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._publish_kept(), name="cluster-inbox-retry")

    async def _publish_kept(self) -> None:
        """Publish the kept batches again, each node's in order, until they are heard or
        their time is up."""
        inbox = self.keys.inbox
        while self._kept:
            await asyncio.sleep(UNHEARD_RETRY)
            for node in list(self._kept):
                since, _why, queue = self._kept[node]
                while queue:
                    try:
                        (listeners,) = await self.channels.publish([(inbox(node), queue[0].data)])
                    except REDIS_ERRORS:
                        break
                    if not listeners:
                        break
                    queue.popleft()
                if not queue:
                    self._kept.pop(node, None)
                elif time.monotonic() - since > self.channels.unheard_wait:
                    self._give_up(node)

    def _give_up(self, node: str) -> None:
        _since, why, queue = self._kept.pop(node, (0.0, "", deque()))
        for batch in queue:
            self._dropped(batch, why)


class _Link:
    """The link to one node: its queue, and the task that connects and sends."""

    __slots__ = ("queue", "task", "wake", "ws")

    def __init__(self) -> None:
        self.queue: deque[Batch] = deque()
        self.wake = asyncio.Event()
        self.ws: ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None


class DirectLinks:
    """A websocket to each node this node relays to, on that node's internal listener."""

    def __init__(
        self, node_id: str, registry: NodeRegistry, secret: bytes, dropped: Dropped
    ) -> None:
        self.node_id = node_id
        self.registry = registry
        self._secret = secret
        self._dropped = dropped
        self._links: dict[str, _Link] = {}
        self._session: ClientSession | None = None

    async def start(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(limit=0),
            timeout=ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            skip_auto_headers=("User-Agent",),
        )

    async def stop(self) -> None:
        links, self._links = self._links, {}
        for link in links.values():
            if link.task is not None:
                link.task.cancel()
        for link in links.values():
            if link.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await link.task
            if link.ws is not None:
                with contextlib.suppress(ClientError, OSError):
                    await link.ws.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, batches: list[Batch]) -> None:
        """Queue each batch on its node's link (made now if there is none): no waiting here."""
        for batch in batches:
            link = self._links.get(batch.node)
            if link is None:
                link = self._links[batch.node] = _Link()
                link.task = asyncio.create_task(
                    self._run(batch.node, link), name=f"cluster-link-{batch.node}"
                )
            queue = link.queue
            queue.append(batch)
            if len(queue) > MAX_QUEUED:
                self._dropped(queue.popleft(), "link-full")
            link.wake.set()

    def forget(self, node: str) -> None:
        """``node`` is gone: its link is closed, what was queued for it dropped."""
        link = self._links.pop(node, None)
        if link is not None and link.task is not None:
            link.task.cancel()
            for batch in link.queue:
                self._dropped(batch, "")

    async def _run(self, node: str, link: _Link) -> None:
        """Connect when there is something to send; send it all; on a failure drop what is
        queued (it is not known what the other end read), wait, and start again."""
        queue = link.queue
        while True:
            await link.wake.wait()
            link.wake.clear()
            try:
                ws = link.ws
                if ws is None or ws.closed:
                    link.ws = None
                    ws = link.ws = await self._connect(node)
                while queue:
                    await ws.send_bytes(queue[0].data)
                    queue.popleft()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an unreachable node, a broken link, a bug
                link.ws = None
                why = "link"
                if not isinstance(exc, ClientError | OSError | TimeoutError | LookupError):
                    why = "link-bug"
                    log.exception("the link to node %s failed", node)
                while queue:
                    self._dropped(queue.popleft(), why)
                await asyncio.sleep(RETRY_DELAY)

    async def _connect(self, node: str) -> ClientWebSocketResponse:
        """The link to ``node``'s internal listener (``LookupError``: it is not alive)."""
        if self._session is None:
            raise LookupError("links are not started")
        base = await self.registry.url_of(node)
        if base is None:
            raise LookupError(f"node {node} is not alive")
        headers = {NODE_AUTH: sign(self._secret, self.node_id, "GET", LINK_PATH)}
        return await self._session.ws_connect(
            base.rstrip("/") + LINK_PATH,
            headers=headers,
            autoping=True,
            heartbeat=HEARTBEAT,  # a node that vanished without a FIN: the link is closed
            max_msg_size=MAX_MESSAGE,
            compress=0,
        )


Receive = Callable[[bytes], Awaitable[None]]


class LinkServer:
    """The internal listener's end of the other nodes' links (``forwarding`` routes
    ``LINK_PATH`` here): each message to ``receive``, in its link's order. Only a request
    signed with the cluster secret is taken (403 otherwise)."""

    def __init__(self, secret: bytes, receive: Receive) -> None:
        self._secret = secret
        self._receive = receive
        self._open: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if verify(self._secret, request.headers.get(NODE_AUTH, ""), "GET", LINK_PATH) is None:
            return web.Response(status=403, text="this address takes the cluster's nodes only")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, compress=False)
        await ws.prepare(request)
        self._open.add(ws)
        try:
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    await self._receive(message.data)
        finally:
            self._open.discard(ws)
        return ws

    async def close(self) -> None:
        """This node leaves: the links to it are closed (their senders drop what follows)."""
        for ws in list(self._open):
            with contextlib.suppress(OSError):
                await ws.close()
