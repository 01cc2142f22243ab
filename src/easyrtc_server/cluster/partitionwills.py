"""Wills: a partitioned node's keyed connections outlive its death (``partitioned``).

A keyed connection lives, and is held, on one node (``partitionholds``). So that a client
whose node dies keeps its easyrtcid, its rooms and its calls, each node keeps in Redis, for each
of its keyed connections, what another node needs to hold it: its *will*, a ``Handover``
without a queue (easyrtcid, application, username, presence, fields, rooms with their entries,
login number), in one hash per node (``keys.wills``), by hold name (a digest of the resume key's
digest: no key, no digest a node keeps). It is written when the connection logs in and
whenever its rooms or entries change, and deleted when the connection ends or moves.

When the node dies, the first node to take its wills (``take``: atomic, so each will is taken
once) adopts each connection as a hold of its own, joining its rooms again with the next login
number, as a hand-over does: the partitions move the member to the adopter, nobody sees it
leave. The dead node's ``node-gone`` must come after those joins (it removes the members still
the dead node's): a taker is listed in ``keys.adopting`` until its joins are in, and every
reaper waits (``settled``) before it posts ``node-gone``. A client that comes back before the
reaping looks for its will itself (``take`` of one name). The queue of the dead node's holds
is lost with it.

This module does the wills' I/O only: it knows nothing of partitions or sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import orjson

from .health import ReaderHealth
from .keys import ClusterKeys
from .luascript import LuaScript
from .partitionholds import Handover
from .passbatch import PassBatch
from .redisclient import REDIS_ERRORS, AsyncClient

WILLS_TTL_MS: Final = 86_400_000
"""A node's wills outlive their last write by this much (a node long dead, never reaped)."""
ADOPTING_TTL_MS: Final = 20_000
"""A taker that dies while adopting is waited for at most this long."""
SETTLE_POLL: Final = 0.05
"""How often a reaper looks whether the adoptions of a dead node's connections are done."""

_TAKE: Final = """
local out
if #ARGV > 2 then
    out = {}
    for i = 3, #ARGV do
        local will = redis.call('HGET', KEYS[1], ARGV[i])
        if will then
            out[#out + 1] = will
            redis.call('HDEL', KEYS[1], ARGV[i])
        end
    end
else
    out = redis.call('HVALS', KEYS[1])
    redis.call('DEL', KEYS[1])
end
if #out > 0 then
    redis.call('SADD', KEYS[2], ARGV[1])
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return out
"""
"""Take a dead node's wills (``ARGV[3..]`` the names, none: all), listing the taker as
adopting."""


class Wills:
    """This node's wills (written in one pipeline per event-loop pass; the owner runs
    ``run``) and the taking of a dead node's."""

    def __init__(
        self, redis: AsyncClient, keys: ClusterKeys, node_id: str, health: ReaderHealth
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.node_id = node_id
        self.health = health
        self._take = LuaScript(redis, _TAKE)
        self._writes: dict[str, bytes | None] = {}
        """name -> the will to write, or None to delete it."""
        self._batch = PassBatch(self._flush)

    def put(self, will: Handover) -> asyncio.Future[None]:
        """Write ``will`` with this loop pass's batch; done once the batch was sent (a login
        awaits it before its token: a client that has its easyrtcid has a will)."""
        self._writes.pop(will.name, None)
        self._writes[will.name] = orjson.dumps(will.to_json())
        return self._batch.sent()

    def drop(self, name: str) -> None:
        self._writes.pop(name, None)
        self._writes[name] = None
        self._batch.due()

    def writing(self, name: str) -> bool:
        """Whether the will ``name`` has a write not sent yet."""
        return name in self._writes

    async def run(self) -> None:
        """The writing loop (the owner runs it as a task and cancels it)."""
        await self._batch.run()

    async def _flush(self) -> None:
        writes, self._writes = self._writes, {}
        await self._send(writes)

    async def _send(self, writes: dict[str, bytes | None]) -> None:
        key = self.keys.wills(self.node_id)
        puts = {name: will for name, will in writes.items() if will is not None}
        drops = [name for name, will in writes.items() if will is None]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if puts:
                    pipe.hset(key, mapping=puts)  # type: ignore[arg-type]
                    pipe.pexpire(key, WILLS_TTL_MS)
                if drops:
                    pipe.hdel(key, *drops)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self.health.once("wills", "the keyed connections' wills could not be written: %r", exc)

    async def clear(self) -> None:
        """This node leaves the cluster: no will of its may be adopted (what it held went to
        the other nodes, or ended). Raises what Redis answered."""
        self._writes.clear()
        self._batch.release()
        await self.redis.delete(self.keys.wills(self.node_id))

    async def take(self, node: str, names: list[str] | None = None) -> list[Handover]:
        """Dead ``node``'s wills (``names`` only, if given), each taken by one node only; this
        node is listed as adopting until ``adopted``. Raises what Redis answered."""
        keys = [self.keys.wills(node), self.keys.adopting(node)]
        raw = await self._take.run(keys, [self.node_id, ADOPTING_TTL_MS, *(names or ())])
        wills = []
        for item in raw or ():
            try:
                will = Handover.from_json(orjson.loads(item))
            except orjson.JSONDecodeError:
                will = None
            if will is None:
                self.health.once("will-junk", "a will that is not one was skipped")
                continue
            wills.append(will)
        return wills

    async def adopted(self, node: str) -> None:
        """This node's adoptions of ``node``'s connections are done (their joins are in)."""
        await self.redis.srem(self.keys.adopting(node), self.node_id)

    async def settled(self, node: str) -> None:
        """Until no node adopts ``node``'s connections (a taker that died stops counting when
        its listing expires, ``ADOPTING_TTL_MS``); the caller bounds the wait."""
        key = self.keys.adopting(node)
        while True:  # a look in Redis, not an event of this process
            if not await self.redis.exists(key):
                return
            await asyncio.sleep(SETTLE_POLL)

    async def names(self) -> set[str]:
        """The names of this node's wills in Redis now (those not taken)."""
        raw: Any = await self.redis.hkeys(self.keys.wills(self.node_id))
        return {item.decode() if isinstance(item, bytes) else str(item) for item in raw}
