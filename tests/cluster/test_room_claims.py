"""Room-name claims (``cluster.roomclaims``, ``max_rooms_per_app`` in a partitioned cluster) on
real Redis: one Redis and a Redis Cluster of three masters (``support.rediscluster``).

A name claimed twice counts once; a claim that would count more names than the limit is refused
whole; the default room counts from the start; a name is freed only once every claim of it is
given back; a storm of concurrent claims is granted exactly up to the limit, in one pipeline;
the give-backs asked in a pass go with its claims, after them. ``RoomClaims.run`` runs as a
task, as its node runs it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
import pytest_asyncio

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.redisclient import AsyncClient
from easyrtc_server.cluster.roomclaims import RoomClaims

from .test_room_counts import Redis, redis, redis_cluster, single_redis

__all__ = ["redis", "redis_cluster", "single_redis"]  # the fixtures, shared with room counts

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOUND = 60.0
"""Seconds a test may wait for what it expects (a bound on a hang on a loaded machine)."""
APP = "app"

names = (f"claims{n}" for n in itertools.count())
"""A cluster name per test: the tests share their Redis."""


class CountingClient:
    """The Redis client, counting the pipelines made through it (one per batch)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.pipelines = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.pipelines += 1
        return self.client.pipeline(*args, **kwargs)


