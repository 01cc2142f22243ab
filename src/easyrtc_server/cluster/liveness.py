"""Noticing that a node died, or that Redis came back empty or older, and saying so in the log.

Every node runs one ``Liveness`` watch. Each ``interval`` it

- reads ``{cluster}:epoch``: absent means Redis restarted empty (it runs without persistence);
  one node sets a new one (``SET NX``), every node sees it differ from the one it knew and
  rebuilds (``rebuild``);
- in the same round trip, looks for the log entry this node applied last (and the one it had
  applied when its reader last lost Redis): on a live Redis it is there, or a snapshot trimmed
  it (``lost``). Neither means Redis came back with an older dataset (a stale ``dump.rdb``, a
  failover to a replica that lacked the last writes): its log and snapshot no longer match
  what the running replicas hold, and a node started now would diverge from them. The node
  that notices replaces the epoch, and the stale log and snapshot with it, in one script if the
  epoch is still the one it knew (``NEW_EPOCH_IF``: two nodes noticing at once make one new
  epoch); then every node rebuilds as after an empty Redis;
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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import RedisError

from . import log as entries
from .gaps import stream_id
from .keys import ClusterKeys
from .redisclient import REDIS_ERRORS, AsyncClient, text
from .registry import NodeInfo, NodeRegistry

if TYPE_CHECKING:
    from .health import ReaderHealth
    from .node import ClusterNode
    from .rebuild import Rebuilder

log = logging.getLogger("easyrtc_server.cluster")

REAPER_LOCK_MS = 5000
"""How long the reaper lock is held: one node announces a death, not every node at once."""


EMPTY = "Redis came back empty (new epoch)"
OLDER = "Redis came back with an older dataset (its log lacks entries this node applied)"
CHANGED = "the cluster epoch changed (Redis came back empty or older, another node noticed)"
"""Why a node rebuilds, as its warning says (followed by ": rebuilding the cluster state")."""

NEW_EPOCH_IF: Final = """
local now = redis.call('GET', KEYS[1])
if now ~= ARGV[1] then return now end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
"""
"""KEYS: epoch, log, snapshot, snapshot id, trimmed mark; ARGV: the epoch known, a new one.
If the epoch is still the one known, clear the older dataset's log and snapshot (every node
rebuilds from its own sockets, as after an empty Redis: nothing of them is left to read) and
set the new epoch. Returns the epoch now (nil if there is none)."""


def new_epoch() -> str:
    return secrets.token_hex(8)


def lost(
    applied: bytes | str, at_or_before: bytes | str | None, trimmed: bytes | str | None
) -> bool:
    """Whether Redis lost the log entry ``applied`` (one this node applied), given the log's
    newest entry id at or before it (``at_or_before``, None if there is none) and the newest id
    a snapshot trimmed (``trimmed``, None if none; only needed when ``at_or_before`` is None).
    Stream ids only grow on a live Redis and a trim records its newest id in the same script,
    so there the entry is either still in the log or at or before the trimmed mark. Only older
    entries, or none and no trim past it: Redis came back with an older dataset. Entries
    written since (newer ids) do not hide it."""
    wanted = stream_id(applied)
    if wanted == (0, 0):
        return False  # applied nothing (or the log is read again from its start)
    if at_or_before is not None:
        return stream_id(at_or_before) < wanted
    return trimmed is None or stream_id(trimmed) < wanted


class Liveness:
    """The watch of one node: dead nodes reaped, a new epoch noticed, an older Redis noticed."""

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
        applied: Callable[[], bytes | str] = lambda: "0-0",
        health: ReaderHealth | None = None,
        clock: Callable[[], float] = time.monotonic,
        drop_idle: Callable[[], Awaitable[None]] | None = None,
        on_alive: Callable[[Mapping[str, NodeInfo]], Any] | None = None,
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
        self._applied = applied
        """The id of the log entry this node applied last ("0-0": none)."""
        self._unsure: bytes | str | None = None
        """The entry applied last when this node's reader lost Redis (``unsure``): looked for
        in the next round, since entries read from a Redis back in time would hide its loss."""
        self._health = health
        """Where an older Redis noticed is counted (``/metrics``)."""
        self._on_alive = on_alive
        """Told of the live nodes each round (what they read: ``registry.NodeInfo``)."""
        self._new_epoch_if = redis.register_script(NEW_EPOCH_IF)
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
            applied=lambda: node.last_id,
            health=node.health,
            drop_idle=node.topology.drop_idle,
            on_alive=node.alive_nodes_read,
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
        epoch, why = await self._epoch_now()
        if epoch != self.epoch:
            known, self.epoch = self.epoch, epoch
            if known is not None:  # else: started while Redis was away, holding nothing yet
                log.warning("%s: rebuilding the cluster state", why)
                await self.drop_connections()
            # an id of the older log is nothing to look for in the new one: forgotten right
            # before the rebuild reads the log from its start again (no wait in between)
            self._unsure = None
            if known is not None:
                await self._on_new_epoch(epoch)
            return
        await self.reap()
        if self._tidy is not None:
            await self._tidy()

    def unsure(self, applied: bytes | str) -> None:
        """This node's reader lost Redis, having applied up to ``applied``: a round looks for
        that entry too (Redis may come back older, and the reader then reads on from it, past
        what was lost). The first one is kept until a round found it: a later failure, after
        the reader read on, must not hide it."""
        if self._unsure is None and stream_id(applied) != (0, 0):
            self._unsure = applied

    async def _epoch_now(self) -> tuple[str, str]:
        """The cluster's epoch, and why it changed if it did: Redis came back empty (set anew
        here or by another node), or older (noticed here: replaced if still the same)."""
        looked = [self._applied()]  # before asking Redis: its reader moves on meanwhile
        if (unsure := self._unsure) is not None and unsure != looked[0]:
            looked.append(unsure)
        looked = [at for at in looked if stream_id(at) != (0, 0)]
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.epoch)
        for at in looked:
            pipe.xrevrange(keys.log, at, "-", count=1)
        raw, *found = await pipe.execute()
        if raw is None:
            return await self.current_epoch(), EMPTY
        epoch = text(raw)
        if epoch != self.epoch:
            return epoch, CHANGED
        trimmed: bytes | str | None = None
        if any(not near for near in found):  # trimmed past it, or gone: the mark tells
            trimmed = await self.redis.get(keys.trimmed)
        if not any(
            lost(at, near[0][0] if near else None, trimmed)
            for at, near in zip(looked, found, strict=True)
        ):
            if unsure is not None and self._unsure == unsure:
                self._unsure = None  # still there: nothing was lost while the reader was away
            return epoch, ""
        now = await self.replace_epoch(epoch)
        if self._health is not None:
            self._health.older_redis += 1
        if now is None:  # emptied meanwhile: the next round sets one
            return epoch, EMPTY
        return now, OLDER

    async def replace_epoch(self, known: str) -> str | None:
        """A new epoch in place of ``known``, the older dataset's log and snapshot cleared with
        it, if the epoch is still ``known``: of two nodes noticing at once, the second finds
        the first's epoch and clears nothing. Returns the epoch now (None: there is none)."""
        keys = self.keys
        now = await self._new_epoch_if(
            keys=[keys.epoch, keys.log, keys.snapshot, keys.snapshot_id, keys.trimmed],
            args=[known, new_epoch()],
        )
        return None if now is None else text(now)

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
        return text(epoch)

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
        alive = await self.registry.alive_nodes(also=known)
        if self._on_alive is not None:
            self._on_alive(alive)
        if not known:
            return []
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
