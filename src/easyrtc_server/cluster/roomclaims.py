"""``max_rooms_per_app`` in a partitioned cluster: room names claimed in Redis (issue 23).

An application's rooms live in many partitions, so no partition can count them. A join that
may create rooms first claims their names here, in one script: each name is counted once
however many joins claim it at the same time (they race to create the same room), and the
claim is refused when the names counted would be more than the limit (the default room is
counted from the start, as the core counts it). Each claim is given back once its join ended,
except the one of the join that created the room (``partition.Granted.creates``): that one is
the room's, given back by the node whose fact removed the room.

One round trip per creating join, no fact in any log: the census of ``partition`` (a
partition per application, every creation passing through it twice) cost a storm of logins
into new rooms four facts and two more waits per join. What it does not cover: a node dying
between its claim and giving it back, or after removing a room and before giving its claim
back, leaves a name counted until the application's hash goes (counted too many, never too
few: a join may be refused ``too_many`` a little early).

Server code's ``create_room`` claims its room's name the same way, past the limit as one
process creates it (``partitioned.PartitionedNode.create_room``): kept by the room if its
``keep`` fact made it, else given back; ``delete_room`` gives it back with the room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

from .keys import ClusterKeys
from .luascript import LuaScript
from .redisclient import REDIS_ERRORS, AsyncClient

CLAIM: Final = """
local new = 0
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
if new > 0 and tonumber(ARGV[1]) > 0 then
  local have = redis.call('HLEN', KEYS[1])
  if ARGV[2] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then have = have + 1 end
  if have + new > tonumber(ARGV[1]) then return 0 end
end
for i = 3, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
return 1
"""
"""Claim ``ARGV[3..]`` (distinct, not the default room ``ARGV[2]``) under the limit
``ARGV[1]`` (0: none): 1, or 0 when the names counted would be too many (nothing claimed)."""

GIVE_BACK: Final = """
for i = 1, #ARGV do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
"""


class RoomClaims:
    """Claims of room names, per application (``ClusterKeys.room_names``). The claims and
    give-backs asked in one event-loop pass go in one pipeline each (its owner runs ``run``):
    a storm of logins into new rooms holds one connection, not one per login."""

    def __init__(self, client: AsyncClient, keys: ClusterKeys) -> None:
        self.keys = keys
        self._claim = LuaScript(client, CLAIM)
        self._give_back = LuaScript(client, GIVE_BACK)
        self._claims: list[tuple[list[str], list[str | int], asyncio.Future[Any]]] = []
        self._backs: list[tuple[list[str], list[str | int]]] = []
        self._due = asyncio.Event()
        self._sending = False
        self._sent = asyncio.Event()
        """Set (and replaced) after each pass is sent."""
        self.lost = 0
        """Give-backs Redis did not take (their names stay counted)."""

    async def claim(
        self, app: str, names: Iterable[str], limit: int, default_room: str | None
    ) -> bool:
        """Claim ``names`` of ``app``: False when that would count more than ``limit`` room
        names (nothing is claimed then; ``limit`` 0: server code's ``create_room``, which one
        process does not refuse either). Raises what Redis answered."""
        wanted = [name for name in dict.fromkeys(names) if name != default_room]
        if not wanted:
            return True
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        args: list[str | int] = [limit, default_room or "", *wanted]
        self._claims.append(([self.keys.room_names(app)], args, answered))
        self._due.set()
        return bool(await answered)

    def give_back(self, app: str, names: Iterable[str]) -> None:
        """Give claims back (with the next pipeline)."""
        args: list[str | int] = list(names)
        if args:
            self._backs.append(([self.keys.room_names(app)], args))
            self._due.set()

    async def flushed(self) -> None:
        """Every claim and give-back asked so far has been sent (and answered)."""
        while self._claims or self._backs or self._sending:
            await self._sent.wait()

    async def run(self) -> None:
        """The claims' loop (the owner runs it as a task and cancels it)."""
        while True:
            await self._due.wait()
            await asyncio.sleep(0)  # one more loop pass: what is asked in it joins the batch
            self._due.clear()
            claims, self._claims = self._claims, []
            backs, self._backs = self._backs, []
            self._sending = True
            try:
                await self._send(claims, backs)
            finally:
                self._sending = False
                self._sent.set()
                self._sent = asyncio.Event()

    async def _send(
        self,
        claims: list[tuple[list[str], list[str | int], asyncio.Future[Any]]],
        backs: list[tuple[list[str], list[str | int]]],
    ) -> None:
        if claims:
            try:
                replies = await self._claim.run_all([(k, a) for k, a, _ in claims])
            except REDIS_ERRORS as exc:
                replies = [exc] * len(claims)
            for (_, _, answered), reply in zip(claims, replies, strict=True):
                if answered.done():
                    continue
                if isinstance(reply, BaseException):
                    answered.set_exception(reply)
                else:
                    answered.set_result(reply)
        if backs:
            try:
                replies = await self._give_back.run_all(backs)
            except REDIS_ERRORS as exc:
                replies = [exc]
            self.lost += sum(1 for reply in replies if isinstance(reply, BaseException))
