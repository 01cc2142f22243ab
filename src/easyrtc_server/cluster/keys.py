"""The names of a cluster's Redis keys and channels, in one place.

Every name starts with the cluster's name (``cluster_name``), so several clusters can share one
Redis. ``docs/cluster.md`` says what each holds.

On a Redis Cluster (``hash_tags``) the name is a hash tag, ``{cluster}:log``: every key lands in
one slot, so the Lua scripts that read and write several of them together run there; each node's
inbox channel is a tag of its own, ``{cluster:node:id}``, so the relays spread over the masters.
On one Redis or behind Sentinel the names stay untagged, as nodes of before name them: the
naming follows the Redis a cluster runs on, never the version of a node (``redisclient``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

_NODE_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
NODE_ID_LENGTH = 8


def new_node_id() -> str:
    """A fresh id for this process: a restarted node is a new node (its old one is reaped)."""
    return "".join(secrets.choice(_NODE_ID_ALPHABET) for _ in range(NODE_ID_LENGTH))


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    cluster: str
    hash_tags: bool = False
    """Names for a Redis Cluster: the keys share one slot, each inbox has its own."""

    @property
    def _prefix(self) -> str:
        return "{" + self.cluster + "}" if self.hash_tags else self.cluster

    @property
    def log(self) -> str:
        """Stream: the ordered state changes every node applies."""
        return f"{self._prefix}:log"

    @property
    def snapshot(self) -> str:
        """String: the replicated state at a log id (``snapshot``), as orjson."""
        return f"{self._prefix}:snapshot"

    @property
    def snapshot_id(self) -> str:
        """String: the log id of the snapshot (the log is trimmed to the one before)."""
        return f"{self._prefix}:snapshot-id"

    @property
    def trimmed(self) -> str:
        """String: the newest log id the snapshots trimmed (a reader behind it missed some)."""
        return f"{self._prefix}:trimmed"

    @property
    def snapshot_lock(self) -> str:
        """String with a short TTL: the node writing the next snapshot."""
        return f"{self._prefix}:snapshot-lock"

    @property
    def epoch(self) -> str:
        """String: changes when Redis came back empty, telling every node to rebuild."""
        return f"{self._prefix}:epoch"

    @property
    def reaper(self) -> str:
        """String with a short TTL: the lock of the node announcing a dead node's end."""
        return f"{self._prefix}:reaper"

    @property
    def alive_pattern(self) -> str:
        return f"{self._prefix}:alive:*"

    def alive(self, node_id: str) -> str:
        """String with a TTL, refreshed while the node lives: its ``NodeInfo`` as JSON."""
        return f"{self._prefix}:alive:{node_id}"

    def inbox(self, node_id: str) -> str:
        """Pub/sub channel: relayed messages for the sockets of one node."""
        if self.hash_tags:
            return "{" + f"{self.cluster}:node:{node_id}" + "}"
        return f"{self.cluster}:node:{node_id}"
