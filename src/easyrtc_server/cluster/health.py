"""How a node's readers are doing: what ``/readyz`` and ``/metrics`` say about them.

The tasks that read the cluster's log, its inboxes and its snapshot never stop on what they
read: an entry they cannot use is logged (once per kind of failure, then counted) and skipped.
This module keeps the counts and the reader's progress, and turns them into a readiness reason
("the cluster log reader is behind") and Prometheus counters. It does no I/O and knows nothing
of Redis or the protocol.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .ordering import Lates

log = logging.getLogger("easyrtc_server.cluster")

BEHIND_AFTER: Final = 5.0
"""Seconds the log reader may go without reaching the log's end before the node is not ready."""


class ReaderHealth:
    """The log reader's progress, and what the node's readers skipped or dropped."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.caught_up_at = clock()
        """When the log reader last read everything there was."""
        self.broken: str | None = None
        """Why the log reader is not reading (None while it is)."""
        self.skipped_entries = 0
        """Log entries (or snapshot parts) that could not be applied."""
        self.snapshot_failures = 0
        """Snapshots that could not be written or read."""
        self.inbox_drops = 0
        """Relayed messages to or from other nodes that could not be published or delivered."""
        self.busy_refusals = 0
        """Client state changes refused because too many entries were waiting."""
        self.log_gaps = 0
        """Times the log reader found it had missed trimmed entries (and rebuilt from the
        snapshot)."""
        self.older_redis = 0
        """Times this node found Redis back with an older dataset (its log lacking entries
        this node applied) and started a new epoch (``liveness``)."""
        self.order = Lates()
        """Waits for another node's order that ran out (``ordering``; the node's own)."""
        self._logged: set[str] = set()

    def caught_up(self) -> None:
        self.caught_up_at = self.clock()
        self.broken = None

    def failing(self, why: str) -> None:
        self.broken = why

    def once(self, what: str, msg: str, *args: object) -> None:
        """Log a failure the first time this kind (``what``) happens; later ones are counted."""
        if what in self._logged:
            return
        self._logged.add(what)
        log.error(msg + " (further ones are only counted in /metrics)", *args)

    def reason(self) -> str | None:
        """Why this node should not take logins now, as ``/readyz`` shows it (None: fine)."""
        if self.broken is not None:
            return f"cluster log reader: {self.broken}"
        behind = self.clock() - self.caught_up_at
        if behind > BEHIND_AFTER:
            return f"cluster log reader is {behind:.0f} s behind"
        return None


class HealthCollector(Collector):
    """The counts of ``ReaderHealth`` as Prometheus metrics, read at scrape time."""

    def __init__(self, health: ReaderHealth) -> None:
        self.health = health

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        h = self.health
        yield CounterMetricFamily(
            "easyrtc_cluster_skipped_entries",
            "Cluster log entries this node could not apply and skipped.",
            value=h.skipped_entries,
        )
        yield CounterMetricFamily(
            "easyrtc_cluster_snapshot_failures",
            "Snapshots of the cluster state this node could not write or load.",
            value=h.snapshot_failures,
        )
        yield CounterMetricFamily(
            "easyrtc_cluster_inbox_drops",
            "Relayed messages to or from other nodes dropped (not publishable or deliverable).",
            value=h.inbox_drops,
        )
        yield CounterMetricFamily(
            "easyrtc_cluster_busy_refusals",
            "Client state changes refused as busy: too many log entries waiting to be applied.",
            value=h.busy_refusals,
        )
        yield CounterMetricFamily(
            "easyrtc_cluster_log_gaps",
            "Times this node's log reader missed trimmed entries and rebuilt from the snapshot.",
            value=h.log_gaps,
        )
        yield CounterMetricFamily(
            "easyrtc_cluster_older_redis",
            "Times this node found Redis back with an older dataset (a stale dump, a "
            "failover): its log lacking entries this node applied (every node rebuilds), or, "
            "partitioned, partitions lacking its facts (it puts its connections right there).",
            value=h.older_redis,
        )
        order = CounterMetricFamily(
            "easyrtc_cluster_order_timeouts",
            "Relays delivered before the log entries their node appended first, and log "
            "entries applied before the relays their node sent first, after cluster_order_wait.",
            labels=["waiting"],
        )
        order.add_metric(["relay"], h.order.relays)
        order.add_metric(["entry"], h.order.entries)
        yield order
        yield GaugeMetricFamily(
            "easyrtc_cluster_log_lag_seconds",
            "Seconds since this node's log reader last reached the end of the log.",
            value=max(0.0, h.clock() - h.caught_up_at),
        )
