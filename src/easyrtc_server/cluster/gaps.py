"""Noticing that a log reader missed entries: they were trimmed before it read them.

The log is trimmed at each snapshot (to the snapshot before, ``node``). A reader more than a
snapshot interval behind (a frozen process, a long pause) would read on after the trimmed part
as if nothing were missing, and its replica would silently differ from every other. So the
snapshot script records the newest id it trims (``{cluster}:trimmed``; ids only grow), and the
reader reads that mark in the same script as its entries (``READ``), atomically: the read
missed entries exactly when the mark is newer than the id it read from (``missed``). The node
then rebuilds its replica from the latest snapshot (``rebuild.Rebuilder.adopt``).

No I/O here: the scripts' text and the comparison of stream ids.
"""

from __future__ import annotations

from typing import Final

READ: Final = """
local trimmed = redis.call('GET', KEYS[2]) or '0-0'
return {trimmed, redis.call('XREAD', 'COUNT', ARGV[2], 'STREAMS', KEYS[1], ARGV[1])}
"""
"""KEYS: log, trimmed mark; ARGV: the id to read after, how many. Returns the mark and what
``XREAD`` returns (entries with their fields as flat lists), read in one step."""


TRIM_BEFORE: Final = """
local function older(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local function trim_before(stream, mark, old, retention)
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local upto = old
  local kept = (ms - tonumber(retention)) .. '-0'
  if older(kept, upto) then upto = kept end
  local last = redis.call('XREVRANGE', stream, '(' .. upto, '-', 'COUNT', 1)
  if #last > 0 then redis.call('SET', mark, last[1][1]) end
  redis.call('XTRIM', stream, 'MINID', upto)
end
"""
"""Lua for the snapshot scripts (the log's, ``node``; a partition's, ``partitionlog``):
``older(a, b)`` compares stream ids; ``trim_before(stream, mark, old, retention)`` trims
``stream`` to ``old`` (the snapshot before), or to ``retention`` ms ago by Redis's clock if
that is older, and records the newest id trimmed in ``mark`` (what ``missed`` reads)."""


def stream_id(raw: bytes | str) -> tuple[int, int]:
    """A stream id (``<ms>-<seq>``) as a comparable pair; ``(0, 0)`` for one that is not."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def missed(read_from: bytes | str, trimmed: bytes | str | None) -> bool:
    """A read after ``read_from`` missed entries: one newer than it was trimmed."""
    return trimmed is not None and stream_id(trimmed) > stream_id(read_from)
