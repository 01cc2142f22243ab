"""Which nodes of a cluster are alive, and where other nodes reach them.

Each node keeps a key ``{cluster}:alive:{node_id}`` with a TTL (``ALIVE_TTL``) and refreshes it
every third of that; the value is its ``NodeInfo`` (the URL that forwarded Engine.IO requests go
to, its pid and start time). A node whose key expired is dead: its clients are reaped
(``docs/cluster.md``). The node also lists its id in the set ``{cluster}:nodes``, so the alive
nodes are found by reading the set and their keys, not by scanning the keyspace (which grows
with partition logs and whatever else shares the Redis). Losing Redis is logged once when it
happens and once when it is back, not per refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from .heartbeat import Heartbeat
from .keys import ClusterKeys
from .redisclient import REDIS_ERRORS, SCAN_COUNT, AsyncClient, Topology, text

log = logging.getLogger("easyrtc_server.cluster")

ALIVE_TTL = 6.0
"""Seconds a node's alive key outlives its last refresh."""
URL_CACHE_TTL = 1.0
"""Seconds a looked-up node URL is trusted without asking Redis again."""
SCAN_EVERY = 30
"""Every this many looks for the alive nodes, also those that never listed themselves in
``keys.nodes`` (nodes of before it) are searched for by ``SCAN``."""


@dataclass(slots=True)
class NodeInfo:
    node_id: str
    url: str | None = None
    """Base URL (``http://host:port``) other nodes forward this node's Engine.IO requests to."""
    pid: int = field(default_factory=os.getpid)
    started: int = field(default_factory=lambda: int(time.time() * 1000))
    reads: tuple[str, ...] = ()
    """The log entry kinds of later versions this node reads (``log.STOCK``): the others write
    one only while every live node says it reads it (a node of before says nothing)."""

    def encode(self) -> bytes:
        info: dict[str, Any] = {
            "node": self.node_id, "url": self.url, "pid": self.pid, "started": self.started
        }  # fmt: skip
        if self.reads:
            info["reads"] = list(self.reads)
        return orjson.dumps(info)

    @classmethod
    def decode(cls, raw: bytes | str) -> NodeInfo:
        data: dict[str, Any] = orjson.loads(raw)
        reads = data.get("reads")
        return cls(
            str(data["node"]),
            data.get("url"),
            int(data["pid"]),
            int(data["started"]),
            tuple(str(kind) for kind in reads) if isinstance(reads, list) else (),
        )


