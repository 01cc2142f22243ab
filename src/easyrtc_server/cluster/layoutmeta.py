"""The cluster's partition layout, recorded in Redis so that its nodes agree on it (issue 23).

A partitioned cluster's N partitions and G read groups name its keys (a room's partition is
its hash mod N, a partition's hash tag is its group's), so two nodes started with different
values would write the same room to different logs, each blind to the other's. The first node
records its values (``ClusterKeys.layout``, orjson ``{"partitions": N, "groups": G}``, with
``SET NX``: of two nodes starting at once, one writes and the other reads what it wrote);
every later node reads the record and refuses to start unless its values are the same. The
record has no TTL: it lives as long as the cluster's data (a Redis that comes back empty loses
it with the partitions, and the next node to agree records its values again).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from redis.exceptions import ResponseError

from .redisclient import AsyncClient

TRIES: Final = 3
"""Rounds of ``SET NX`` then ``GET``: a record deleted between the two (a flushed Redis) is
written again by the next round; one deleted every time is someone else's doing."""
SHOWN: Final = 80
"""Characters of an unreadable record quoted in the error (escaped by ``repr``)."""


class LayoutMismatch(ValueError):
    """This node's partition layout is not the cluster's (or the cluster's record is not one):
    the node must not start, since it would read and write other keys than its peers."""


async def agree_on_layout(client: AsyncClient, key: str, partitions: int, groups: int) -> None:
    """Record ``partitions`` and ``groups`` as the cluster's layout at ``key`` unless a record
    is there, then check that the record holds the same: LayoutMismatch saying both if not, or
    if the record cannot be read as a layout. Redis errors are the caller's (as any command's)."""
    mine = orjson.dumps({"partitions": partitions, "groups": groups})
    for _ in range(TRIES):
        if await client.set(key, mine, nx=True):
            return
        try:
            found = await client.get(key)
        except ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise  # Redis unwell, not the record: the caller's, as any command's error
            raise LayoutMismatch(
                f"the cluster's layout record {key!r} is not a string ({exc}): delete it only "
                "if no node of the cluster runs"
            ) from None
        if found is not None:
            recorded = _layout(key, found)
            if recorded != (partitions, groups):
                raise LayoutMismatch(
                    f"the cluster (layout record {key!r}) uses {recorded[0]} partitions in "
                    f"{recorded[1]} read groups; this node was started with {partitions} in "
                    f"{groups}: start it with the cluster's values (cluster_partitions = "
                    f"{recorded[0]}, cluster_read_groups = {recorded[1]})"
                )
            return
    raise LayoutMismatch(
        f"the cluster's layout record {key!r} vanished {TRIES} times between being found and "
        "being read: something keeps deleting it"
    )


def _layout(key: str, found: Any) -> tuple[int, int]:
    """``(partitions, groups)`` of a record, or LayoutMismatch naming what is wrong with it.
    Fields beyond the two are let be (a later version may add some)."""
    try:
        record = orjson.loads(found)
    except (orjson.JSONDecodeError, TypeError):
        record = None
    if isinstance(record, dict):
        partitions, groups = record.get("partitions"), record.get("groups")
        if isinstance(partitions, int) and isinstance(groups, int) and _count(partitions, groups):
            return partitions, groups
    shown = found[:SHOWN] if isinstance(found, bytes | str) else found
    raise LayoutMismatch(
        f"the cluster's layout record {key!r} is not one ({shown!r}): expected "
        '{"partitions": N, "groups": G}. Delete it only if no node of the cluster runs'
    )


def _count(*values: int) -> bool:
    """Whether each is a count (orjson reads ``true`` as a bool, which is an int)."""
    return all(not isinstance(value, bool) and value > 0 for value in values)
