"""Which nodes have members of each group, for a partitioned cluster's group messages (issue 23).

A group (server code's ``add_to_group``) lives on the nodes of its members (``clusterchanges``),
and no node knows every member: one sharing a room with a node is a stub there with its groups
(``stubs.GROUPS``), the others are not known at all. A client's message to a group alone
(``targetGroup``) must still reach every member, and be refused only when the application
never had that group, as in one process. So each node names itself, per group its own
connections are in, in a Redis set (``keys.group``: the node ids, and ``""`` once the group
was made on any node, never taken out), and lists the sets it is in (``keys.groups_of``) so
that a reaper takes a dead node out of them. A group message costs its sender's node one
``SMEMBERS`` (``lookup``), then one inbox item per other node named (``partitioned``).

**Writes.** ``joined``/``left`` count this node's members per group; a group whose count left
or reached 0 is written (``SADD`` or ``SREM``) in one pipeline per event-loop pass, in order
(``passbatch``; the owner runs ``run``). ``written`` waits for what was asked before it: server
code's ``add_to_group`` returns once the directory names the member's node, so a message sent
after it reaches the member, as in one process. A write that failed (Redis away) is kept and
written with the next, or by ``restate`` (what a node taken for dead, or back after Redis came
back empty, does).

What this module must not know: the core, the partitions, which node is dead (its caller's
liveness says). All its keys are under the cluster's one hash tag (``keys``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Final

from .health import ReaderHealth
from .keys import ClusterKeys
from .passbatch import PassBatch
from .redisclient import REDIS_ERRORS, AsyncClient, text

MADE: Final = ""
"""The member of a group's set saying the group was made (a node id is never empty)."""


class GroupDirectory:
    """This node's share of the group directory, and its reads of the others'."""

    def __init__(
        self, redis: AsyncClient, keys: ClusterKeys, node_id: str, health: ReaderHealth
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.node_id = node_id
        self.health = health
        self._counts: Counter[tuple[str, str]] = Counter()
        """(application, group) -> this node's own connections in it."""
        self._dirty: set[tuple[str, str]] = set()
        """Groups whose count left or reached 0 since they were last written."""
        self._batch = PassBatch(self._flush)

    def joined(self, app: str, group: str) -> None:
        """A connection of this node entered ``group`` of ``app``."""
        pair = (app, group)
        self._counts[pair] += 1
        if self._counts[pair] == 1:
            self._write(pair)

    def left(self, app: str, group: str) -> None:
        """A connection of this node left ``group`` of ``app`` (or left this node)."""
        pair = (app, group)
        if self._counts[pair] <= 1:
            self._counts.pop(pair, None)
            self._write(pair)
        else:
            self._counts[pair] -= 1

    async def written(self) -> None:
        """Once what was asked so far is in Redis (or failed)."""
        pending = self._batch.pending()
        if pending is not None:
            await asyncio.shield(pending)

    async def restate(self) -> None:
        """Every group of this node's written again (reaped while it lived, or Redis came
        back empty)."""
        self._dirty.update(self._counts)
        if self._dirty:
            self._batch.due()
        await self.written()

    async def run(self) -> None:
        """The writing loop (the owner runs it as a task and cancels it)."""
        await self._batch.run()

    def release(self) -> None:
        """This node stops: whoever awaits ``written`` goes on, and nobody waits any more."""
        self._batch.release()

    async def lookup(self, app: str, group: str) -> set[str] | None:
        """The nodes with members of ``group`` (this one included); None if the application
        never had it. Raises what Redis raised."""
        found = await self.redis.smembers(self.keys.group(app, group))
        if not found:
            return None
        return {text(member) for member in found} - {MADE}

    async def reap(self, node: str) -> None:
        """Dead ``node`` taken out of every group it was named in. Repeating it changes
        nothing. Raises what Redis raised."""
        index = self.keys.groups_of(node)
        keys = await self.redis.smembers(index)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.srem(text(key), node)
            pipe.delete(index)
            await pipe.execute()

    def _write(self, pair: tuple[str, str]) -> None:
        self._dirty.add(pair)
        self._batch.due()

    async def _flush(self) -> None:
        """What is dirty, in one pipeline; kept dirty if it failed."""
        batch, self._dirty = self._dirty, set()
        if not batch:
            return
        try:
            await self._pipeline(batch)
        except REDIS_ERRORS as exc:
            self._dirty |= batch  # with the next write, or ``restate``
            self.health.once("group-directory", "the group directory was not written: %r", exc)

    async def _pipeline(self, batch: set[tuple[str, str]]) -> None:
        index = self.keys.groups_of(self.node_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for app, group in sorted(batch):
                key = self.keys.group(app, group)
                if self._counts.get((app, group), 0) > 0:
                    pipe.sadd(key, MADE, self.node_id)
                    pipe.sadd(index, key)
                else:
                    pipe.srem(key, self.node_id)
            await pipe.execute()