class Claimer:
    """A node's ``RoomClaims`` with its loop running, and what it holds in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.keys = ClusterKeys(next(names), hash_tags=redis.topology.hash_tags)
        self.client = CountingClient(redis.client)
        self.claims = RoomClaims(cast(AsyncClient, self.client), self.keys)
        self.task = asyncio.ensure_future(self.claims.run())

    async def claim(self, *wanted: str, limit: int, default: str | None = None) -> bool:
        async with asyncio.timeout(BOUND):
            return await self.claims.claim(APP, wanted, limit, default)

    async def given_back(self, *wanted: str) -> None:
        """Give ``wanted`` back and wait until Redis took it: a pass runs its claims, then
        its give-backs, so a claim asked once one asked with them was answered comes after."""
        self.claims.give_back(APP, wanted)
        await self.claims_barrier()
        await self.claims_barrier()

    async def claims_barrier(self) -> None:
        """A claim of another application asked now and answered: the pass before it ended."""
        async with asyncio.timeout(BOUND):
            assert await self.claims.claim("barrier", ["b"], 1, None)

    async def held(self) -> dict[str, int]:
        """The names counted, with their claims."""
        raw = await self.redis.client.hgetall(self.keys.room_names(APP))
        return {_text(name): int(n) for name, n in raw.items()}


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


@pytest_asyncio.fixture(loop_scope="module")
async def claimer_of() -> AsyncIterator[Callable[[Redis], Claimer]]:
    """Makes claimers; cancels their loops at the end."""
    made: list[Claimer] = []

    def make(redis: Redis) -> Claimer:
        made.append(Claimer(redis))
        return made[-1]

    yield make
    for claimer in made:
        claimer.task.cancel()
    await asyncio.gather(*(claimer.task for claimer in made), return_exceptions=True)


async def test_a_name_claimed_twice_counts_once(
    redis: Redis, claimer_of: Callable[[Redis], Claimer]
) -> None:
    node = claimer_of(redis)
    assert await node.claim("lobby", limit=2)
    assert await node.claim("lobby", limit=2), "a second join racing to create the same room"
    assert await node.claim("lobby", "lobby", limit=2), "a name twice in one claim"
    assert await node.claim("kitchen", limit=2)
    assert await node.held() == {"lobby": 3, "kitchen": 1}
    assert not await node.claim("attic", limit=2)
    assert await node.claim("lobby", "kitchen", limit=2), "no new name: nothing to refuse"


async def test_the_limit_refuses_a_claim_that_would_count_more_and_claims_nothing(
    redis: Redis, claimer_of: Callable[[Redis], Claimer]
) -> None:
    node = claimer_of(redis)
    assert await node.claim("a", limit=3)
    assert not await node.claim("b", "c", "d", limit=3)
    assert await node.held() == {"a": 1}, "a refused claim claims none of its names"
    assert not await node.claim("a", "b", "c", "d", limit=3), "one name known, three new"
    assert await node.held() == {"a": 1}
    assert await node.claim("a", "b", "c", limit=3)
    assert await node.held() == {"a": 2, "b": 1, "c": 1}
    assert not await node.claim("e", limit=3)


async def test_server_codes_claim_passes_the_limit_and_counts_against_the_next(
    redis: Redis, claimer_of: Callable[[Redis], Claimer]
) -> None:
    """``create_room`` (limit 0): one process creates the room past the limit; clients'
    creations then count it."""
    node = claimer_of(redis)
    assert await node.claim("a", "b", limit=2)
    assert await node.claim("stage", limit=0)
    assert await node.held() == {"a": 1, "b": 1, "stage": 1}
    assert not await node.claim("c", limit=3)


async def test_the_default_room_counts_from_the_start(
    redis: Redis, claimer_of: Callable[[Redis], Claimer]
) -> None:
    node = claimer_of(redis)
    assert not await node.claim("x", limit=1, default="default"), "the default room is one"
    assert await node.claim("default", limit=1, default="default"), "it is never refused"
    assert await node.claim("x", limit=2, default="default")
    assert not await node.claim("y", limit=2, default="default")
    assert await node.claim("default", "x", limit=2, default="default")
    assert await node.held() == {"x": 2}, "the default room is counted, never claimed"
    other = claimer_of(redis)  # without a default room, the limit is all names'
    assert await other.claim("x", "y", limit=2)


async def test_a_name_is_freed_when_every_claim_of_it_is_given_back(
    redis: Redis, claimer_of: Callable[[Redis], Claimer]
) -> None:
    node = claimer_of(redis)
    assert await node.claim("a", limit=2)
    assert await node.claim("a", limit=2)
    assert await node.claim("b", limit=2)
    await node.given_back("a")
    assert await node.held() == {"a": 1, "b": 1}
    assert not await node.claim("c", limit=2), "one claim of a is still held"
    await node.given_back("a")
    assert await node.held() == {"b": 1}
    assert await node.claim("c", limit=2)
    await node.given_back("b", "c")
    assert await node.held() == {}, "no name left: no junk in Redis"


async def test_fifty_concurrent_claims_of_distinct_names_get_exactly_the_limit(
    redis: Redis, claimer_of: Callable[[Redis], Claimer]
) -> None:
    node = claimer_of(redis)
    wanted = [f"room{n}" for n in range(50)]
    answers = await asyncio.gather(*(node.claim(name, limit=10) for name in wanted))
    granted = {name for name, ok in zip(wanted, answers, strict=True) if ok}
    assert len(granted) == 10
    assert await node.held() == dict.fromkeys(granted, 1)
    assert node.client.pipelines == 1, "a storm in one pass is one pipeline"

    with_default = claimer_of(redis)
    answers = await asyncio.gather(
        *(with_default.claim(name, limit=10, default="default") for name in wanted)
    )
    assert answers.count(True) == 9, "the default room is one of the ten"
    assert len(await with_default.held()) == 9


async def test_give_backs_go_with_the_claims_of_their_pass_after_them(
    redis: Redis, claimer_of: Callable[[Redis], Claimer]
) -> None:
    node = claimer_of(redis)
    first = [f"old{n}" for n in range(20)]
    assert await node.claim(*first, limit=20)
    before = node.client.pipelines
    node.claims.give_back(APP, first)  # the same pass: the claims first, then these
    answers = await asyncio.gather(*(node.claim(f"new{n}", limit=20) for n in range(20)))
    assert answers == [False] * 20, "the claims of a pass are answered before its give-backs"
    await node.claims_barrier()
    assert node.client.pipelines - before == 3, "claims, give-backs, then the barrier's claim"
    assert await node.held() == {}
    answers = await asyncio.gather(*(node.claim(f"new{n}", limit=20) for n in range(20)))
    assert answers == [True] * 20
