"""Reaping on a Redis Cluster while a master that holds none of the cluster's keys is down.

Real processes: a Redis Cluster that keeps serving the slots it still has when one master and
its replica are both gone (``cluster-require-full-coverage no``), three nodes with a short
alive TTL (2 s, as ``test_failures``), real socket.io clients. The alive keys share the log's
slot (``keys.ClusterKeys``), so the liveness watch scans only the master serving it
(``Topology.keys_like``): a master down elsewhere, for good, does not stop a dead node from
being reaped. (A ``SCAN`` of every master failed on the dead one, every round, and nobody was
reaped until it came back.) The master killed serves neither the log's slot nor the inboxes
of the two nodes that stay (of three nodes, two always have their inboxes off one of the two
other masters).
"""

from __future__ import annotations

import asyncio
import time

from redis.cluster import key_slot

from easyrtc_server.cluster.keys import ClusterKeys
from support.nodes import running_nodes
from support.rediscluster import running_redis_cluster

from .test_failures import NODE_ENV, clients
from .test_redis_cluster import node_id_of


async def test_a_dead_node_is_reaped_while_a_master_without_the_cluster_keys_is_down() -> None:
    async with (
        running_redis_cluster(full_coverage=False) as redis,
        running_nodes(redis.url, 3, env=NODE_ENV) as nodes,
        clients() as join,
    ):
        members = [await join(node) for node in nodes]
        everyone = {m.id for m in members}
        await asyncio.gather(*(m.sees(everyone) for m in members))
        keys = ClusterKeys("test", hash_tags=True)
        log_master = await redis.master_of(key_slot(keys.log.encode()))
        inbox = [await redis.master_of(key_slot(keys.inbox(node_id_of(n)).encode())) for n in nodes]
        roles = await redis.roles()
        down, stay = next(
            (port, stay)
            for port, role in sorted(roles.items())
            if role == "master" and port != log_master
            for stay in [[i for i in range(3) if inbox[i] != port]]
            if len(stay) >= 2
        )
        dying = next(i for i in range(3) if i not in stay[:2])
        staying = [members[i] for i in stay[:2]]
        await redis.kill_shard(down)  # for good: nobody serves its slots any more

        killed = time.monotonic()
        await nodes[dying].kill()
        took = await asyncio.gather(*(m.sees({s.id for s in staying}) for m in staying))
        print(f"\nreaped {time.monotonic() - killed:.1f} s after the kill: {took}")
        assert any("is gone" in line for i in stay[:2] for line in nodes[i].lines)
        assert (await staying[0].send_to(staying[1], "after the reaping"))["msgData"]
