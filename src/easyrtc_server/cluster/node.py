"""This process as a node of a cluster: its id, its Redis connection, its place in the registry.

Created by ``app.create_app`` when ``redis_url`` is set, started with the application and stopped
with it. What the node does with the cluster's state (the log of changes, relays to other nodes,
reaping dead nodes) builds on this; see ``docs/cluster.md``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from .keys import ClusterKeys, new_node_id
from .registry import NodeInfo, NodeRegistry

if TYPE_CHECKING:
    from ..options import Options
    from ..server import EasyRtcServer

log = logging.getLogger("easyrtc_server.cluster")


class ClusterNode:
    """One node of the cluster named by ``options.cluster_name``, on ``options.redis_url``."""

    def __init__(
        self, server: EasyRtcServer, options: Options, *, node_id: str | None = None
    ) -> None:
        if options.redis_url is None:
            raise ValueError("a cluster node needs redis_url")
        self.server = server
        self.options = options
        self.node_id = node_id or new_node_id()
        self.keys = ClusterKeys(options.cluster_name)
        self.redis: Redis = Redis.from_url(options.redis_url)
        self.registry = NodeRegistry(
            self.redis, self.keys, NodeInfo(self.node_id), ttl=options.cluster_alive_ttl
        )

    @property
    def role(self) -> str:
        """How the start-up line describes this process."""
        return f"as node {self.node_id} of cluster {self.options.cluster_name}"

    async def start(self) -> None:
        await self.registry.start()
        log.info("cluster node %s of %r started", self.node_id, self.options.cluster_name)

    async def stop(self) -> None:
        await self.registry.stop()
        await self.redis.aclose()
