"""The cluster's partition layout in Redis (``cluster/layoutmeta.py``), on a real Redis.

The first node of a partitioned cluster records its partitions and read groups; a node started
with the same values joins, one started with others is refused with a message saying both
(it would read and write other keys than its peers), and a record that is not a layout is
refused too, never overwritten and never a crash of another kind.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio
from redis.cluster import key_slot

from easyrtc_server.cluster.keys import ClusterKeys
from easyrtc_server.cluster.layoutmeta import LayoutMismatch, agree_on_layout
from easyrtc_server.cluster.redisclient import AsyncClient, SingleTopology
from easyrtc_server.options import Options
from support.redisserver import running_redis

pytestmark = pytest.mark.asyncio(loop_scope="module")

names = (f"layout{n}" for n in itertools.count())
"""A cluster name per test: the tests share their Redis."""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client() -> AsyncIterator[AsyncClient]:
    async with running_redis() as server:
        topology = SingleTopology(Options(redis_url=server.url))
        yield topology.client()
        await topology.client().aclose()


async def test_the_layout_key_is_the_clusters_and_shares_its_slot_on_a_redis_cluster() -> None:
    assert ClusterKeys("easyrtc").layout == "easyrtc:layout"
    tagged = ClusterKeys("easyrtc", hash_tags=True)
    assert tagged.layout == "{easyrtc}:layout"
    assert key_slot(tagged.layout.encode()) == key_slot(tagged.epoch.encode())


async def test_the_first_node_records_its_layout_and_the_same_values_agree(
    client: AsyncClient,
) -> None:
    key = ClusterKeys(next(names)).layout
    await agree_on_layout(client, key, 1024, 16)
    assert orjson.loads(await client.get(key)) == {"partitions": 1024, "groups": 16}
    await agree_on_layout(client, key, 1024, 16)  # a second node, or the first restarted
    assert orjson.loads(await client.get(key)) == {"partitions": 1024, "groups": 16}
    assert await client.ttl(key) == -1  # kept as long as the cluster's data


async def test_a_node_with_other_values_is_refused_saying_both(client: AsyncClient) -> None:
    key = ClusterKeys(next(names), hash_tags=True).layout
    await agree_on_layout(client, key, 1024, 16)
    with pytest.raises(LayoutMismatch) as refused:
        await agree_on_layout(client, key, 128, 16)
    assert str(refused.value) == (
        f"the cluster (layout record {key!r}) uses 1024 partitions in 16 read groups; this "
        "node was started with 128 in 16: start it with the cluster's values "
        "(cluster_partitions = 1024, cluster_read_groups = 16)"
    )
    with pytest.raises(LayoutMismatch, match=r"1024 partitions in 16 read groups; .* 1024 in 8"):
        await agree_on_layout(client, key, 1024, 8)
    assert orjson.loads(await client.get(key)) == {"partitions": 1024, "groups": 16}


async def test_of_nodes_starting_at_once_with_different_values_one_layout_wins(
    client: AsyncClient,
) -> None:
    key = ClusterKeys(next(names)).layout
    starts = [agree_on_layout(client, key, 64 * (1 + n % 2), 16) for n in range(8)]
    results = await asyncio.gather(*starts, return_exceptions=True)
    recorded = orjson.loads(await client.get(key))
    assert sum(isinstance(result, LayoutMismatch) for result in results) == 4
    for n, result in enumerate(results):
        if 64 * (1 + n % 2) == recorded["partitions"]:
            assert result is None
        else:
            assert isinstance(result, LayoutMismatch), result
            assert f"uses {recorded['partitions']} partitions in 16 read groups" in str(result)


@pytest.mark.parametrize(
    "junk",
    [
        b"not json",
        b"\xff\xfe\x00",
        b"[1024, 16]",
        b'"1024/16"',
        b"{}",
        b'{"partitions": 1024}',
        b'{"partitions": "1024", "groups": 16}',
        b'{"partitions": true, "groups": 16}',
        b'{"partitions": 0, "groups": 16}',
        b'{"partitions": 1024, "groups": 1.5}',
        b"x" * 10_000,
    ],
)
async def test_a_record_that_is_not_a_layout_is_refused_and_kept(
    client: AsyncClient, junk: bytes
) -> None:
    key = ClusterKeys(next(names)).layout
    await client.set(key, junk)
    with pytest.raises(LayoutMismatch) as refused:
        await agree_on_layout(client, key, 1024, 16)
    message = str(refused.value)
    assert f"the cluster's layout record {key!r} is not one" in message
    assert len(message) < 400 and "\n" not in message
    assert await client.get(key) == junk


async def test_a_key_of_another_kind_is_refused_and_kept(client: AsyncClient) -> None:
    key = ClusterKeys(next(names)).layout
    await client.hset(key, "partitions", 1024)
    with pytest.raises(LayoutMismatch, match="is not a string"):
        await agree_on_layout(client, key, 1024, 16)
    assert await client.hget(key, "partitions") == b"1024"
