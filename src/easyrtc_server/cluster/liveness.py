"""Noticing that a node died, or that Redis came back empty, and saying so in the log.

Every node runs one ``Liveness`` watch. Each ``interval`` it

- reads ``{cluster}:epoch``: absent means Redis restarted empty (it runs without persistence);
  one node sets a new one (``SET NX``), every node sees it differ from the one it knew and
  rebuilds (``rebuild``);
- compares the nodes owning connections in its replica with the nodes whose alive key is still
  there: a node whose key expired (``kill -9``, a lost machine) is reaped. One node takes the
  reaper lock (``SET NX PX``), checks again that the key is gone, and appends ``node-gone``;
  every replica then removes that node's connections (``replica``), so their peers get
  ``removeClient`` and rooms are reclaimed or counted right, as on a disconnect.

A node that was reaped while it was cut off from Redis but lived reads its own ``node-gone``
when it is back: it re-registers its connections (a ``rejoin`` each, see ``rebuild``) instead
of closing its sockets, so its clients stay; their peers see them leave and come back.

Redis errors here are not logged: the registry logs a lost Redis once, and once when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from . import log as entries
from .keys import ClusterKeys
from .redisclient import REDIS_ERRORS, AsyncClient
from .registry import NodeRegistry

if TYPE_CHECKING:
    from .node import ClusterNode
    from .rebuild import Rebuilder

log = logging.getLogger("easyrtc_server.cluster")

REAPER_LOCK_MS = 5000
"""How long the reaper lock is held: one node announces a death, not every node at once."""


def new_epoch() -> str:
    return secrets.token_hex(8)


class Liveness:
    """The watch of one node: dead nodes reaped, a new epoch noticed."""

    def __init__(
        self,
        redis: AsyncClient,
        keys: ClusterKeys,
        registry: NodeRegistry,
        *,
        owners: Callable[[], Iterable[str]],
        senders: Callable[[], Iterable[str]] = tuple,
        announce_gone: Callable[[str], Awaitable[Any]],
        on_new_epoch: Callable[[str], Awaitable[Any]],
        tidy: Callable[[], Awaitable[Any]] | None = None,
        interval: float = 1.0,
        heard: Callable[[str], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        drop_idle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.redis = redis
        self._drop_idle = drop_idle
        """Closes the client's idle pooled connections (``redisclient.Topology``)."""
        self.keys = keys
        self.registry = registry
        self.node_id = registry.info.node_id
        self._owners = owners
        """The nodes owning connections in this node's replica."""
        self._senders = senders
        """The nodes whose last sequence number the replica keeps (``ordering``): a node that
        stopped owning nothing is announced gone too, so that its number is forgotten, not
        kept in every snapshot for ever (one per node start)."""
        self._announce_gone = announce_gone
        """Appends ``node-gone`` for a node to the log."""
        self._tidy = tidy
        """Called at the end of each round (this node's own repairs)."""
        self._on_new_epoch = on_new_epoch
        """Rebuilds this node's replica; awaited before the watch goes on."""
        self.interval = interval
        self._heard = heard
        """When (``clock``) this node last applied an entry of a node, None if never."""
        self._clock = clock
        self.epoch: str | None = None
        """The epoch this node's replica was built in; None before the first check."""
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        registry.on_back.append(self._redis_back)

    @classmethod
    def of(cls, node: ClusterNode, rebuilder: Rebuilder) -> Liveness:
        """The watch of ``node``: it appends ``node-gone`` to its log, ``rebuilder`` rebuilds."""

        async def announce_gone(gone: str) -> None:
            await node.append(entries.node_gone(node.node_id, node.replica.now(), gone))

        return cls(
            node.redis,
            node.keys,
            node.registry,
            owners=lambda: set(node.replica.owners.values()),
            senders=lambda: list(node.replica.seqs),
            announce_gone=announce_gone,
            on_new_epoch=rebuilder.rebuild,
            tidy=rebuilder.tidy,
            interval=node.options.cluster_check_interval,
            heard=node.heard.get,
            drop_idle=node.topology.drop_idle,
        )

    async def start(self) -> None:
        """Learn (or set) the epoch, then watch in the background until ``stop``."""
        if self._task is None:
            with contextlib.suppress(*REDIS_ERRORS):
                self.epoch = await self.current_epoch()
            self._task = asyncio.create_task(self._watch(), name="cluster-liveness")

    async def stop(self) -> None:
        """Cancel the watch, again until it is over: a cancellation swallowed inside a Redis
        call must not leave the process unable to exit."""
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except REDIS_ERRORS:
                continue  # the registry logs a lost Redis, once
            except Exception:
                log.exception("cluster liveness check failed")

    async def check(self) -> None:
        """One round: a new epoch first (a rebuild makes reaping moot), then dead nodes."""
        epoch = await self.current_epoch()
        if epoch != self.epoch:
            known, self.epoch = self.epoch, epoch
            if known is not None:  # else: started while Redis was away, holding nothing yet
                log.warning("Redis came back empty (new epoch): rebuilding the cluster state")
                await self.drop_connections()
                await self._on_new_epoch(epoch)
            return
        await self.reap()
        if self._tidy is not None:
            await self._tidy()

    async def drop_connections(self) -> None:
        """Close the idle pooled connections: after Redis restarted each would fail once, and
        a login that drew one would be refused. Those in use are left to their command."""
        if self._drop_idle is not None:
            await self._drop_idle()

    def _redis_back(self) -> None:
        task = asyncio.ensure_future(self.drop_connections())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def current_epoch(self) -> str:
        """The cluster's epoch, set anew (by whichever node asks first) if Redis lost it."""
        key = self.keys.epoch
        epoch = await self.redis.get(key)
        if epoch is None:
            await self.redis.set(key, new_epoch(), nx=True)
            epoch = await self.redis.get(key)
            if epoch is None:  # flushed again in between: next round
                raise RedisError("epoch vanished")
        return epoch.decode() if isinstance(epoch, bytes) else str(epoch)

    def heard_lately(self, node: str) -> bool:
        """This node applied an entry of ``node`` within the alive TTL: it is writing, so it
        lives, however late its alive key (its event loop busy, its refreshes starved)."""
        heard = self._heard(node) if self._heard is not None else None
        return heard is not None and self._clock() - heard <= self.registry.ttl

    async def reap(self) -> list[str]:
        """Announce the end of every node owning connections whose alive key is gone; returns
        the nodes this node announced."""
        owners = set(self._owners()) - {self.node_id}
        known = (owners | set(self._senders())) - {self.node_id}
        if not known:
            return []
        alive = await self.registry.alive_nodes()
        dead = [node for node in sorted(known - alive.keys()) if not self.heard_lately(node)]
        if not dead:
            return []
        # One node announces: the lock is left to expire, so that the others, which may apply
        # the ``node-gone`` a little later, do not announce it again meanwhile.
        if not await self.redis.set(self.keys.reaper, self.node_id, nx=True, px=REAPER_LOCK_MS):
            return []
        reaped: list[str] = []
        for node in dead:
            if await self.redis.exists(self.keys.alive(node)):
                continue  # back in time
            if node in owners:
                log.warning("node %s is gone (its alive key expired): removing its clients", node)
            else:  # it left owning nothing (a clean stop): only its sequence number is kept
                log.debug("node %s has left: forgetting its sequence number", node)
            await self._announce_gone(node)
            reaped.append(node)
        return reaped
