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
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

_NODE_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
NODE_ID_LENGTH = 8
TAG_TRIES = 16
"""Suffixes tried per read group and group of the layout (``group_tag``)."""


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
    def layout(self) -> str:
        """String: the partition layout every node of a partitioned cluster must share,
        ``{"partitions": N, "groups": G}`` (``layoutmeta``); the first node writes it."""
        return f"{self._prefix}:layout"

    @property
    def alive_pattern(self) -> str:
        return f"{self._prefix}:alive:*"

    def departed(self, node_id: str) -> str:
        """Hash with a short TTL: a dead node's connections whose ``disconnect`` hook a reaper
        of a partitioned cluster has claimed (``HSETNX``: it runs once in the cluster)."""
        return f"{self._prefix}:departed:{node_id}"

    @property
    def nodes(self) -> str:
        """Set: the ids of the nodes that announced themselves and were not forgotten since
        (``registry.NodeRegistry.alive_nodes``: their alive keys say which live)."""
        return f"{self._prefix}:nodes"

    def alive(self, node_id: str) -> str:
        """String with a TTL, refreshed while the node lives: its ``NodeInfo`` as JSON."""
        return f"{self._prefix}:alive:{node_id}"

    def partition(self, partition: int, group: int, groups: int) -> PartitionKeys:
        """The keys of one partition log (``partitionlog``), in read group ``group`` of
        ``groups``. On a Redis Cluster the partitions of a group share one hash tag, so one
        ``XREAD`` and each partition's scripts touch one slot, and the groups' tags are
        chosen so that their slots are evenly spaced over the 16,384 (``group_tag``): a
        cluster whose masters serve equal contiguous ranges, as ``redis-cli --cluster create``
        makes them, gets the groups evenly. Untagged on one Redis or Sentinel."""
        if self.hash_tags:
            tag: str | None = "{" + group_tag(self.cluster, group, groups) + "}"
            base = f"{tag}:p{partition}"
        else:
            tag, base = None, f"{self.cluster}:p{partition}"
        return PartitionKeys(
            partition=partition,
            tag=tag,
            stream=f"{base}:log",
            snapshot=f"{base}:snapshot",
            trimmed=f"{base}:trimmed",
            seq=f"{base}:seq",
            snapshot_lock=f"{base}:snapshot-lock",
            feed=f"{base}:feed",
        )

    def room_counts(self, app: str) -> str:
        """Hash: an application's rooms with members, each with its number of members
        cluster-wide (``roomcounts``). Under the cluster's one tag, with the nodes' shares."""
        return f"{self._prefix}:room-counts:app:{app}"

    def room_counts_of(self, node_id: str) -> str:
        """Hash: what one node's members add to ``room_counts`` (``roomcounts``), and the
        number of the node's last batch written there."""
        return f"{self._prefix}:room-counts:node:{node_id}"

    def room_counts_gone(self, node_id: str) -> str:
        """String with a TTL: the node's share was reaped; its late batches are refused."""
        return f"{self._prefix}:room-counts:gone:{node_id}"

    def kept_rooms(self, app: str) -> str:
        """Hash: an application's rooms kept when empty (server code created them or set
        their fields), each with the number of its partition's fact that last said so,
        negative once deleted (``roomcounts``)."""
        return f"{self._prefix}:room-counts:kept:{app}"

    def room_names(self, app: str) -> str:
        """Hash: the room names an application counts against ``max_rooms_per_app`` in a
        partitioned cluster, each with its claims (``roomclaims``)."""
        return f"{self._prefix}:room-names:{app}"

    def hold(self, name: str) -> str:
        """String with a TTL (the grace): the node holding a dropped keyed connection in a
        partitioned cluster, by a digest of its resume key's digest (``partitionholds``)."""
        return f"{self._prefix}:hold:{name}"

    def wills(self, node_id: str) -> str:
        """Hash: what another node needs to hold each keyed connection of node ``node_id`` if
        it dies, by hold name (a partitioned cluster's ``partitionwills``)."""
        return f"{self._prefix}:wills:{node_id}"

    def adopting(self, node_id: str) -> str:
        """Set (TTL): the nodes adopting a dead node's keyed connections now; its
        ``node-gone`` waits until they are in their rooms again (``partitionwills``)."""
        return f"{self._prefix}:adopting:{node_id}"

    def group(self, app: str, group: str) -> str:
        """Set: the nodes with members of an application's group in a partitioned cluster,
        and ``""`` once the group was ever made (``groupdirectory``). The application's name
        goes with its length, so no two (application, group) pairs share a key."""
        return f"{self._prefix}:group:{len(app)}:{app}:{group}"

    def groups_of(self, node_id: str) -> str:
        """Set: the ``group`` keys naming node ``node_id`` (a reaper takes it out of them)."""
        return f"{self._prefix}:groups-of:{node_id}"

    def session(self, name: str) -> str:
        """Hash with a TTL: the fields server code set on an EasyRTC session (``easyrtcsid``) in
        a partitioned cluster, by a digest of its application and easyrtcsid (``clusterchanges``;
        a login on any node reads them)."""
        return f"{self._prefix}:session:{name}"

    @property
    def apps(self) -> str:
        """Hash: the applications server code created or gave fields in a partitioned cluster,
        each with the options it created it with, as orjson (``clusterchanges``)."""
        return f"{self._prefix}:apps"

    def app_fields(self, app: str) -> str:
        """Hash: the fields server code set on an application in a partitioned cluster, each
        ``[value, shared]`` as orjson (``clusterchanges``)."""
        return f"{self._prefix}:app-fields:{app}"

    def inbox(self, node_id: str) -> str:
        """Pub/sub channel: relayed messages for the sockets of one node."""
        if self.hash_tags:
            return "{" + f"{self.cluster}:node:{node_id}" + "}"
        return f"{self.cluster}:node:{node_id}"

    def queries(self, node_id: str) -> str:
        """Pub/sub channel: questions to one node and answers to its questions about the
        whole cluster (``clusterqueries``); beside its inbox (one master on a Redis
        Cluster)."""
        return self.inbox(node_id) + ":queries"


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """One partition log's keys; all in one slot on a Redis Cluster."""

    partition: int
    tag: str | None
    """The hash tag the partition shares with the others of its read group (None: untagged,
    every partition may be read in one ``XREAD``)."""
    stream: str
    """Stream: the partition's facts, each with its sequence number."""
    snapshot: str
    """Hash: the partition's state (``doc``) after the entry ``id``, number ``seq``."""
    trimmed: str
    """String: the newest stream id a snapshot trimmed."""
    seq: str
    """String: the sequence number of the partition's last entry (``INCR`` per append)."""
    snapshot_lock: str
    """String with a short TTL: the node writing the partition's next snapshot."""
    feed: str
    """Pub/sub channel: the partition's facts as appended, for its readers
    (``partitionfeed``; one Redis or Sentinel)."""


@cache
def group_tag(cluster: str, group: int, groups: int) -> str:
    """The hash tag of read group ``group`` of ``groups``: ``CLUSTER:gGROUP`` with the suffix
    (``.n``, the first ``TAG_TRIES * groups`` tried) whose slot is nearest the middle of
    the group's share of the slot range, ``(group + 1/2) * 16384 / groups``: evenly spaced
    points, so masters serving equal contiguous ranges get as many groups give or take one.
    Once per process and group (a few hundred ``crc16`` for 16 groups)."""
    middle = (2 * group + 1) * REDIS_CLUSTER_HASH_SLOTS // (2 * groups)
    base = f"{cluster}:g{group}"
    best, distance = base, abs(key_slot(base.encode()) - middle)
    for n in range(1, TAG_TRIES * groups):
        tag = f"{base}.{n}"
        if (far := abs(key_slot(tag.encode()) - middle)) < distance:
            best, distance = tag, far
    return best
