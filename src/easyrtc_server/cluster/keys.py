"""The names of a cluster's Redis keys and channels, in one place.

Every name starts with the cluster's name (``cluster_name``), so several clusters can share one
Redis. ``docs/cluster.md`` says what each holds.
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

    @property
    def log(self) -> str:
        """Stream: the ordered state changes every node applies."""
        return f"{self.cluster}:log"

    @property
    def snapshot(self) -> str:
        """String: the replicated state at a log id (``snapshot``), as orjson."""
        return f"{self.cluster}:snapshot"

    @property
    def snapshot_id(self) -> str:
        """String: the log id of the snapshot (the log is trimmed to the one before)."""
        return f"{self.cluster}:snapshot-id"

    @property
    def trimmed(self) -> str:
        """String: the newest log id the snapshots trimmed (a reader behind it missed some)."""
        return f"{self.cluster}:trimmed"

    @property
    def snapshot_lock(self) -> str:
        """String with a short TTL: the node writing the next snapshot."""
        return f"{self.cluster}:snapshot-lock"

    @property
    def epoch(self) -> str:
        """String: changes when Redis came back empty, telling every node to rebuild."""
        return f"{self.cluster}:epoch"

    @property
    def reaper(self) -> str:
        """String with a short TTL: the lock of the node announcing a dead node's end."""
        return f"{self.cluster}:reaper"

    @property
    def alive_pattern(self) -> str:
        return f"{self.cluster}:alive:*"

    def alive(self, node_id: str) -> str:
        """String with a TTL, refreshed while the node lives: its ``NodeInfo`` as JSON."""
        return f"{self.cluster}:alive:{node_id}"

    def inbox(self, node_id: str) -> str:
        """Pub/sub channel: relayed messages for the sockets of one node."""
        return f"{self.cluster}:node:{node_id}"