class NodeRegistry:
    """This node's alive key, and lookups of the others'."""

    @classmethod
    def of_node(
        cls,
        topology: Topology,
        keys: ClusterKeys,
        info: NodeInfo,
        ttl: float,
        *,
        answered: Callable[[], None] | None = None,
    ) -> NodeRegistry:
        """A node's registry on ``topology``, its alive key also kept fresh by a heartbeat
        thread while the event loop is busy (``answered``: told when Redis answered it)."""
        heartbeat = Heartbeat(
            partial(topology.blocking_client, timeout=ttl / 3),
            keys.alive(info.node_id),
            info.encode,
            ttl,
            answered=answered,
        )
        return cls(
            topology.client(),
            keys,
            info,
            ttl=ttl,
            heartbeat=heartbeat,
            keys_like=topology.keys_like,
        )

    def __init__(
        self,
        redis: AsyncClient,
        keys: ClusterKeys,
        info: NodeInfo,
        *,
        ttl: float = ALIVE_TTL,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: Heartbeat | None = None,
        keys_like: Callable[[str], AsyncIterator[Any]] | None = None,
    ) -> None:
        """``heartbeat`` also refreshes the key from a thread, while this registry's own
        refreshes (from the event loop) show the loop is alive. ``keys_like`` finds the alive
        keys (``Topology.keys_like``; by default ``SCAN`` on ``redis``)."""
        self.redis = redis
        self._keys_like = keys_like
        self.heartbeat = heartbeat
        self.keys = keys
        self.info = info
        self.ttl = ttl
        self._clock = clock
        self.connected = False
        """The last refresh reached Redis."""
        self.on_lost: list[Callable[[], Any]] = []
        """Called (sync) once when Redis stops answering."""
        self.on_back: list[Callable[[], Any]] = []
        """Called (sync) once when it answers again."""
        self._urls: dict[str, tuple[str | None, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lost_logged = False
        self._looks = 0
        self._unlisted: set[str] = set()
        """Alive nodes found by ``SCAN`` that are not in the set (of before it)."""
        self._missing: dict[str, float] = {}
        """Listed nodes whose alive key is missing, since when (this node's clock)."""

    async def announce(self) -> None:
        """Write (or refresh) this node's alive key, and list the node (again, after a Redis
        that came back empty)."""
        node_id = self.info.node_id
        await self.redis.set(self.keys.alive(node_id), self.info.encode(), px=int(self.ttl * 1000))
        await self.redis.sadd(self.keys.nodes, node_id)

    async def start(self) -> None:
        """Announce this node, then keep its alive key fresh in the background until ``stop``.
        A Redis that does not answer yet is logged, not fatal: the node serves and retries."""
        if self._task is None:
            await self._refresh()
            self._task = asyncio.create_task(self._refresh_forever(), name="cluster-registry")
            if self.heartbeat is not None:
                self.heartbeat.start()

    async def stop(self) -> None:
        """Stop refreshing and remove the key: the others see this node gone at once."""
        if self.heartbeat is not None:
            await asyncio.to_thread(self.heartbeat.stop)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.delete(self.keys.alive(self.info.node_id))
            await self.redis.srem(self.keys.nodes, self.info.node_id)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self._refresh()

    async def _refresh(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat()
        try:
            await self.announce()
        except REDIS_ERRORS as exc:
            self._set_connected(False, exc)
        else:
            self._set_connected(True)

    def _set_connected(self, connected: bool, exc: BaseException | None = None) -> None:
        was = self.connected
        self.connected = connected
        if connected and not was:
            if self._lost_logged:
                log.warning("Redis is reachable again")
                self._lost_logged = False
            for callback in list(self.on_back):
                callback()
        elif not connected and (was or not self._lost_logged):
            if not self._lost_logged:
                log.error("Redis unreachable (%s): new logins are refused until it is back", exc)
                self._lost_logged = True
            if was:
                for callback in list(self.on_lost):
                    callback()

    async def url_of(self, node_id: str) -> str | None:
        """Where node ``node_id`` takes forwarded requests; None if it is not alive."""
        now = self._clock()
        cached = self._urls.get(node_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        raw = await self.redis.get(self.keys.alive(node_id))
        url = NodeInfo.decode(raw).url if raw is not None else None
        self._urls[node_id] = (url, now + URL_CACHE_TTL)
        return url

    async def alive_nodes(self, also: Iterable[str] = ()) -> dict[str, NodeInfo]:
        """Every node whose alive key has not expired, among the listed ones, ``also`` (the
        nodes the caller knows of: a node that never listed itself is judged by its own key)
        and, every ``SCAN_EVERY`` looks, those a ``SCAN`` finds. A listed node this node has
        seen missing for an alive TTL is taken off the list: every node looking (each
        ``cluster_check_interval``) has seen it gone by then, or knows of it (``also``). (On
        a Redis Cluster the keys share one slot: only its master is asked, and a master down
        elsewhere does not delay reaping.)"""
        listed = {text(raw) for raw in await self.redis.smembers(self.keys.nodes)}
        ids = listed | set(also) | self._unlisted
        if self._looks % SCAN_EVERY == 0:
            prefix = len(self.keys.alive(""))
            ids |= {text(key)[prefix:] async for key in self._keys(self.keys.alive_pattern)}
        self._looks += 1
        found: dict[str, NodeInfo] = {}
        if not ids:
            return found
        order = sorted(ids)
        for raw in await self.redis.mget([self.keys.alive(node_id) for node_id in order]):
            if raw is not None:
                info = NodeInfo.decode(raw)
                found[info.node_id] = info
        now = self._clock()
        since = {n: self._missing.get(n, now) for n in listed - found.keys() - {self.info.node_id}}
        if gone := sorted(n for n, t in since.items() if now - t >= self.ttl):
            await self.redis.srem(self.keys.nodes, *gone)
        self._missing = {n: t for n, t in since.items() if now - t < self.ttl}
        self._unlisted = found.keys() - listed
        return found

    def _keys(self, pattern: str) -> AsyncIterator[Any]:
        if self._keys_like is None:
            return self.redis.scan_iter(match=pattern, count=SCAN_COUNT)
        return self._keys_like(pattern)
