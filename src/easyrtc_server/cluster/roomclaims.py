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
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Final

from .keys import ClusterKeys
from .redisclient import AsyncClient

CLAIM: Final = """
local new = 0
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
if new > 0 then
  local have = redis.call('HLEN', KEYS[1])
  if ARGV[2] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then have = have + 1 end
  if have + new > tonumber(ARGV[1]) then return 0 end
end
for i = 3, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
return 1
"""
"""Claim ``ARGV[3..]`` (distinct, not the default room ``ARGV[2]``) under the limit
``ARGV[1]``: 1, or 0 when the names counted would be too many (nothing claimed)."""

GIVE_BACK: Final = """
for i = 1, #ARGV do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
"""


class RoomClaims:
    """Claims of room names, per application (``ClusterKeys.room_names``)."""

    def __init__(self, client: AsyncClient, keys: ClusterKeys) -> None:
        self.keys = keys
        self._claim = client.register_script(CLAIM)
        self._give_back = client.register_script(GIVE_BACK)
        self._pending: set[asyncio.Future[object]] = set()

    async def claim(
        self, app: str, names: Iterable[str], limit: int, default_room: str | None
    ) -> bool:
        """Claim ``names`` of ``app``: False when that would count more than ``limit`` room
        names (nothing is claimed then). Raises what Redis answered."""
        wanted = [name for name in dict.fromkeys(names) if name != default_room]
        if not wanted:
            return True
        args: list[str | int] = [limit, default_room or "", *wanted]
        return bool(await self._claim(keys=[self.keys.room_names(app)], args=args))

    def give_back(self, app: str, names: Iterable[str]) -> None:
        """Give claims back (in the background; a failure leaves them counted)."""
        names = list(names)
        if not names:
            return
        task = asyncio.ensure_future(self._give_back(keys=[self.keys.room_names(app)], args=names))
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled():
            task.exception()  # counted too many until the application's hash goes

    async def settled(self) -> None:
        """Every give-back started so far has ended."""
        if self._pending:
            await asyncio.wait(list(self._pending))
