"""The cluster-wide count of each room's members, for ``getRoomList`` (issue 23),
kept by the nodes of a partitioned cluster (``partitioned``).

A node of a partitioned cluster holds only the rooms whose partitions it reads, so the list
of an application's rooms comes from Redis: per application a hash ``room -> members``
(``keys.room_counts``), and per node a hash of what its own members add there
(``keys.room_counts_of``: ``field_of(app, room) -> n``, plus ``#``, the number of the node's
last batch). Each node counts only its own members (``joined``/``left``); the counts of a
dead node are taken back from its own hash (``reap``), so no count drifts when a node dies.

**Writes.** ``joined``/``left`` queue a +1/-1; a task (``run``) writes what one event-loop
pass queued, coalesced per room, as one ``FLUSH`` script changing the node's hash and the
applications' hashes together. A share never goes below 0 (a -1 of nothing changes nothing),
so an application's count is always the sum of the nodes' shares, and a field that reaches 0
is deleted (an application whose rooms are all empty has no hash). A batch that failed
(Redis away, failing over) is sent again as it was, with its number, after ``RETRY_DELAY``:
the script applies a number once, so a batch Redis took before the connection broke is not
counted twice; what is queued meanwhile waits and coalesces into the next batch.

**Reaping.** ``reap(node)`` takes a dead node's share back from every application and
deletes its hash, in one script, and leaves a mark (``keys.room_counts_gone``, kept
``GONE_TTL_MS``) that refuses the node's later batches: a node cut off and reaped while it
lived must not add its deltas to a share that is gone. Its ``RoomCounts`` then drops what it
queues (``reaped``) until it writes its whole share again (``restate``), which is also what a
node does when Redis came back empty (a new epoch). A second ``reap`` changes nothing.

**One slot.** A script's keys must share a slot on a Redis Cluster, and a reap touches the
node's hash and every application's it added to, so all of them are under the cluster's one
hash tag (``{cluster}:room-counts:...``): the room counts live on one master. That is a
few small writes per event-loop pass with joins or leaves (coalesced: a login storm is one
script per pass), and one ``HGETALL`` per ``getRoomList``. Tagging each application apart
would spread them, at the price of a reap in one script per application and a per-node set
of its applications (written before the counts), atomic per application instead of per node.

**Bounds.** A field exists only while a member is in the room: the application hashes hold
at most the rooms with members (``max_rooms_per_app`` each, ``max_apps`` of them), a node's
hash one field per room its own members are in (at most its connections times
``max_rooms_per_connection``), and names are as long as ``app_name_regexp`` and
``room_name_regexp`` allow. A client can add nothing the core did not admit first. Names are
arbitrary strings here: ``field_of`` prefixes the application's length, so no application or
room name (``:``, NUL, quotes, any Unicode, lone surrogates) can read as another pair.

**Rooms kept when empty** (server code's ``create_room``, or a room field it set) have no
member to count: they are listed from a second hash per application (``keys.kept_rooms``),
``room -> n`` where ``n`` is the number of the fact in the room's partition that last said
so, negated by the ``remove`` that deleted it (``kept``/``deleted``). A write whose number is
not above the one there changes nothing, so two nodes' writes about one room, in any order,
leave what its partition decided last. A deleted room's name stays (a few bytes per name server
code deleted), so that an older ``kept`` arriving late cannot list it again.

What this module must not know: the core, the partitions, which node is dead (its caller's
liveness says).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Final

from redis.commands.core import AsyncScript

from .keys import ClusterKeys
from .redisclient import REDIS_ERRORS, AsyncClient, text

RETRY_DELAY: Final = 0.2
"""Seconds between a failed batch and its retry."""
CLOSE_TIMEOUT: Final = 2.0
"""Seconds ``aclose`` waits for what is queued to be written."""
GONE_TTL_MS: Final = 24 * 3600 * 1000
"""How long a reaped node's late batches are refused (a node cut off longer than this is
expected to have restated its share, or to be gone for good)."""
REAP_TRIES: Final = 8
"""Times ``reap``/``restate`` read the node's applications anew when they changed between
the read and the script (only a living node's own writes change them)."""
BATCH_FIELD: Final = b"#"
"""The field of a node's hash holding the number of its last batch (a pair's field starts
with a digit)."""

_PRELUDE: Final = """
local function pair_of(field)
  local colon = string.find(field, ':', 1, true)
  local n = tonumber(string.sub(field, 1, colon - 1))
  return string.sub(field, colon + 1, colon + n), string.sub(field, colon + n + 1)
end
local function add(hash, room, change)
  local total = tonumber(redis.call('HGET', hash, room) or '0') + change
  if total > 0 then redis.call('HSET', hash, room, total) else redis.call('HDEL', hash, room) end
end
local hash_of = {}
for i = 3, #KEYS do hash_of[ARGV[i - 1]] = KEYS[i] end
local function withdraw(node)
  local fields = redis.call('HGETALL', node)
  for i = 1, #fields, 2 do
    if string.find(fields[i], '^%d') and not hash_of[(pair_of(fields[i]))] then return false end
  end
  for i = 1, #fields, 2 do
    if string.find(fields[i], '^%d') then
      local app, room = pair_of(fields[i])
      add(hash_of[app], room, -tonumber(fields[i + 1]))
    end
  end
  redis.call('DEL', node)
  return true
end
"""
"""Shared by the scripts. KEYS[1]: the node's hash, KEYS[2]: its gone mark, KEYS[3..]: the
applications' hashes, named by ARGV[2..#KEYS-1] (the applications, in the same order).
``withdraw`` takes the node's whole share back (false, changing nothing, when one of its
applications is not among KEYS)."""

FLUSH: Final = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local last = tonumber(redis.call('HGET', KEYS[1], '#') or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('HSET', KEYS[1], '#', ARGV[1])
for i = #KEYS, #ARGV, 3 do
  local app, room = pair_of(ARGV[i])
  local mine = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  local now = mine + tonumber(ARGV[i + 2])
  if now < 0 then now = 0 end
  if now > 0 then redis.call('HSET', KEYS[1], ARGV[i], now)
  else redis.call('HDEL', KEYS[1], ARGV[i]) end
  if now ~= mine then add(hash_of[app], room, now - mine) end
end
return 1
"""
)
"""ARGV[1]: the batch's number; from ARGV[#KEYS]: (field, room, delta) per room. Applies the
deltas to the node's share and the applications' counts, never below 0 (1); a batch whose
number was applied already changes nothing (0); a reaped node changes nothing (-1). The
room is in ARGV beside its field only for ``add``; ``pair_of`` gives the application."""

REAP: Final = (
    _PRELUDE
    + """
if not withdraw(KEYS[1]) then return -1 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'NX')
return 1
"""
)
"""ARGV[1]: how long the gone mark lasts (ms). The node's share taken back, its hash
deleted, the mark set (1); -1: an application of the node's is not among KEYS."""

RESTATE: Final = (
    _PRELUDE
    + """
if not withdraw(KEYS[1]) then return -1 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], '#', ARGV[1])
for i = #KEYS, #ARGV, 3 do
  local app, room = pair_of(ARGV[i])
  local n = tonumber(ARGV[i + 2])
  redis.call('HSET', KEYS[1], ARGV[i], n)
  add(hash_of[app], room, n)
end
return 1
"""
)
"""ARGV[1]: the batch's number; from ARGV[#KEYS]: (field, room, members > 0) per room. The
node's old share taken back and the new one written whole, its gone mark removed (1); -1 as
for ``REAP``."""


KEEP: Final = """
local now = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if math.abs(new) > math.abs(now) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""
"""KEYS[1]: an application's kept rooms; ARGV: the room, its fact's number (negative:
deleted). Written only past the number there."""


def _bytes(name: str) -> bytes:
    """A name as Redis keeps it: UTF-8, lone surrogates too (nothing a client sends crashes)."""
    return name.encode("utf-8", "surrogatepass")


def field_of(app: str, room: str) -> bytes:
    """A node's field for a room: the application's length in bytes, ``:``, the application,
    the room. Nothing in the names can make two pairs one field."""
    app_bytes = _bytes(app)
    return b"%d:%s%s" % (len(app_bytes), app_bytes, _bytes(room))


def app_of(field: bytes) -> bytes | None:
    """The application (as bytes) of a node's field; None for the batch number."""
    length, colon, rest = field.partition(b":")
    if not colon or not length.isdigit():
        return None
    return rest[: int(length)]


class RoomCounts:
    """This node's share of the room counts (``joined``/``left``, written by ``run``) and
    what every node reads of them (``rooms``) or does for a dead node (``reap``)."""

    def __init__(self, client: AsyncClient, keys: ClusterKeys, node_id: str) -> None:
        self.client = client
        self.keys = keys
        self.node_id = node_id
        self._flush = client.register_script(FLUSH)
        self._reap = client.register_script(REAP)
        self._restate = client.register_script(RESTATE)
        self._keep = client.register_script(KEEP)
        self._queue: dict[tuple[str, str], int] = {}
        self._due = asyncio.Event()
        self._batch = 0
        """The number of the last batch made (``FLUSH`` and ``RESTATE`` take each once)."""
        self._asked = 0
        """Changes asked so far (``joined``, ``left``)."""
        self._done = 0
        """Changes asked before the last batch written (or dropped, once reaped)."""
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._reaped = False
        self._generation = 0
        """Restates asked: a batch taken before the last one is dropped."""
        self._writing = asyncio.Lock()
        """Held while a batch or a restate is written: one at a time, in their order."""

    @property
    def reaped(self) -> bool:
        """This node's share was reaped (it was taken for dead): what it queues is dropped
        until it writes its whole share again (``restate``)."""
        return self._reaped

    def joined(self, app: str, room: str) -> None:
        """A member of this node entered ``room`` of ``app``."""
        self._change(app, room, 1)

    def left(self, app: str, room: str) -> None:
        """A member of this node left ``room`` of ``app``."""
        self._change(app, room, -1)

    def _change(self, app: str, room: str, delta: int) -> None:
        if self._closed:
            return
        self._asked += 1
        if self._reaped:
            self._written(self._asked)
            return
        key = (app, room)
        self._queue[key] = self._queue.get(key, 0) + delta
        self._due.set()

    async def flushed(self) -> None:
        """Wait until every change asked so far is written (or dropped: reaped, restated)."""
        target = self._asked
        if self._done >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await waiter

    async def run(self) -> None:
        """The writer's loop (its owner runs it as a task; ``aclose`` ends it)."""
        self._runner = asyncio.current_task()
        while True:
            await self._due.wait()
            await asyncio.sleep(0)  # one more loop pass: changes made in it join the batch
            self._due.clear()
            upto, generation = self._asked, self._generation
            queued, self._queue = self._queue, {}
            deltas = {key: delta for key, delta in queued.items() if delta}
            if deltas:
                async with self._writing:
                    await self._write(deltas, generation)
            self._written(upto)

    async def _write(self, deltas: dict[tuple[str, str], int], generation: int) -> None:
        """One batch, sent again as it was while Redis fails (new changes wait in the
        queue); dropped once a ``restate`` was asked after it was taken (it says it all)."""
        self._batch += 1
        keys, args = self._script_args(self.node_id, self._batch, deltas, ())
        while generation == self._generation:
            try:
                answer = await self._flush(keys=keys, args=args)
            except REDIS_ERRORS:
                await asyncio.sleep(RETRY_DELAY)
                continue
            if answer == -1 and generation == self._generation:
                self._queue.clear()
                self._reaped = True
            return

    async def aclose(self) -> None:
        """Write what is queued (within ``CLOSE_TIMEOUT``), then stop ``run``; later changes
        are ignored. The node's share stays until it is reaped, as a dead node's."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.flushed()
        except TimeoutError:
            pass
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            await asyncio.wait([runner])
        self._written(self._asked)  # nobody waits on what will not be written

    async def rooms(self, app: str) -> dict[str, int]:
        """The application's rooms with members and their numbers of members, cluster-wide,
        and its rooms kept when empty (0 when nobody is in them)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(_bytes(self.keys.room_counts(app)))
            pipe.hgetall(_bytes(self.keys.kept_rooms(app)))
            raw, kept = await pipe.execute()
        out: dict[str, int] = {}
        for room, count in raw.items():
            number = int(count)
            if number > 0:
                out[text(room)] = number
        for room, at in kept.items():
            if int(at) > 0:
                out.setdefault(text(room), 0)
        return out

    async def kept(self, app: str, room: str, seq: int) -> None:
        """``room`` is kept when empty since fact ``seq`` of its partition (listed even
        without members). Raises what Redis answered."""
        await self._keep(keys=[_bytes(self.keys.kept_rooms(app))], args=[_bytes(room), seq])

    async def deleted(self, app: str, room: str, seq: int) -> None:
        """``room`` was deleted by fact ``seq`` of its partition: no longer listed unless a
        later fact keeps it again. Raises what Redis answered."""
        await self._keep(keys=[_bytes(self.keys.kept_rooms(app))], args=[_bytes(room), -seq])

    async def reap(self, node_id: str) -> None:
        """Take a dead node's share back from every application's counts and delete its
        hash, in one step; its later batches are refused. Repeating it changes nothing."""
        await self._withdraw_and(self._reap, node_id, GONE_TTL_MS, {})

    async def restate(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace this node's whole share with ``counts`` (``(app, room) -> its members
        there``), in one step: after it was reaped while it lived, or Redis came back empty.
        What was queued before the call is dropped (``counts`` says it all), what is asked
        after it is written after it. Raises what Redis answered (then call it again)."""
        self._queue.clear()
        self._reaped = False
        self._generation += 1
        upto = self._asked
        pairs = {pair: n for pair, n in counts.items() if n > 0}
        async with self._writing:
            self._batch += 1
            await self._withdraw_and(self._restate, self.node_id, self._batch, pairs)
        self._written(upto)

    def _script_args(
        self, node_id: str, first: int, pairs: Mapping[tuple[str, str], int], also: Sequence[bytes]
    ) -> tuple[list[bytes], list[Any]]:
        """KEYS and ARGV as ``_PRELUDE`` reads them: the node's hash and gone mark, then one
        hash per application (those of ``pairs`` and ``also``); ARGV ``first``, the
        applications, then (field, room, n) per pair."""
        apps = dict.fromkeys([*also, *(_bytes(app) for app, _ in pairs)])
        keys = [
            _bytes(self.keys.room_counts_of(node_id)),
            _bytes(self.keys.room_counts_gone(node_id)),
            *(_bytes(self.keys.room_counts(text(app))) for app in apps),
        ]
        args: list[Any] = [first, *apps]
        for (app, room), n in pairs.items():
            args += [field_of(app, room), _bytes(room), n]
        return keys, args

    async def _withdraw_and(
        self, script: AsyncScript, node_id: str, first: int, pairs: Mapping[tuple[str, str], int]
    ) -> None:
        """Run a script that withdraws ``node_id``'s share, naming the applications it has
        in Redis; read again if they changed in between. Raises what Redis answered."""
        node_key = _bytes(self.keys.room_counts_of(node_id))
        for _ in range(REAP_TRIES):
            fields = await self.client.hkeys(node_key)
            apps = [app for field in fields if (app := app_of(_raw(field))) is not None]
            keys, args = self._script_args(node_id, first, pairs, apps)
            if await script(keys=keys, args=args) != -1:
                return
        raise RuntimeError(f"the room counts of node {node_id} kept changing")

    def _written(self, upto: int) -> None:
        self._done = max(self._done, upto)
        waiting = []
        for target, waiter in self._waiters:
            if target <= self._done:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._waiters = waiting


def _raw(field: bytes | str) -> bytes:
    return field if isinstance(field, bytes) else _bytes(field)
