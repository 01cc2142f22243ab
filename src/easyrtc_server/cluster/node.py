"""This process as a node of a cluster: its replica of the state, the log reader, its inbox.

The server's engine (``engine.Engine``) when ``redis_url`` is set (``hosting.engine_for``), started
and stopped with the application. The server hands every change to it:

- a client event that changes state (``core.changes_state``) is checked here first, by the
  core's own rules (``Core.check``): a refused one is answered here and never reaches Redis;
  else what the core reads of it (never the raw payload, never a login's credential, at most
  ``cluster_max_entry_size`` bytes) is appended to the log (``XADD``). The credential stays on
  this node: its reader gives it back to the login it applies for its own client, for the
  hooks. This node's reader applies the entry like every other node's, delivers the pushes to
  this node's sockets and the reply to the client, and hands the result back. When the core asks a
  decision, the server's hooks answer it here, on the client's node, and the answer record is
  appended in turn; every other event is this node's core's alone;
- a push to a socket on another node goes to that node's inbox (``inbox``), and arrives there
  through that node's server's ``deliver`` like any other push; there a relay waits for the
  entries its node appended before it, and an entry for the relays its node sent before it
  (``ordering``), so each node's order holds across both paths;
- server code's changes (``control``) are appended as ``control`` entries.

The reader applies the log in order, one entry at a time: ``XREAD BLOCK`` from the last id
applied. At start the node loads the latest snapshot (``snapshot``), if any, and applies the
log from there before it serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..engine import Carrier, EngineUnavailable, Pending, Step
from ..protocol.auth import credential_of
from ..protocol.core import changes_state
from ..protocol.decisions import Answer, Decision, LoginRequested
from ..protocol.delivery import RELAYED, RETRANSMIT_MS, STAMP, Ledger
from ..protocol.errors import ErrorCode
from ..protocol.outcome import Fanout, Outcome, Push, Reply, Send, pushes_to, refusal
from . import gaps, snapshot
from . import log as entries
from .health import ReaderHealth
from .inbox import Inbox, Item
from .keys import ClusterKeys, new_node_id
from .links import DirectLinks, Dropped, Outbound
from .liveness import Liveness
from .log import ANSWER, EXPIRE, FIELD, HOLD, NODE_GONE, RECV, LogEntry, LogFormatError
from .ordering import Arrivals, Stamps
from .pulse import Pulse, wait_until
from .rebuild import Rebuilder, full_lists
from .redisclient import REDIS_ERRORS, AsyncClient, topology_of
from .registry import NodeInfo, NodeRegistry
from .replica import Applied, Replica
from .secret import secret_of

if TYPE_CHECKING:
    from ..directory import Directory, LocalDirectory
    from ..options import Options
    from ..protocol.model import Peer
    from ..transport import Ack

log = logging.getLogger("easyrtc_server.cluster")

APPEND_LEAST: Final = 2.0
"""Seconds an event waits at least for Redis to take its entry; beyond, it waits while Redis
answers this node, and is refused (unavailable) once Redis has been silent for an alive TTL
(``pulse``)."""
APPLY_STALL: Final = 10.0
"""Seconds this node's reader may apply nothing, once an event's entry is written, before the
event is refused (behind). A reader that applies entries is behind a storm, not stuck: the
event waits its turn; the admission bound (``cluster_max_pending_appends``) bounds the turns."""
READ_COUNT: Final = 512
"""Entries read per ``XREAD``."""
READ_BLOCK_MS: Final = 1000
APPLY_SLICE: Final = 64
"""Entries applied between two hand-overs of the event loop to the node's other tasks."""
RETRY_DELAY: Final = 0.5
STOP_STEP_TIMEOUT: Final = 2.0
"""Seconds each step of leaving the cluster may take."""
EXPIRY_MIN_DELAY: Final = 0.2
"""Seconds at least between two looks for holds past their grace (clocks may differ)."""
BUSY_TEXT: Final = "Server busy, try again shortly."
"""The ``errorText`` of a state change refused because this node has too many waiting
(``cluster_max_pending_appends``)."""
RESUMING_WAIT: Final = 5.0
"""Seconds at most that relays for a connection a login of this node resumes wait for it
(then the login failed, or resumed nothing: they go where the connection is)."""
SNAPSHOT_LOCK_MS: Final = 250
"""At most one node dumps the state per this many ms (the others would dump the same)."""

_WRITE_SNAPSHOT: Final = (
    gaps.TRIM_BEFORE
    + """
local old = redis.call('GET', KEYS[2])
if old and not older(old, ARGV[1]) then return false end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
if old then trim_before(KEYS[3], KEYS[4], old, ARGV[3]) end
return old or ''
"""
)
"""Write a snapshot unless a newer one is there, and trim the log to the snapshot before, or
to ``ARGV[3]`` ms ago by Redis's clock if that is older (``cluster_log_retention``): a node
still reading after that loses nothing; one further behind learns it missed entries from the
newest id trimmed, recorded with the trim (``gaps``)."""


class ClusterUnavailable(EngineUnavailable):
    """Redis refused the entry, or has not answered this node for an alive TTL (``pulse``)."""


class ClusterBehind(ClusterUnavailable):
    """The entry is in the log, but this node's reader has applied nothing for
    ``APPLY_STALL`` seconds since (it is stuck, not merely behind)."""


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[Applied]
    ack: Ack | None
    login: Any = None
    """The client's own login message (with its credential), for the login the entry asks."""
    written: asyncio.Future[None] | None = None
    """Done without an exception once Redis took the entry (``_fail_lost_waiters``)."""


class ClusterNode:
    """One node of the cluster named by ``options.cluster_name``, on ``options.redis_url``."""

    def __init__(self, carrier: Carrier, options: Options, *, node_id: str | None = None) -> None:
        if options.redis_url is None:
            raise ValueError("a cluster node needs redis_url")
        self.carrier = carrier
        self.options = options
        self.node_id = node_id or new_node_id()
        self.topology = topology_of(options)
        """One Redis, a master behind Sentinel, or a Redis Cluster (``redisclient``)."""
        self.keys = ClusterKeys(options.cluster_name, hash_tags=self.topology.hash_tags)
        self.redis: AsyncClient = self.topology.client()
        reads = (entries.STOCK,) if options.cluster_stock_entries else ()
        info = NodeInfo(self.node_id, reads=reads)
        self.stock_ok = False
        """Every live node reads ``stock`` entries (and this one writes them): a login of a
        client whose hooks decide as the stock ones is one entry (``Liveness`` keeps it)."""
        ttl = options.cluster_alive_ttl
        self.pulse = Pulse(ttl, APPLY_STALL, least=APPEND_LEAST)
        """Whether Redis answers and the reader moves on: how long an event waits (``append``)."""
        self.registry = NodeRegistry.of_node(
            self.topology, self.keys, info, ttl, answered=self.pulse.answered
        )
        self.health = ReaderHealth()
        """The readers' progress and what they skipped (``/readyz``, ``/metrics``)."""
        self.rebuilder = Rebuilder(self)  # failures: cluster/rebuild.py, cluster/liveness.py
        links = carrier.links
        self.replica = Replica.new(
            options, self.node_id, kinds=self.rebuilder.kinds, here=links.__contains__
        )
        self.core = self.replica.core
        self.replica.on_login = self._own_login
        self.stamps = Stamps()
        """This node's sequence of entries and count of relays per node (``ordering``)."""
        self.arrivals = Arrivals(self.node_id, options.cluster_order_wait)
        """Other nodes' relays held for their entries, and what an entry waits for."""
        self.health.order = self.arrivals.lates
        self._relays_came = asyncio.Event()
        """Set when relays arrive (the reader may be waiting for them)."""
        self._order_timer: asyncio.TimerHandle | None = None
        self._order_logged = False
        outbound: Callable[[Dropped], Outbound] | None = None
        if options.cluster_relay == "direct":
            outbound = partial(DirectLinks, self.node_id, self.registry, secret_of(options))
        self.inbox = Inbox(
            self.topology.channels(),
            self.keys,
            self.node_id,
            self._from_inbox,
            self.health,
            self.stamps,
            outbound=outbound,
        )
        self.last_id: bytes | str = "0-0"
        """Stream id of the last entry applied."""
        self._done_id: bytes | str = "0-0"
        """Stream id of the last entry whose apply has finished (its waiter answered)."""
        self._advanced = asyncio.Event()
        """Set when ``_done_id`` moves on (``_written_after_all`` waits for it)."""
        self._waiters: dict[int, _Waiter] = {}
        self._appended: set[str] = set()
        """This node's peers that have had an entry: their close goes through the log."""
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outgoing: list[tuple[bytes, asyncio.Future[None]]] = []
        """Encoded entries waiting for the writer, with what their events await."""
        self._write_due = asyncio.Event()
        self._unavailable_logged = False
        self._busy_logged = False
        self._since_snapshot = 0
        self._write_snapshot = self.redis.register_script(_WRITE_SNAPSHOT)
        self._reads: AsyncClient = self.topology.reader_client()
        """The reader's client (on a Redis Cluster one of its own, whose slot map only the
        reader's reads change: ``_same_server``)."""
        self._read_log = self._reads.register_script(gaps.READ)
        self._read_from: str | None = None
        """The server the reader read the log from last (``Topology.reader_server``)."""
        self._gap_accepted: bytes | str = "0-0"
        """A trim this node could not rebuild past (no readable snapshot): not noticed again."""
        self.heard: dict[str, float] = {}
        """node id -> when (monotonic) this node last applied one of its entries: a node
        still writing is not reaped, however late its alive key (``liveness``)."""
        self._generation = 0
        """Bumped when the log is read again from its start (``restart_log``)."""
        self.liveness = Liveness.of(self, self.rebuilder)
        self._holding: set[str] = set()
        """This node's sockets whose ``hold`` entry is on its way (``hold``)."""
        self._expiring: set[str] = set()
        """Held connections whose ``expire`` this node appended, not applied yet."""
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        """Entries appended without an event waiting (``hold``, ``queue``, ``expire``)."""
        limits = options.resume_queue_messages, options.resume_queue_bytes
        self.ledger = Ledger(self.node_id, *limits, self.replica.now)
        """Relays this node sent to keyed connections, until confirmed (``delivery``)."""
        self._retransmit_timer: asyncio.TimerHandle | None = None
        self._resuming: dict[str, tuple[float, list[Item]]] = {}
        """easyrtcid -> (since, inbox items for it): a login of this node resumes it, not
        applied yet; what other nodes sent it meanwhile waits, in order, for the resume's
        token (else it would go on to its old node)."""

    @property
    def role(self) -> str:
        """How the start-up line describes this process."""
        return f"as node {self.node_id} of cluster {self.options.cluster_name}"

    async def start(self) -> None:
        await self.registry.start()
        await self.inbox.start()
        try:
            await self._load_snapshot()
            await self._catch_up()
        except REDIS_ERRORS as exc:
            log.error("could not read the cluster log at start: %s", exc)
        self._reader = asyncio.create_task(self._read_forever(), name="cluster-log-reader")
        self._writer = asyncio.create_task(self._write_forever(), name="cluster-log-writer")
        await self.liveness.start()
        self._arm_expiry()
        log.info("cluster node %s of %r started", self.node_id, self.options.cluster_name)

    async def stop(self) -> None:
        """Leave the cluster. Every step is bounded: a task stuck in a redis-py read that
        ignores its cancellation must not keep the process from exiting."""
        await self._bounded(self.liveness.stop)
        for timer in (self._retransmit_timer, self._expiry_timer, self._order_timer):
            if timer is not None:
                timer.cancel()
        self._retransmit_timer = self._expiry_timer = self._order_timer = None
        if held := self.arrivals.drain():  # to their sockets, or queued for held connections
            await self._release(held)
        if self._tasks:  # the holds of a drain: written before the writer stops
            await asyncio.wait(list(self._tasks), timeout=STOP_STEP_TIMEOUT)
        tasks = [task for task in (self._reader, self._writer) if task is not None]
        self._reader = self._writer = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_STEP_TIMEOUT)
        for step in (self.inbox.stop, self.registry.stop, self.topology.aclose):
            await self._bounded(step)

    @staticmethod
    async def _bounded(step: Callable[[], Awaitable[Any]]) -> None:
        try:
            async with asyncio.timeout(STOP_STEP_TIMEOUT):
                await step()
        except (TimeoutError, *REDIS_ERRORS) as exc:
            log.warning("leaving the cluster: %s did not finish (%r)", step.__qualname__, exc)

    # -- the log -----------------------------------------------------------------------------

    async def append(self, entry: LogEntry, ack: Ack | None = None, login: Any = None) -> Applied:
        """Append ``entry`` and wait until this node has applied it (its pushes delivered,
        its reply sent through ``ack``). A slow Redis or a busy node only makes it wait
        (``pulse``; new events meanwhile are refused as busy past
        ``cluster_max_pending_appends``). Raises ``ClusterUnavailable`` if Redis refused the
        entry, or did not take it and has not answered this node for an alive TTL;
        ``ClusterBehind`` if it is written but this node's reader then applied nothing for
        ``APPLY_STALL`` seconds. A client's state change refused before the writer sent it is
        never written. One the writer sent whose reply was lost (a read timed out across a
        stop of this process, a connection dropped after the command) is looked for in the log
        before it is refused (``_written_after_all``): written, it is applied and answered as
        any other. Only one sent to a Redis that then went silent may be applied later,
        without the reply (a refused login's socket is closed, and its ``close`` entry
        follows it)."""
        entry.seq, relays = self.stamps.entry()
        seq = entry.seq
        if relays:
            entry.relays = relays
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Applied] = loop.create_future()
        written: asyncio.Future[None] = loop.create_future()
        self._waiters[seq] = _Waiter(future, ack, login, written)
        pulse = self.pulse
        try:
            outgoing = (entry.encode(), written)
            self._outgoing.append(outgoing)
            self._write_due.set()
            queued = pulse.clock()
            if not await wait_until(written, lambda: pulse.write_deadline(queued), pulse.clock):
                written.cancel()  # the writer sends it all the same, if it is queued
                if entry.kind in (RECV, ANSWER) and outgoing in self._outgoing:
                    self._outgoing.remove(outgoing)  # told it failed: so it never happens
                raise ClusterUnavailable(f"Redis silent for {pulse.silent_for():.1f} s")
            if (error := written.exception()) is not None:
                if not await self._written_after_all(future):
                    raise ClusterUnavailable(str(error) or type(error).__name__) from error
            else:
                done = pulse.clock()
                if not await wait_until(future, lambda: pulse.apply_deadline(done), pulse.clock):
                    raise ClusterBehind(f"this node applied nothing for {pulse.stall:.0f} s")
            applied = future.result()
        finally:
            self._waiters.pop(seq, None)
        self._unavailable_logged = False
        if self._busy_logged and len(self._waiters) < self.options.cluster_max_pending_appends // 2:
            self._busy_logged = False
        return applied

    async def _written_after_all(self, future: asyncio.Future[Applied]) -> bool:
        """The writer's command failed, perhaps after Redis took it (its reply lost): whether
        the entry is in the log after all, and now applied. Told it failed while every replica
        applies it, a client's view and the cluster's would part for good. The log's end,
        asked now, is at or after the entry if it was written; this node's reader applies up
        to there (the entry's waiter answered on the way, its reply sent). False if Redis
        cannot say, the reader stalls, or it got there without the entry (never written)."""
        if future.done():
            return True
        try:
            last = await self.redis.xrevrange(self.keys.log, count=1)
        except REDIS_ERRORS:
            return future.done()
        if not last or not (end_id := last[0][0]):
            return future.done()
        end = gaps.stream_id(end_id)
        pulse = self.pulse
        since = pulse.clock()
        while not future.done() and gaps.stream_id(self._done_id) < end:
            self._advanced.clear()
            advanced = asyncio.ensure_future(self._advanced.wait())
            try:
                if not await wait_until(advanced, lambda: pulse.apply_deadline(since), pulse.clock):
                    break
            finally:
                advanced.cancel()
        return future.done()

    async def _write_forever(self) -> None:
        """The one writer of this node's entries: everything appended in a loop pass goes in
        one pipeline (a join storm is a few round trips, not a connection per login), in the
        order it was appended."""
        key = self.keys.log
        while True:
            await self._write_due.wait()
            await asyncio.sleep(0)  # one more loop pass: the events read in it join the batch
            self._write_due.clear()
            batch, self._outgoing = self._outgoing, []
            try:
                if len(batch) == 1:
                    await self.redis.xadd(key, {FIELD: batch[0][0]})
                else:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for raw, _written in batch:
                            pipe.xadd(key, {FIELD: raw})
                        await pipe.execute()
            except REDIS_ERRORS as exc:
                self.stamps.lost()  # the relay counts they carried: in the next entry
                for _raw, written in batch:
                    if not written.done():  # done: its event gave up waiting
                        written.set_exception(exc)
                continue
            self.pulse.answered()
            for _raw, written in batch:
                if not written.done():
                    written.set_result(None)

    async def _load_snapshot(self) -> None:
        """Load the latest snapshot. One that cannot be read does not keep the node from
        starting: it starts from its own empty state and applies what is left of the log,
        loudly (the clients of before the snapshot are missing from its lists until they
        reconnect)."""
        raw = await self.redis.get(self.keys.snapshot)
        if raw is None:
            return
        empty = snapshot.dump(self.replica)
        try:
            at, state = snapshot.decode(raw)
            snapshot.load(self.replica, state)
        except Exception as exc:  # any document at all may be there
            self.health.snapshot_failures += 1
            snapshot.load(self.replica, empty)
            self._gap_accepted = await self.redis.get(self.keys.trimmed) or "0-0"  # said here
            log.error(
                "the cluster snapshot is unreadable (%r): starting without it, from what is "
                "left of the log; connections made before it are missing until they reconnect",
                exc,
            )
            return
        self.last_id = at
        log.info(
            "loaded the cluster state at log id %s: %d connections", at, len(self.replica.owners)
        )

    async def _maybe_snapshot(self, entry_id: bytes | str) -> None:
        """Every ``cluster_snapshot_entries`` entries, or as many entries as the state holds
        connections if that is more, between decisions: one node writes the state at
        ``entry_id`` and trims the log. A snapshot costs the state's size; spaced by it, its
        cost per entry stays the same however large the cluster grows (a fixed interval made
        a storm of n logins cost n²/interval connection dumps)."""
        self._since_snapshot += 1
        since = self._since_snapshot
        replica = self.replica
        if since < self.options.cluster_snapshot_entries or since < len(replica.owners):
            return
        if replica.pending:
            return
        self._since_snapshot = 0
        keys = self.keys
        try:
            if not await self.redis.set(
                keys.snapshot_lock, self.node_id, nx=True, px=SNAPSHOT_LOCK_MS
            ):
                return
            at = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            doc = snapshot.encode(at, self.replica)
            retention = int(self.options.cluster_log_retention * 1000)
            await self._write_snapshot(
                keys=[keys.snapshot, keys.snapshot_id, keys.log, keys.trimmed],
                args=[at, doc, retention],
            )
        except REDIS_ERRORS as exc:
            log.warning("could not write a snapshot of the cluster state: %s", exc)
        except Exception as exc:  # a bug: the log reader goes on, the log is trimmed later
            self.health.snapshot_failures += 1
            self.health.once("snapshot", "could not write a snapshot of the cluster state: %r", exc)

    async def _catch_up(self) -> None:
        """Apply the whole log as it stands, before this node serves anyone."""
        while True:
            at = self.last_id
            batches = await self._read()
            self._same_server(at)
            if not batches:
                return
            await self._apply_batches(batches)

    def _same_server(self, at: bytes | str) -> None:
        """After a read: if it came from another server than the one before (a Redis Cluster
        failed the log's master over, or moved its slot), the entries up to ``at``, the last
        one applied from that server, may have died with it (replication is asynchronous):
        the watch looks for ``at``, as when a read fails (``Liveness.unsure``). The last of
        them tells: a replica holds a prefix of its master's log."""
        server = self.topology.reader_server(self.keys.log)
        if server is None or server == self._read_from:
            return
        if self._read_from is not None:
            self.liveness.unsure(at)
        self._read_from = server

    async def _read(self) -> Any:
        """The next entries after ``last_id`` (``XREAD``'s reply), read with the newest
        trimmed id; entries missed there first rebuild the replica from the latest snapshot
        (then the entries after it are read)."""
        keys = self.keys
        at = self.last_id
        trimmed, raw = await self._read_log(keys=[keys.log, keys.trimmed], args=[at, READ_COUNT])
        if gaps.missed(at, trimmed) and gaps.missed(self._gap_accepted, trimmed):
            if await self._rebuild_from_snapshot(at):
                at = self.last_id
                trimmed, raw = await self._read_log(
                    keys=[keys.log, keys.trimmed], args=[at, READ_COUNT]
                )
            self._gap_accepted = trimmed  # noticed once: behind the snapshot too, go on
        return [
            (
                stream,
                [
                    (entry_id, dict(zip(flat[::2], flat[1::2], strict=False)))
                    for entry_id, flat in items
                ],
            )
            for stream, items in raw or ()
        ]

    async def _wait_and_read(self) -> Any:
        """The entries after ``last_id`` (``XREAD``'s reply, empty after ``READ_BLOCK_MS``
        without any), waited for with ``XREAD BLOCK`` and followed in the same round trip by
        the trimmed mark (a pipeline: a script cannot block). None when the mark is past
        ``last_id``: the read may have skipped trimmed entries, and ``_read`` reads again
        with the mark in one step (``gaps``), noticing the gap. A reader is that far behind
        only when it is stuck (the log keeps ``cluster_log_retention`` seconds at least), so
        the steady state is one round trip per batch, and no script (a script's read costs
        Redis five times an ``XREAD``'s, measured)."""
        keys = self.keys
        at = self.last_id
        pipe = self._reads.pipeline(transaction=False)
        route = self.topology.reader_route(keys.log)
        read = ("XREAD", "COUNT", READ_COUNT, "BLOCK", READ_BLOCK_MS, "STREAMS", keys.log, at)
        pipe.execute_command(*read, keys=(keys.log,), **route)
        pipe.get(keys.trimmed)
        raw, trimmed = await pipe.execute()
        if gaps.missed(at, trimmed):
            return None
        return raw or []

    async def _rebuild_from_snapshot(self, at: bytes | str) -> bool:
        """The reader missed entries after ``at`` (trimmed before it read them): load the latest
        snapshot in place of the replica, keeping this node's sockets, and give their members
        whole lists. False if there is no readable snapshot: the node goes on from the log's
        oldest entry, its lists wrong for what it missed (logged)."""
        health = self.health
        health.log_gaps += 1
        health.failing("rebuilding from the snapshot (it missed trimmed log entries)")
        shown = at.decode() if isinstance(at, bytes) else at
        log.warning(
            "the cluster log reader missed entries trimmed from the log after %s (it was more "
            "than a snapshot interval behind): rebuilding this node's state from the snapshot",
            shown,
        )
        raw = await self.redis.get(self.keys.snapshot)
        try:
            if raw is None:
                raise ValueError("there is none")
            snapped, state = snapshot.decode(raw)
            self.rebuilder.adopt(state)
        except Exception as exc:  # any document at all may be there
            health.snapshot_failures += 1
            log.error(
                "could not rebuild from the cluster snapshot (%r): going on from the oldest "
                "entry of the log; the entries missed are missing from this node's lists",
                exc,
            )
            return False
        self.last_id = snapped
        self._since_snapshot = 0
        self._fail_skipped_waiters()
        out = full_lists(self.core.state, list(self.carrier.links))
        await self.carrier.deliver(None, out, None)
        return True

    def _fail_skipped_waiters(self) -> None:
        """This node's own entries that the snapshot holds were never applied here one by one:
        the events waiting for them are refused now (as behind), not after ``APPLY_STALL``
        seconds of waiting for an entry the reader will not see again."""
        upto = self.replica.seqs.get(self.node_id, 0)
        for seq, waiter in self._waiters.items():
            if seq <= upto and not waiter.future.done():
                waiter.future.set_exception(
                    ClusterBehind("its entry was applied with a snapshot this node rebuilt from")
                )

    def _fail_lost_waiters(self, seq: int) -> None:
        """This node's entry ``seq`` is being applied: an earlier one that Redis took is not
        in the log any more (Redis lost it in a failover before any reader read it; the
        writer sends a batch only after the one before was taken, so the log holds a node's
        taken entries in its order). Its event is refused now: while the reader applies
        later entries, ``APPLY_STALL`` never runs out for it. The waiters are in the order of
        their numbers, so this stops at the first that is not earlier (usually at once)."""
        for earlier, waiter in self._waiters.items():
            if earlier >= seq:
                break
            written = waiter.written
            if (
                not waiter.future.done()
                and written is not None
                and written.done()
                and not written.cancelled()
                and written.exception() is None
            ):
                waiter.future.set_exception(
                    ClusterUnavailable("Redis lost its entry (a failover): not applied")
                )

    def restart_log(self) -> None:
        """Read the log from its start again (Redis came back empty: it is a new log); a
        batch read before is dropped."""
        self.last_id = "0-0"
        self._gap_accepted = "0-0"
        self._generation += 1

    async def _read_forever(self) -> None:
        """Read and apply the log until stopped; nothing read stops it (``_apply_batches``
        skips what it cannot apply), and ``health`` says when it is behind or failing. When
        there is nothing to read it waits with ``XREAD BLOCK`` for the next entries
        (``_wait_and_read``)."""
        health = self.health
        while True:
            generation = self._generation
            at = self.last_id
            try:
                batches = await self._wait_and_read()
                if batches is None:  # past a trim, perhaps: read again with the mark, atomically
                    batches = await self._read()
                self._same_server(at)
                if not batches:
                    health.caught_up()
                    continue
            except REDIS_ERRORS as exc:
                health.failing(f"cannot read the log ({type(exc).__name__})")
                self.liveness.unsure(self.last_id)  # Redis may come back older (``liveness``)
                await asyncio.sleep(RETRY_DELAY)
                continue
            except Exception as exc:  # a reply redis-py could not parse: try again
                health.failing(f"cannot read the log ({type(exc).__name__})")
                health.once("xread", "the cluster log reader failed: %r", exc)
                await asyncio.sleep(RETRY_DELAY)
                continue
            if _read_count(batches) < READ_COUNT:
                health.caught_up()
            await self._apply_batches(batches, generation)

    async def _apply_batches(self, batches: Any, generation: int | None = None) -> None:
        """Apply what ``XREAD`` returned, in order, handing the event loop over every
        ``APPLY_SLICE`` entries: a long batch does not hold the other tasks up."""
        applied = 0
        for _stream, items in batches:
            for entry_id, fields in items:
                applied += 1
                if applied % APPLY_SLICE == 0:
                    await asyncio.sleep(0)
                if generation is not None and generation != self._generation:
                    return
                self.last_id = entry_id
                self.pulse.applied()
                try:
                    entry = LogEntry.decode(fields[FIELD])
                except (LogFormatError, KeyError, TypeError) as exc:
                    self.health.skipped_entries += 1
                    self.health.once("decode", "skipped log entry %s: %s", entry_id, exc)
                    continue
                try:
                    await self._apply(entry)
                except Exception as exc:  # the reader must go on whatever one entry does
                    self.health.skipped_entries += 1
                    self.health.once("apply", "skipped a %s log entry: %r", entry.kind, exc)
                self._done_id = entry_id
                self._advanced.set()
                await self._maybe_snapshot(entry_id)

    async def _apply(self, entry: LogEntry) -> None:
        """Apply one entry in its origin's order: after the relays its origin sent this node
        before it, before those sent after it (``ordering``)."""
        origin = entry.node
        arrivals = self.arrivals
        if entry.relays is not None and arrivals.missing(origin, entry.relays):
            await self._wait_for_relays(entry)
        if entry.kind == NODE_GONE:  # its last relays, then nothing of it is kept
            gone = str(entry.body.get("node"))
            self.stamps.forget(gone)
            self.inbox.forget(gone)
            await self._release(arrivals.forget(gone))
        if held := arrivals.release(origin, entry.seq - 1):
            await self._release(held)
        await self._apply_now(entry)
        if held := arrivals.release(origin, entry.seq):
            await self._release(held)

    async def _release(self, items: list[Item]) -> None:
        """Deliver held relays; whatever they do, the entries around them are applied."""
        try:
            await self._deliver_relays(items)
        except Exception as exc:
            self.health.inbox_drops += len(items)
            self.health.once("inbox-held", "could not deliver held relays: %r", exc)

    async def _wait_for_relays(self, entry: LogEntry) -> None:
        """Wait (at most ``cluster_order_wait``) until the relays ``entry``'s origin sent this
        node before it have arrived; then apply it all the same, counted."""
        arrivals = self.arrivals
        assert entry.relays is not None
        try:
            async with asyncio.timeout(arrivals.wait):
                while arrivals.missing(entry.node, entry.relays):
                    self._relays_came.clear()
                    await self._relays_came.wait()
        except TimeoutError:
            arrivals.gave_up(entry.node, entry.relays)
            self._order_late("a log entry was applied before relays its node sent before it")

    def _order_late(self, what: str) -> None:
        if not self._order_logged:
            self._order_logged = True
            log.warning(
                "%s (waited %.1f s, cluster_order_wait); further ones are counted in "
                "easyrtc_cluster_order_timeouts_total",
                what,
                self.arrivals.wait,
            )

    async def _apply_now(self, entry: LogEntry) -> None:
        """Apply one entry; deliver its pushes to this node's sockets (and the reply, when
        this node appended it); wake the event that waits for it. The replica built only
        those (``replica.NodeSockets``): a change costs each node its own clients' sends."""
        waiter = None
        if entry.node == self.node_id:
            waiter = self._waiters.pop(entry.seq, None)
            self._fail_lost_waiters(entry.seq)
        self.heard[entry.node] = time.monotonic()
        if entry.kind == entries.NODE_GONE:  # forget it (a restarted node has a new id)
            self.heard.pop(str(entry.body.get("node")), None)
        try:
            applied = self.replica.apply(entry)
        except Exception as exc:  # a bug: the same on every replica, so it costs one entry
            log.exception("failed to apply a %s log entry", entry.kind)
            applied = Applied(None, error=exc)
        out = applied.result
        cid = entry.peer
        peer = applied.peer
        if peer is not None and cid is not None and peer.easyrtcid != cid:
            self._took_over(cid, peer.easyrtcid, mine=waiter is not None)
        elif entry.kind == EXPIRE and cid is not None:
            self._expiring.discard(cid)
        if entry.kind in (HOLD, EXPIRE, NODE_GONE):
            self._arm_expiry()
        if isinstance(out, LoginRequested) and waiter is not None:
            self._give_back(waiter, out)
        if isinstance(out, Outcome) and (
            out.sends or out.close or self.core.next_room_update() is not None
        ):  # coalesced updates due for this node's sockets: the server's tick sends them
            ack = waiter.ack if waiter is not None else None
            links = self.carrier.links
            mine = Outcome(_sends_here(out, ack is not None, links), close=out.close)
            try:
                await self.carrier.deliver(applied.peer, mine, ack)
            except Exception:
                log.exception("failed to deliver a %s log entry", entry.kind)
        if peer is not None and cid is not None and peer.easyrtcid != cid:
            await self.resend(peer.easyrtcid)  # after its token: to wherever it resumed
            if waiter is not None:
                await self._deliver_relays(self._resuming.pop(peer.easyrtcid, (0.0, []))[1])
        elif entry.kind in (HOLD, NODE_GONE):
            self._unconfirmed_to_holds()
        if applied.departed and isinstance(out, Outcome):  # this node reaped a dead node
            self.carrier.departed(applied.departed, out)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(applied)

    @staticmethod
    def _give_back(waiter: _Waiter, requested: LoginRequested) -> None:
        """Its own client's login, applied here: the message and credential the log does not
        carry go back to the request (what the authenticate hook reads, as on one process, and
        the connection's credential; never logged)."""
        if waiter.login is not None:
            requested.request.message = waiter.login
            requested.request.credential = credential_of(waiter.login)

    def _own_login(self, entry: LogEntry, requested: LoginRequested) -> None:
        """A ``stock`` login is answered inside the replica (``Replica.on_login``)."""
        if entry.node == self.node_id and (waiter := self._waiters.get(entry.seq)) is not None:
            self._give_back(waiter, requested)

    def alive_nodes_read(self, alive: Mapping[str, NodeInfo]) -> None:
        """The live nodes as the liveness watch found them: ``stock`` entries are written
        while each says it reads them (a node of before, or one with
        ``cluster_stock_entries`` off, stops them until it is gone)."""
        self.stock_ok = (
            self.options.cluster_stock_entries
            and self.node_id in alive
            and all(entries.STOCK in info.reads for info in alive.values())
        )

    # -- the engine: what the server hands over ----------------------------------------------

    def receive(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> Step | Pending:
        """A client event: checked here, then through the log if it changes state; else this
        node's core's."""
        has_ack = ack is not None
        core = self.core
        if not changes_state(peer, event, data, has_ack):
            return core.receive(peer, event, data, has_ack)
        checked = core.check(peer, event, data)
        if isinstance(checked, Outcome):  # refused: nothing reaches Redis
            return checked
        login = event == "easyrtcAuth"
        cid = peer.easyrtcid
        try:
            size = len(orjson.dumps(checked))
        except TypeError:  # a value that is not JSON (a binary attachment)
            code = ErrorCode.LOGIN_GEN_FAIL if login else ErrorCode.MSG_REJECT_GEN_FAIL
            return refusal(core.now(), cid, f"{event} (not JSON)", code, close=login)
        if size > self.options.cluster_max_entry_size:
            code = ErrorCode.MSG_REJECT_BAD_SIZE
            return refusal(core.now(), cid, event, code, close=login)
        if len(self._waiters) >= self.options.cluster_max_pending_appends:
            return self._busy(cid, event, login)
        self._appended.add(cid)
        key = peer.resume_key if login else None  # its digest: the key never leaves this node
        if key is not None and (resumes := self.replica.holds.bound.get(key)) is not None:
            self._resuming.setdefault(resumes, (time.monotonic(), []))
            self._arm_retransmit()
        stock = self.stock_ok and self.carrier.stock_decisions
        entry = entries.recv(
            self.node_id, core.now(), cid, peer.remote_address, event, checked, key, stock=stock
        )
        return self._through_log(entry, ack, data if login else None)

    async def _through_log(self, entry: LogEntry, ack: Ack | None, login: Any = None) -> Step:
        """Append ``entry``; its outcome is carried out as this node applies it."""
        try:
            return (await self.append(entry, ack, login)).result
        except ClusterUnavailable as exc:
            self._log_unavailable(exc)
            raise

    def answer(
        self, peer: Peer, decision: Decision, answer: Answer, ack: Ack | None
    ) -> Step | Pending:
        """The hooks' answer: into the log for a decision the log asked (every replica holds
        it), else this node's core's."""
        cid = peer.easyrtcid
        if self.replica.pending.get(cid) is not decision:
            return self.core.answer(decision, answer)
        entry = entries.answer(self.node_id, self.replica.now(), cid, answer)
        return self._through_log(entry, ack)

    async def close(self, peer: Peer) -> Outcome:
        """A socket of this node closed: through the log if it ever had an entry, else (or if
        the log is unavailable) on this node alone."""
        cid = peer.easyrtcid
        if cid in self._holding or self.replica.holds.is_held(cid):
            return Outcome()  # held (``hold``): nobody is told
        if cid in self._appended:
            self._appended.discard(cid)
            try:
                applied = await self.append(entries.close(self.node_id, self.replica.now(), cid))
            except ClusterUnavailable as exc:
                self._log_unavailable(exc)
            else:
                out = applied.result
                return out if isinstance(out, Outcome) else Outcome()
        out = self.core.close(peer)
        await self.carrier.deliver(peer, out, None)
        return out

    async def change(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A ``control`` change by server code, applied (and its pushes delivered) on every
        node; raises what the change raised."""
        entry = entries.control(self.node_id, self.replica.now(), name, list(args), kwargs)
        applied = await self.append(entry)
        if applied.error is not None:
            raise applied.error
        out = applied.result
        return out if isinstance(out, Outcome) else Outcome()

    def route(self, send: Push) -> ErrorCode | None:
        """A push for a socket this node does not hold: queued through the log for a held
        connection (refused when its queue is full), else to its owner's inbox."""
        to = send.to
        if to in self._holding or self.replica.holds.is_held(to):
            return self._queue(send)
        owner = self.replica.owners.get(to)
        if owner is not None and owner != self.node_id:
            body = send.body
            if (
                to in self.replica.holds.key_of
                and type(body) is dict
                and RELAYED in body
                and STAMP not in body
            ):  # kept until its client confirms it, wherever it is then (``delivery``)
                ledger = self.ledger
                body = ledger.stamp(to, body)
                ledger.keep(to, body[STAMP][1], send.event, body)
                self._arm_retransmit()
            self.inbox.send(owner, to, send.event, body)
        return None

    def route_fanout(self, send: Fanout, to: list[str]) -> ErrorCode | None:
        """``route`` for the recipients ``to`` of ``send``: one inbox item per owner node,
        carrying the body once with its recipients there (``inbox``; a plain push for one)."""
        code = None
        owners = self.replica.owners
        by_owner: dict[str, list[str]] = {}
        keyed = self.replica.holds.key_of if RELAYED in send.body else {}
        for cid in to:
            if cid in self._holding or self.replica.holds.is_held(cid):
                code = self._queue(Push(cid, send.event, send.body_for(cid))) or code
                continue
            if cid in keyed:  # stamped and kept for it alone (``route``, ``delivery``)
                code = self.route(Push(cid, send.event, send.body_for(cid))) or code
                continue
            owner = owners.get(cid)
            if owner is not None and owner != self.node_id:
                by_owner.setdefault(owner, []).append(cid)
        for owner, ids in by_owner.items():
            if send.after:  # keys after the easyrtcid (never a relay): a push item each
                for cid in ids:
                    self.inbox.send(owner, cid, send.event, send.body_for(cid))
            elif len(ids) == 1:  # nothing to share: the item of one push, as ``route`` queues
                self.inbox.send(owner, ids[0], send.event, send.body_for(ids[0]))
            else:
                self.inbox.send(owner, ids, send.event, send.body)
        return code

    def confirmed(self, origin: str, to: str, n: int) -> None:
        """Confirmed to the node that kept it (through its inbox, batched as relays are)."""
        if origin == self.node_id:
            self.ledger.confirm(to, n)
        else:
            self.inbox.send(origin, to, None, n)

    async def resend(self, easyrtcid: str, *, retransmit: bool = False) -> None:
        """``easyrtcid`` resumed (on this node or another): what this node relayed to it and
        its client has not confirmed goes again, in order, to its socket's node
        (``retransmit``: unconfirmed for ``RETRANSMIT_MS``)."""
        again = self.ledger.pending(easyrtcid, retransmit=retransmit)
        if not again:
            return
        owner = self.replica.owners.get(easyrtcid)
        if owner == self.node_id:
            await self.carrier.deliver(None, pushes_to(easyrtcid, again), None)
        elif owner is not None:
            for event, body in again:
                self.inbox.send(owner, easyrtcid, event, body)
        self._arm_retransmit()

    def _unconfirmed_to_holds(self, only: str | None = None) -> None:
        """Connections held now: what this node relayed to them unconfirmed goes into their
        hold's queue (through the log; the log keeps it when this node is gone)."""
        holds = self.replica.holds
        targets = [only] if only is not None else list(self.ledger.out)
        for to in targets:
            if not (to in self._holding or holds.is_held(to)):
                continue
            for event, body in self.ledger.take(to):
                now = self.replica.now()
                entry = entries.queue(self.node_id, now, to, event, body, unconfirmed=True)
                self._append_later(entry)

    def _arm_retransmit(self) -> None:
        if self._retransmit_timer is None and (self.ledger.out or self._resuming):
            loop = asyncio.get_running_loop()
            self._retransmit_timer = loop.call_later(RETRANSMIT_MS / 2000, self._retransmit_due)

    def _retransmit_due(self) -> None:
        """Unconfirmed for ``RETRANSMIT_MS`` (a resend that reached a node before it applied
        the resume, a confirmation lost with Redis): sent again; a connection gone for good
        is forgotten."""
        self._retransmit_timer = None
        stale = time.monotonic() - RESUMING_WAIT
        for cid in [cid for cid, (since, _items) in self._resuming.items() if since < stale]:
            task = asyncio.ensure_future(self._deliver_relays(self._resuming.pop(cid)[1]))
            self._tasks.add(task)  # its login did not resume it here: on to where it is
            task.add_done_callback(self._tasks.discard)
        ledger = self.ledger
        keyed = self.replica.holds.key_of
        for to in [to for to in ledger.out if to not in keyed]:
            ledger.forget(to)
        due = ledger.due()
        for to in due:
            task = asyncio.ensure_future(self.resend(to, retransmit=True))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._unconfirmed_to_holds()
        self._arm_retransmit()  # while anything is kept (numbering included): to forget it

    def _queue(self, send: Push) -> ErrorCode | None:
        """A push for a held connection: a relayed one goes into the log (every replica
        queues it), unless this replica sees its queue full already (the sender is refused,
        as for a gone peer); server pushes are dropped (the resume's token carries the
        current state)."""
        body = send.body
        if type(body) is not dict or "senderEasyrtcid" not in body:
            return None
        holds = self.replica.holds
        held = holds.held.get(send.to)
        if held is not None and (
            len(held.queue) >= holds.max_messages or held.size >= holds.max_bytes
        ):
            holds.counts.overflows += 1
            if send.event == "easyrtcCmd":
                return ErrorCode.MSG_REJECT_TARGET_EASYRTCID
            return ErrorCode.MSG_REJECT_GEN_FAIL if "targetEasyrtcid" in body else None
        now = self.replica.now()
        self._append_later(entries.queue(self.node_id, now, send.to, send.event, body))
        return None

    def open(self, remote: str | None, resume_key: Any, resume_token: Any) -> Peer:
        """A socket connected: its resume key's digest is kept (it reaches the log with its
        login). No token: the holds outlive any one node (``cluster.holds``)."""
        return self.core.open(remote, resume_key=resume_key)

    def hold(self, peer: Peer) -> bool:
        """A keyed socket of this node dropped without a goodbye: its ``hold`` entry is
        appended (every replica holds it); True at once, nobody is told."""
        cid = peer.easyrtcid
        holds = self.replica.holds
        if (
            holds.grace_ms <= 0
            or cid not in self._appended
            or cid not in holds.key_of
            or peer.connection is None
            or self.core.state.peers.get(cid) is not peer
        ):
            return False
        self._appended.discard(cid)
        self._holding.add(cid)
        task = self._append_later(entries.hold(self.node_id, self.replica.now(), cid))
        task.add_done_callback(lambda _task: self._holding.discard(cid))
        self._unconfirmed_to_holds(cid)  # after the hold, in the log's order
        return True

    def holds_outlive_stop(self) -> bool:
        """A hold made while this node stops lives on in the other replicas."""
        return True

    def _append_later(self, entry: LogEntry) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(self._append_quietly(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _append_quietly(self, entry: LogEntry) -> None:
        try:
            await self.append(entry)
        except ClusterUnavailable as exc:
            self._log_unavailable(exc)

    def _took_over(self, before: str, easyrtcid: str, *, mine: bool) -> None:
        """A login (``before``) resumed ``easyrtcid``: on its node, its socket is that
        easyrtcid's from now on (the pushes of the resume reach it); a socket still open
        under that easyrtcid, here, is closed (its client is elsewhere now)."""
        links = self.carrier.links
        link = links.pop(before, None) if mine else None
        old = links.pop(easyrtcid, None)
        if mine:  # its close or hold goes through the log, under its easyrtcid
            self._appended.discard(before)
            self._appended.add(easyrtcid)
        else:
            self._appended.discard(easyrtcid)
        if link is not None:
            links[easyrtcid] = link
        if old is not None and old is not link:
            task = asyncio.ensure_future(old.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _arm_expiry(self) -> None:
        """Wake up when the first hold's grace runs out, to append its ``expire``."""
        due = self.replica.holds.due()
        if due is None or self._expiry_timer is not None:
            return
        delay = max(EXPIRY_MIN_DELAY, (due - self.replica.now()) / 1000)
        loop = asyncio.get_running_loop()
        self._expiry_timer = loop.call_later(delay, self._expire_due)

    def _expire_due(self) -> None:
        """Append ``expire`` for every hold past its grace (by this node's clock; the entry's
        time decides, the same on every replica; another node may append it too)."""
        self._expiry_timer = None
        now = self.replica.now()
        for cid, held in list(self.replica.holds.held.items()):
            if held.until <= now and cid not in self._expiring:
                self._expiring.add(cid)
                self._append_later(entries.expire(self.node_id, now, cid))
        self._arm_expiry()

    def directory(self, local: LocalDirectory) -> Directory:
        """Every node is a full replica: its core answers for the whole cluster."""
        return local

    def disconnect(self, easyrtcid: str) -> bool:
        """Ask the node holding ``easyrtcid``'s socket to close it; a held connection is
        released through the log (every replica ends it); False if neither."""
        if easyrtcid in self._holding or self.replica.holds.is_held(easyrtcid):
            self._append_later(entries.release(self.node_id, self.replica.now(), easyrtcid))
            return True
        owner = self.replica.owners.get(easyrtcid)
        if owner is None or owner == self.node_id:
            return False
        self.inbox.send(owner, easyrtcid, None, None)
        return True

    async def _from_inbox(
        self, sender: str | None, first: int, afters: list[Any], items: list[Any]
    ) -> None:
        """Relays ``sender`` sent this node: delivered once this replica has applied the
        entries ``sender`` appended before each, else held (``ordering``)."""
        if sender is None:  # a node of before the ordering: as they come
            await self._deliver_relays(items)
            return
        arrivals = self.arrivals
        applied = self.replica.seqs.get(sender, 0)
        ready = arrivals.arrived(sender, first, afters, items, applied)
        if arrivals.unusable:
            self.health.inbox_drops += arrivals.unusable
            arrivals.unusable = 0
        self._relays_came.set()
        await self._deliver_relays(ready)
        self._arm_order_timer()

    def _arm_order_timer(self) -> None:
        """Wake up when the first held relay's wait runs out."""
        due = self.arrivals.next_deadline()
        if due is None or self._order_timer is not None:
            return
        delay = max(0.0, due - time.monotonic())
        self._order_timer = asyncio.get_running_loop().call_later(delay, self._order_due)

    def _order_due(self) -> None:
        self._order_timer = None
        task = asyncio.ensure_future(self._expire_held())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire_held(self) -> None:
        """Relays held past ``cluster_order_wait``: delivered without their entries, counted.
        Taken from the holds in the step that sends them, so that none that arrived
        meanwhile overtakes them."""
        late = self.arrivals.expired(self.replica.seqs)
        if late:
            self._order_late("relays were delivered before log entries their node appended first")
            await self._release(late)
        self._arm_order_timer()

    async def _deliver_relays(self, items: list[Item]) -> None:
        """Pushes and disconnects other nodes sent for this node's sockets: the pushes through
        the server's ``deliver``, as every push (counted, settled, the same error handling)."""
        if not items:
            return
        carrier = self.carrier
        links = carrier.links
        out = Outcome()
        for to, event, body in items:
            if type(to) is list:  # a fan-out: the body once, each recipient's easyrtcid added
                if type(body) is not dict or type(event) is not str:
                    raise TypeError("not a fan-out")  # counted as an unusable inbox message
                here = [cid for cid in to if cid in links]
                if here:
                    out.sends.append(Fanout(here, event, body))
                if len(here) < len(to):  # dropped or moved meanwhile: held, or on another node
                    fanout = Fanout([cid for cid in to if cid not in links], event, body)
                    self.route_fanout(fanout, fanout.to)
                continue
            if event is None and type(body) is int:  # a confirmation (``delivery``)
                self.ledger.confirm(to, body)
                continue
            if to not in links:
                if (waiting := self._resuming.get(to)) is not None:
                    waiting[1].append([to, event, body])  # its resume is on its way here
                    continue
                if event is not None:  # its socket dropped or moved meanwhile: held, or
                    self.route(Push(to, event, body))  # resumed on another node
                continue
            if event is None:  # a disconnect: what came before it first
                if out.sends:
                    await carrier.deliver(None, out, None)
                    out = Outcome()
                link = links.get(to)
                if link is not None:
                    await link.close()
                continue
            out.push(to, event, body)
        if out.sends:
            await carrier.deliver(None, out, None)

    def _busy(self, cid: str, event: str, login: bool) -> Outcome:
        """Too many of this node's entries are waiting to be applied: a new state change is
        refused at once, as busy (the generic failure of its kind, as the reference has no
        busy code), rather than queued behind them. Logged once per busy spell."""
        self.health.busy_refusals += 1
        if not self._busy_logged:
            log.warning(
                "this node has %d cluster log entries waiting to be applied "
                "(cluster_max_pending_appends): new state changes are refused as busy",
                len(self._waiters),
            )
            self._busy_logged = True
        code = ErrorCode.LOGIN_GEN_FAIL if login else ErrorCode.MSG_REJECT_GEN_FAIL
        return refusal(self.core.now(), cid, event, code, text=BUSY_TEXT, close=login)

    def _log_unavailable(self, exc: BaseException) -> None:
        if self._unavailable_logged:
            return
        self._unavailable_logged = True
        if isinstance(exc, ClusterBehind):
            log.error(
                "this node's cluster log reader is behind (%s): state changes that wait "
                "longer are refused",
                exc,
            )
        else:
            log.error("the cluster log is unavailable (%s): state changes are refused", exc)


def _read_count(batches: Any) -> int:
    """How many entries an ``XREAD`` reply holds."""
    return sum(len(items) for _stream, items in batches or ())


def _sends_here(out: Outcome, acked: bool, links: Mapping[str, object]) -> list[Send]:
    """What of ``out`` this node sends (and counts in its metrics): the reply when it holds
    the ack, and the pushes to its own sockets. The replica builds little else
    (``replica.NodeSockets``): the small replies of another node's events (an ack, an error),
    a resumed connection's own pushes where it was before."""
    sends: list[Send] = []
    for send in out.sends:
        if isinstance(send, Reply):
            if acked:
                sends.append(send)
        elif isinstance(send, Fanout):
            here = [cid for cid in send.to if cid in links]
            if here:
                sends.append(replace(send, to=here))
        elif send.to in links:
            sends.append(send)
    return sends
