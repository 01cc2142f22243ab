"""This process as a node of a partitioned cluster (``cluster_state = "partitioned"``, issue 23).

The second implementation of the cluster's engine seam (``engine.Engine``), beside
``node.ClusterNode``'s one log read by every node. Here a node's ``Core`` holds its own
connections in full, as one process does, and the rooms' state lives in partition logs
(``partitionlog``): each room's partition carries room facts (``facts``), decided in its one
order by every reader alike (``partition``). A node reads only the partitions of its own
clients' rooms, and knows the other nodes' members there
as stubs (``stubs``). What it does:

- a client's event is made on this node's core, at once, as in one process; what changed in
  the rooms then goes to their partitions: a ``leave`` per partition of the rooms a connection
  left, an ``update`` per partition of those whose entry changed (setPresence, apiField);
- a join (login or ``roomJoin``) is made on the core first, untold, then asked of the rooms'
  partitions (``reservations.RoomRequest``: one ``join``, or reservations in ascending
  partition order); only once every partition admitted it is it told and answered, else it
  is undone and refused as the core refuses a full or missing room. Before the core decides a
  join, the node starts reading the rooms' partitions, so its core knows their members;
- the effects of every fact read go to ``Stubs`` (the pushes about other nodes' members to this
  node's sockets), to the request they decide, and to the stubs' addresses (``where``);
- a relay to a stub goes to its node's inbox (``inbox``), as in the log cluster, stamped with
  where its sender's facts stand; that node holds it until it applied them (``factorder``);
- a node whose alive key expired is reaped by every node that shows its members: ``node-gone``
  to each partition it reads (idempotent); a node reaped while it lived (paused, cut off)
  says ``node-back`` where it reads its own ``node-gone`` and asks its clients' rooms again,
  as every node does when the cluster's epoch says Redis came back empty;
- a keyed connection whose socket dropped is held here (its partitions not told, relays for it
  queued, from the inbox too); a login with its key on another node takes it over there
  (``partitionholds``: the hold directory, the hand-over, the next login number); a node that stops
  hands its holds to the others; a node that dies leaves wills the first reaper adopts
  (``partitionwills``);
- any reader of a partition may snapshot it (``PartitionSnapshots``, one per lock period).

``max_rooms_per_app`` is counted by room-name claims in Redis (``roomclaims``), ``getRoomList``
answered from the cluster's room counts (``roomcounts``). The admin API and server code's push
API (``directory``) ask every node, each answering for its own connections
(``clusterqueries``, made by ``directory``); a room field server code sets, and a room it
creates or deletes, go to the room's partition (``set_room_field``, ``create_room``,
``delete_room``); server code's other changes go where their object lives
(``clusterchanges``). A dead node's keyed connections are adopted from their wills
(``partitionwills``) before its ``node-gone``. A connection's groups travel in its entries
(``stubs.GROUPS``: room and peer messages with a group are decided here), and a client's
message to a group alone goes to the nodes the group directory names (``groupdirectory``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..engine import (
    Carrier,
    EngineUnavailable,
    Pending,
    Step,
    hold_with_unconfirmed,
    resend_unconfirmed,
)
from ..protocol import control
from ..protocol.core import Core
from ..protocol.decisions import (
    Answer,
    Decision,
    JoinAnswer,
    JoinPhase,
    JoinRequested,
    LoginAdmitted,
    LoginAnswer,
    LoginRequested,
)
from ..protocol.delivery import RELAYED, STAMP, Ledger, Seen, stamp_of
from ..protocol.errors import EasyRtcError, ErrorCode
from ..protocol.hold import Held
from ..protocol.model import Connection, Group, Peer, Room
from ..protocol.outcome import Fanout, Json, Outcome, Push, Reply, refusal
from ..protocol.relay import group_body
from ..protocol.roomdata import client_entry, leave_state, room_data
from ..protocol.stock import stock_answer
from ..protocol.validation import as_map
from .clusterchanges import ClusterChanges
from .clusterqueries import ClusterQueries
from .factorder import WRITTEN, FactMarks, FactOrder
from .facts import (
    Abort,
    Fact,
    FactError,
    Keep,
    Leave,
    NodeBack,
    NodeGone,
    Remove,
    Reserve,
    SetField,
    Update,
    decode,
    encode,
)
from .groupdirectory import GroupDirectory
from .health import ReaderHealth
from .inbox import Inbox
from .keys import ClusterKeys, new_node_id
from .links import DirectLinks, Dropped, Outbound
from .liveness import new_epoch
from .log import decode_fields, encode_fields
from .partition import (
    FULL,
    GONE,
    MISSING,
    TOO_MANY,
    Admitted,
    Denied,
    Effect,
    Granted,
    Left,
    Partition,
    RoomDeleted,
    RoomKept,
    RoomRemoved,
    RoomRules,
)
from .partitionholds import (
    HOLD_ASK,
    HOLD_GIVE,
    Handover,
    HoldDirectory,
    PartitionHolds,
    detach,
    hold_name,
)
from .partitionlog import (
    Appended,
    PartitionLayout,
    PartitionRead,
    PartitionSnapshots,
    PartitionWriter,
    Snapshot,
)
from .partitionwills import SETTLE_POLL, Wills
from .redisclient import REDIS_ERRORS, AsyncClient, topology_of
from .registry import NodeInfo, NodeRegistry
from .replica import NodeSockets
from .reservations import Append, RoomRequest
from .roomclaims import RoomClaims
from .roomcounts import RoomCounts
from .secret import secret_of
from .stubs import GROUPS, KEYED, Stubs, groups_of, set_groups

if TYPE_CHECKING:
    from ..directory import Directory, LocalDirectory
    from ..options import Options
    from ..transport import Ack

log = logging.getLogger("easyrtc_server.cluster")

REQUEST_TIMEOUT: Final = 10.0
"""Seconds a join waits for its partitions' decisions (and a node for a partition it starts
reading) before the event is refused as unavailable."""
LINGER: Final = 30.0
"""Seconds a node keeps reading a partition none of its clients' rooms are in any more: a
client coming back soon finds it loaded."""
SERVER_CODE_LINGER: Final = 2.0
"""Seconds a node keeps reading a partition it started reading only for server code's change
of a room there (``set_room_field``, ``create_room``, ``delete_room``): changes made in a row
share it, and a node with no client in the room soon stops applying its facts."""
RETRY_DELAY: Final = 0.5
STOP_STEP_TIMEOUT: Final = 2.0
ASK_AGAIN_TRIES: Final = 20
"""Times a connection's rooms are asked again after this node was taken for dead or Redis
came back empty, while the partitions do not answer (``RETRY_DELAY`` apart)."""
DEPARTED_TTL_MS: Final = 60_000
"""How long the claims of a dead node's ``disconnect`` hooks are kept: its reapers read its
``node-gone`` within seconds of each other."""
SNAPSHOT_LOCK_MS: Final = 250
LOGIN: Final = 1
"""The login number of a connection's facts; a held connection taken over by another node
joins again there with the next one (``partitionholds``)."""
HANDOVER_TIMEOUT: Final = 5.0
"""Seconds a keyed login waits for the node holding its connection to hand it over; then it
logs in afresh (a hand-over that comes later is held here until its grace ends)."""
RESEND: Final = "resend"
"""Node message ``{"n": easyrtcid, "from": node}``: that connection resumed at ``node``; what
this node relayed to it unconfirmed goes there again (``_resend_to``)."""
GROUP_MESSAGE: Final = "group-msg"
"""Node message ``{"n": app, "g": group, "m": body}``: a client's message to a group alone, for
this node's own members of it (``_group_here``); in its sender's order with its relays."""
LIVE_NAMED_MS: Final = 86_400_000
"""How long the hold directory names the node of a keyed connection that has not dropped (a node
that dies leaves its names behind this long at most; a hold names it again for its grace)."""
MOVED_KEPT: Final = 30.0
"""Seconds a node forwards relays for a connection it handed over (other nodes' stubs point to
it until they read the connection's new join)."""

View = tuple[str, dict[str, Json]]
"""What a partition knows of one connection: its application and, per room, its entry."""


@dataclass(slots=True, eq=False)
class _Asking:
    """One join in flight: its request, what it awaits, the rooms admitted so far."""

    request: RoomRequest
    done: asyncio.Future[str]
    admitted: set[str] = field(default_factory=set)
    chain: asyncio.Future[Any] | None = None
    """The appends it made, one after the other (``_append_in_turn``)."""


@dataclass(slots=True, eq=False)
class _Claim:
    """This node's claim of one room name (``roomclaims``): asked once, held by its joins."""

    granted: asyncio.Future[bool]
    holders: int = 0
    kept: bool = False
    """A join that held it created the room: the claim is the room's now."""


class PartitionedNode:
    """One node of the partitioned cluster named by ``options.cluster_name``."""

    def __init__(self, carrier: Carrier, options: Options, *, node_id: str | None = None) -> None:
        if options.redis_url is None:
            raise ValueError("a cluster node needs redis_url")
        self.carrier = carrier
        self.options = options
        self.node_id = node_id or new_node_id()
        self.topology = topology_of(options)
        self.keys = ClusterKeys(options.cluster_name, hash_tags=self.topology.hash_tags)
        self.redis: AsyncClient = self.topology.client()
        self.registry = NodeRegistry.of_node(
            self.topology, self.keys, NodeInfo(self.node_id), options.cluster_alive_ttl
        )
        self.health = ReaderHealth()
        links = carrier.links
        self.core = Core(options, scope=NodeSockets(self.node_id, links.__contains__))
        self.holds = PartitionHolds(options, self.core.now)
        """This node's holds (``partitionholds``): held here, handed over on request."""
        self.core.state.holds = self.holds
        self.stubs = Stubs(self.core.state, self.node_id)
        outbound: Callable[[Dropped], Outbound] | None = None
        if options.cluster_relay == "direct":  # the inbox's messages over links, not Redis
            outbound = partial(DirectLinks, self.node_id, self.registry, secret_of(options))
        self.inbox = Inbox(
            self.topology.channels(),
            self.keys,
            self.node_id,
            self._from_inbox,
            self.health,
            outbound=outbound,
        )
        self.marks = FactMarks()
        """The stamp of each of this node's clients' relays (``factorder``)."""
        self.order = FactOrder(options.cluster_order_wait)
        """Relays from other nodes held until their senders' facts are applied here."""
        self.health.order = self.order.lates
        self._order_timer: asyncio.TimerHandle | None = None
        self._order_logged = False
        self._settled: dict[int, int] = {}
        """partition -> the number of its last fact applied and told here (``_told_at``)."""
        self.layout = PartitionLayout(
            self.keys, partitions=options.cluster_partitions, groups=options.cluster_read_groups
        )
        self.reader = self.topology.partition_source(self.layout)
        self.writer = PartitionWriter(self.redis, self.layout, self.reader.append_script)
        self.snapshots = PartitionSnapshots(self.redis, self.layout)
        self.counts = RoomCounts(self.redis, self.keys, self.node_id)
        """Every application's rooms and members, cluster-wide (``getRoomList``)."""
        # the partitions decide each room; max_rooms_per_app is the claims' (``roomclaims``)
        rules = replace(RoomRules.of(options.protocol), max_rooms_per_app=0)
        self._rules: Callable[[str], RoomRules] = lambda app: rules
        self.parts: dict[int, Partition] = {}
        """The partitions this node reads, as applied so far."""
        self._loaded: dict[int, asyncio.Future[None]] = {}
        """Partitions gained: done once their snapshot is loaded."""
        self._needs: Counter[int] = Counter()
        """Why each partition is read: this node's memberships in its rooms, its connections
        in the application whose census it holds, and joins in flight."""
        self._dropping: dict[int, asyncio.TimerHandle] = {}
        self._position: dict[int, tuple[str, int]] = {}
        """Per partition: the stream id and number of the last fact applied."""
        self._since_snapshot: Counter[int] = Counter()
        self._told: dict[str, View] = {}
        """easyrtcid -> what the partitions know of this node's connection."""
        self._asking: dict[str, _Asking] = {}
        self._rids = itertools.count(1)
        self.where: dict[str, str] = {}
        """easyrtcid of a stub -> the node holding its socket (relays go there)."""
        self._reaped: set[str] = set()
        self._alive: set[str] = set()
        self._reasking: dict[str, set[str]] = {}
        """Rooms of this node's connections asked again (``_back_in``): not theirs to undo
        when another join of theirs is refused meanwhile."""
        self._coming_back: set[int] = set()
        """Partitions that took this node for dead and are being told it is back."""
        self._restate_counts = False
        """This node was taken for dead: its share of the room counts is written again."""
        self._epoch: bytes | str | None = None
        """The cluster's epoch (``keys.epoch``) as this node knows it: a Redis that came back
        empty has none, then a new one."""
        """The other nodes alive at the last look (``_reap_forever``)."""
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.ledger = Ledger(
            self.node_id,
            options.resume_queue_messages,
            options.resume_queue_bytes,
            self.core.now,
        )
        self.claims = RoomClaims(self.redis, self.keys)
        """``max_rooms_per_app``, counted in Redis rather than in a census partition."""
        self._limit = options.max_rooms_per_app
        self._default_room = options.room_default_name if options.room_default_enable else None
        self._progress = asyncio.Event()
        """Set (and replaced) after each read is applied and its pushes carried out."""
        self._claiming: dict[tuple[str, str], _Claim] = {}
        """(application, room name) -> this node's claim of it, shared by its joins."""
        self._room_changes: dict[str, asyncio.Future[RoomKept | RoomDeleted]] = {}
        """rid -> server code's ``keep`` or ``remove`` waiting for its partition's answer."""
        self._keep_claims: set[str] = set()
        """rids of ``keep`` facts whose room name this node claimed (``max_rooms_per_app``):
        the room's claim if the fact made it, else given back (``_follow``)."""
        self._posted: dict[int, int] = {}
        """partition -> the number of the last fact this node posted there and had written,
        until it is known applied (``_own_facts_applied``)."""
        self.holds_directory = HoldDirectory(self.redis, self.keys, self.health)
        """Which node holds each keyed connection (``partitionholds``); not ``directory``."""
        self.wills = Wills(self.redis, self.keys, self.node_id, self.health)
        """What another node needs to hold this node's keyed connections if it dies
        (``partitionwills``)."""
        self._seen: dict[str, Seen] = {}
        """Per keyed connection of this node: the stamped relays done with here (confirmed
        by its client, or queued in its hold), so that a second copy (an origin sending again
        what a hand-over carried, or what was forwarded) is dropped (``_known``)."""
        self._taken_check: asyncio.Future[None] | None = None
        """Back from being taken for dead: the look for this node's connections another node
        adopted meanwhile (``_let_taken_go``), shared by the partitions asked again."""
        self._logins: dict[str, int] = {}
        """easyrtcid -> its login number, where not ``LOGIN`` (taken over from another node)."""
        self._named: dict[str, str] = {}
        """The hold directory's name of each keyed connection of this node (live or held) -> its
        easyrtcid."""
        self._handovers: dict[str, asyncio.Future[bool]] = {}
        """The hold directory's name -> a hand-over this node asked for (True: installed)."""
        self._moved: dict[str, str] = {}
        """easyrtcid of a connection this node handed over -> the node it went to."""
        self._moved_names: dict[str, str] = {}
        """The hold directory's name of a connection this node handed over -> the node it went
        to (an ask that comes here still goes on there)."""
        self._reconciled: Counter[str] = Counter()
        """What the partitions read anew in this read found lacking (``_reconcile``)."""
        self._installing: dict[str, asyncio.Future[bool]] = {}
        """The hold directory's name -> a hand-over to this node being installed."""
        self._arriving: dict[str, list[Push]] = {}
        """easyrtcid of a hand-over being installed -> the relays that came for it meanwhile
        (queued in its hold once it is installed)."""
        self._handed: dict[str, asyncio.Future[None]] = {}
        """Held connections handed over, until a partition shows them on their new node (or
        gone): a node that stops waits for them (other nodes' relays still come here until
        then, and are forwarded)."""
        self.changes = ClusterChanges(
            self.core,
            carrier,
            self.redis,
            self.keys,
            tell=self._tell_again,
            set_room_field=self._set_room_field,
            create_room=self.create_room,
            delete_room=self.delete_room,
            health=self.health,
        )
        """Server code's changes for the whole cluster (``clusterchanges``)."""
        self.groups = GroupDirectory(self.redis, self.keys, self.node_id, self.health)
        """Which nodes have members of each group (``groupdirectory``): a client's message
        to a group alone goes to them."""
        self._grouped: dict[str, tuple[str, frozenset[str]]] = {}
        """easyrtcid of this node's connection -> its application and groups, as the group
        directory counts them."""

    @property
    def role(self) -> str:
        return (
            f"as node {self.node_id} of partitioned cluster {self.options.cluster_name} "
            f"({self.layout.partitions} partitions)"
        )

    # -- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._agree_on_layout()
        await self._epoch_changed()
        await self.registry.start()
        await self.inbox.start()
        self._loops = [
            asyncio.create_task(self.writer.run(), name="partition-writer"),
            asyncio.create_task(self.counts.run(), name="room-counts"),
            asyncio.create_task(self.claims.run(), name="room-claims"),
            asyncio.create_task(self.holds_directory.run(), name="hold-directory"),
            asyncio.create_task(self.wills.run(), name="wills"),
            asyncio.create_task(self.groups.run(), name="group-directory"),
            asyncio.create_task(self.changes.run(), name="login-fields"),
            asyncio.create_task(self._read_forever(), name="partition-reader"),
            asyncio.create_task(self._reap_forever(), name="partition-reaper"),
        ]
        log.info(
            "cluster node %s of %r started (partitioned state, %d partitions)",
            self.node_id,
            self.options.cluster_name,
            self.layout.partitions,
        )

    async def stop(self) -> None:
        """Leave the cluster: the holds go to the other nodes (``_hand_over_holds``), the
        facts of the connections closed meanwhile are written first, its wills deleted, each
        step bounded. The relays held for their senders' facts go first (``factorder``): to
        held connections they are queued and handed over with them."""
        await self._deliver_ordered(self.order.drain())
        try:
            async with asyncio.timeout(HANDOVER_TIMEOUT + STOP_STEP_TIMEOUT):
                await self._hand_over_holds()
        except (TimeoutError, *REDIS_ERRORS) as exc:
            log.warning("leaving the cluster: not every hold was handed over (%r)", exc)
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_STEP_TIMEOUT)
        try:
            async with asyncio.timeout(STOP_STEP_TIMEOUT):
                await self.wills.clear()  # before its alive key goes: nothing left to adopt
        except (TimeoutError, *REDIS_ERRORS) as exc:
            log.warning("leaving the cluster: its wills were not cleared (%r)", exc)
        for timer in self._dropping.values():
            timer.cancel()
        self._dropping.clear()
        if self._order_timer is not None:
            self._order_timer.cancel()
            self._order_timer = None
        loops, self._loops = self._loops, []
        for task in loops:
            task.cancel()
        if loops:
            await asyncio.wait(loops, timeout=STOP_STEP_TIMEOUT)
        self.groups.release()  # nothing written from now on: nobody waits for it
        self.changes.release()
        steps = (
            self.counts.aclose,
            self.reader.aclose,
            self.inbox.stop,
            self.registry.stop,
            self.topology.aclose,
        )
        for step in steps:
            try:
                async with asyncio.timeout(STOP_STEP_TIMEOUT):
                    await step()
            except (TimeoutError, *REDIS_ERRORS) as exc:
                log.warning("leaving the cluster: %s did not finish (%r)", step.__qualname__, exc)

    # -- the engine seam -------------------------------------------------------------------

    def open(self, remote: str | None, resume_key: Any, resume_token: Any) -> Peer:
        """Its resume key's digest is kept; no token (``partitionholds``)."""
        return self.core.open(remote, resume_key=resume_key)

    def hold(self, peer: Peer) -> bool:
        """Held here, as in one process: its partitions are not told, what its client had
        not confirmed goes first in its queue, and the hold directory names this node."""
        if not self._hold(peer):
            return False
        cid = peer.easyrtcid
        digest = self.holds.key_of.get(cid)
        if digest is not None:
            name = hold_name(digest)
            self._named[name] = cid
            self.holds_directory.put(name, self.node_id, self.holds.grace_ms)
        return True

    def _hold(self, peer: Peer) -> bool:
        return hold_with_unconfirmed(self.core, self.ledger, peer)

    def holds_outlive_stop(self) -> bool:
        """A hold made as this node stops is handed over to another node (``stop``)."""
        return True

    def receive(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> Step | Pending:
        step = self._receive(peer, event, data, ack)
        if self.carrier.stock_decisions and isinstance(step, Decision):
            return self._stock(peer, step, ack)
        return step

    def _stock(self, peer: Peer, step: Decision, ack: Ack | None) -> Pending:
        """The decisions of an event answered here as the stock hooks answer them (the
        server's hooks decide as those: ``Carrier.stock_decisions``), without a round through
        the server per decision; one they do not answer goes back to the server."""

        async def answered() -> Step:
            current: Step | Pending = step
            before = peer.easyrtcid
            while True:
                if isinstance(current, Outcome):
                    await self.carrier.deliver(peer, current, ack)
                    if peer.easyrtcid != before:  # resumed: the server resends after
                        await self.resend(peer.easyrtcid)  # an outcome, not a pending
                    return current
                if not isinstance(current, Decision):  # pending: carried out already
                    current = await current
                    if isinstance(current, Outcome):
                        return current
                    continue
                answer = stock_answer(current, self.options, answering=True)
                if answer is None:
                    return current
                current = self.answer(peer, current, answer, ack)

        return answered()

    def _receive(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> Step | Pending:
        conn = peer.connection
        if event != "easyrtcCmd" or conn is None or ack is None or type(data) is not dict:
            if (
                event == "easyrtcMsg"
                and conn is not None
                and type(data) is dict
                and type(data.get("targetGroup")) is str
                and conn.app.options.group_name_regexp.test(data["targetGroup"])
                and "targetRoom" not in data
                and "targetEasyrtcid" not in data
            ):
                return self._group_message(peer, conn, data, ack)
            return self.core.receive(peer, event, data, ack is not None)
        msg_type = data.get("msgType")
        if msg_type == "getRoomList" and "msgData" not in data:
            return self._room_list(peer, conn, ack)
        if msg_type == "roomJoin":
            wanted = self._partitions_of(conn.app.name, _asked_rooms(data))
            if not self._reading(wanted):  # its rooms' members known before the core decides
                return self._after_gain(
                    peer, ack, wanted, lambda: self.core.receive(peer, event, data, True)
                )
            return self.core.receive(peer, event, data, True)
        rooms_before = len(conn.rooms)
        step = self.core.receive(peer, event, data, True)
        posted = []
        if msg_type in ("roomLeave", "setPresence", "setRoomApiField"):
            posted = self._tell(peer.easyrtcid, conn)
        if (
            msg_type == "roomLeave"
            and isinstance(step, Outcome)
            and len(conn.rooms) == rooms_before
        ):
            return self._after_catching_up(peer, conn, step, ack)
        if posted and isinstance(step, Outcome):
            return self._after_written(peer, posted, step, ack)
        return step

    def _after_written(
        self, peer: Peer, posted: list[asyncio.Future[Appended]], out: Outcome, ack: Ack | None
    ) -> Pending:
        """``out`` carried out once its facts are in their partitions: what the client does
        after the reply (or another client it tells) comes after them in every partition, as
        with one server (a room left is free for the next join)."""

        async def written() -> Step:
            await asyncio.wait(posted)
            await self.carrier.deliver(peer, out, ack)
            return out

        return written()

    def answer(
        self, peer: Peer, decision: Decision, answer: Answer, ack: Ack | None
    ) -> Step | Pending:
        match decision, answer:
            case LoginRequested(), LoginAnswer():
                if self._may_be_held_elsewhere(peer):
                    return self._after_handover(peer, decision, answer, ack)
                return self._login_answer(peer, decision, answer, ack)
            case JoinRequested(), JoinAnswer():
                step = self.core.answer(decision, answer)
                if _refused(step):  # the stubs may be behind their partitions: look again
                    return self._after_catching_up_join(peer, decision, answer, ack)
                return self._joining(peer, decision, step, ack)
        before = peer.easyrtcid
        step = self.core.answer(decision, answer)
        resumed = peer.easyrtcid != before
        if resumed:  # its login resumed a held connection
            self._took_over(before, peer.easyrtcid)
        written: list[asyncio.Future[None]] = []
        if isinstance(decision, LoginAdmitted) and peer.resume_key is not None:
            written = self._name_keyed(peer)
        conn = peer.connection
        if conn is not None and peer.easyrtcid in self._told:
            self._tell(peer.easyrtcid, conn)
            if self._untold(conn):  # a resume entered rooms it was not in when held
                self._spawn(self._ask_after_resume(peer, conn))
        if written and not resumed and isinstance(step, Outcome):
            return self._named_first(peer, step, ack, written)
        return step

    def _name_keyed(self, peer: Peer) -> list[asyncio.Future[None]]:
        """A keyed login (or resume) done: the hold directory names this node for its key, so a
        client that comes back elsewhere before this node noticed its socket drop finds it,
        and its will is written. The writes (done once sent)."""
        cid, digest = peer.easyrtcid, peer.resume_key
        if digest is None or peer.connection is None or self.holds.key_of.get(cid) != digest:
            return []
        name = hold_name(digest)
        self._named[name] = cid
        written = [self.holds_directory.put(name, self.node_id, LIVE_NAMED_MS)]
        will = self._write_will(cid)
        return written if will is None else [*written, will]

    async def _named_first(
        self, peer: Peer, step: Outcome, ack: Ack | None, written: list[asyncio.Future[None]]
    ) -> Step:
        """A keyed login's token once its name and will are in Redis: a client that has its
        easyrtcid finds it again on another node were this one killed the moment after (one
        batched round trip; at most ``REQUEST_TIMEOUT``, Redis failing)."""
        await asyncio.wait(written, timeout=REQUEST_TIMEOUT)
        await self.carrier.deliver(peer, step, ack)
        return step

    def _took_over(self, before: str, easyrtcid: str) -> None:
        """A login (``before``) resumed ``easyrtcid``: its socket is that easyrtcid's from
        now on, before the resume's outcome is carried out (its token reaches it); a socket
        still open under that easyrtcid here is closed (its client came back)."""
        links = self.carrier.links
        link = links.pop(before, None)
        old = links.pop(easyrtcid, None)
        if link is not None:
            links[easyrtcid] = link
        if old is not None and old is not link:
            self._spawn(old.close())

    def _login_answer(
        self, peer: Peer, decision: LoginRequested, answer: LoginAnswer, ack: Ack | None
    ) -> Step | Pending:
        """The login's rooms' partitions read, then the core decides (their members known)."""
        app_name, rooms = answer.app_name, answer.rooms
        names = rooms if isinstance(rooms, dict) and rooms else {}
        if not names and self.options.room_default_enable:
            names = {self.options.room_default_name: None}
        wanted = self._partitions_of(app_name, names) if isinstance(app_name, str) else set()
        if not self._reading(wanted):
            return self._after_gain(peer, ack, wanted, lambda: self.core.answer(decision, answer))
        return self.core.answer(decision, answer)

    def _after_catching_up_join(
        self, peer: Peer, decision: JoinRequested, answer: Answer, ack: Ack | None
    ) -> Pending:
        """A join the core refused, decided again once this node has applied its rooms'
        partitions up to their last fact: a place freed by a leave another node already
        answered is free here too (its leave is written before its reply)."""

        async def again() -> Step:
            partitions = self._partitions_of(decision.app_name, decision.rooms)
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await self._catch_up(partitions)
            except (TimeoutError, *REDIS_ERRORS) as exc:
                self.health.once("join-catch-up", "a join did not catch up: %r", exc)
            step = self._joining(peer, decision, self.core.answer(decision, answer), ack)
            return await self._carried(peer, step, ack)

        return again()

    async def _carried(self, peer: Peer, step: Step | Pending, ack: Ack | None) -> Step:
        """``step`` from within a pending change: an outcome carried out here, a decision
        handed back, a pending change awaited."""
        if isinstance(step, Outcome):
            await self.carrier.deliver(peer, step, ack)
            return step
        if isinstance(step, Decision):
            return step
        return await step

    def _joining(
        self, peer: Peer, decision: JoinRequested, step: Step, ack: Ack | None
    ) -> Step | Pending:
        """The core's answer to a join: what it entered is asked of the partitions."""
        if decision.phase is JoinPhase.LOGIN:
            if isinstance(step, LoginAdmitted):
                return self._admit_login(peer, step, ack)
            return step
        conn = decision.conn
        if conn is None or not isinstance(step, Outcome) or not self._untold(conn):
            return step  # refused by the core, or only rooms it was in already
        return self._admit_join(peer, conn, list(decision.rooms), step, ack)

    async def close(self, peer: Peer) -> Outcome:
        cid = peer.easyrtcid
        digest = self.holds.key_of.get(cid)
        out = self.core.close(peer)
        await self.carrier.deliver(peer, out, None)
        self._tell(cid, None)
        self.marks.forget(cid)
        self._logins.pop(cid, None)
        self._seen.pop(cid, None)
        if digest is not None:  # a hold that ended (its grace ran out, server code ended it)
            self._forget_hold(hold_name(digest))
            self.wills.drop(hold_name(digest))
        return out

    async def change(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Server code's change, made where its object lives (``clusterchanges``): the
        partitions are then told what changed for this node's connections."""
        result = await self.changes.change(name, args, kwargs)
        for cid in list(self._told):
            self._tell_again(cid)
        await self.groups.written()  # a group message sent after it finds the member's node
        return result

    async def _change_here(self, args: list[Any]) -> Any:
        """Another node's server code's change (``clusterchanges``), answered once the group
        directory has it."""
        answer = await self.changes.here(args)
        await self.groups.written()
        return answer

    def _group_message(self, peer: Peer, conn: Connection, data: Json, ack: Ack | None) -> Pending:
        """A client's ``easyrtcMsg`` to a group alone: the group directory says whether the
        application has the group and which nodes have members (one Redis round trip); the
        core answers it as one process does, its own members get it from here, and each other
        node named gets it once, in the sender's order with its relays (``GROUP_MESSAGE``),
        for its own members. The socket's next event waits for it (order kept)."""

        async def sent() -> Step:
            app, name = conn.app.name, data["targetGroup"]
            try:
                nodes = await self.groups.lookup(app, name)
            except REDIS_ERRORS as exc:  # the members of this node's only
                self.health.once("group-lookup", "a group message reached this node only: %r", exc)
                nodes = set()
            if nodes is not None and name not in conn.app.groups:
                conn.app.groups[name] = Group(name)  # made elsewhere: one process has it
            step = self.core.receive(peer, "easyrtcMsg", data, ack is not None)
            if isinstance(step, Outcome) and nodes and not _refused(step):
                step = self._group_sends(step, conn, data, nodes)
            return await self._carried(peer, step, ack)

        return sent()

    def _group_sends(self, out: Outcome, conn: Connection, data: Json, nodes: set[str]) -> Outcome:
        """``out`` (the core's acked group message) to this node's own members only (the
        stubs are other nodes'), and to each other node with members, once."""
        app, name, sender = conn.app.name, data["targetGroup"], conn.easyrtcid
        sends: list[Any] = []
        body: Json | None = None
        members = self.stubs.members
        for send in out.sends:
            if type(send) is Fanout and send.event == "easyrtcMsg":
                body = send.body
                own = [cid for cid in send.to if (app, cid) not in members]
                if own:
                    sends.append(Fanout(own, send.event, body))
            else:
                sends.append(send)
        if body is None:  # no member here: the body its members elsewhere get
            body = group_body(self.core.state, conn, data)
        for node in sorted(nodes - {self.node_id}):
            item = {"n": app, "g": name, "m": body}
            self.inbox.send(node, "", GROUP_MESSAGE, item, self.marks.stamp(sender, node))
        out.sends = sends
        return out

    def _group_here(self, body: Any, out: Outcome) -> None:
        """Another node's client's group message: to this node's own members of the group (a
        socket or a hold here), not its sender."""
        if (
            type(body) is not dict
            or type(body.get("n")) is not str
            or type(body.get("m")) is not dict
        ):
            raise TypeError("not a group message")
        app = self.core.apps.get(body["n"])
        name = body.get("g")
        group = app.groups.get(name) if app is not None and type(name) is str else None
        if group is None:
            return
        msg = body["m"]
        sender = msg.get("senderEasyrtcid")
        links, held = self.carrier.links, self.holds.held
        to = [cid for cid in group.members if cid != sender and (cid in links or cid in held)]
        if to:
            out.sends.append(Fanout(sorted(to), "easyrtcMsg", msg))

    def _note_groups(self, cid: str, conn: Connection | None) -> None:
        """This node's connection ``cid`` in the groups of ``conn`` (None: in none here any
        more), as the group directory counts them."""
        now = frozenset(conn.groups) if conn is not None and conn.groups else frozenset()
        before = self._grouped.get(cid)
        if before is None and not now:
            return
        app, old = before if before is not None else ("", frozenset())
        if conn is None or conn.app.name != app:  # in none of them any more
            for name in old:
                self.groups.left(app, name)
            old = frozenset()
        if conn is not None:
            app = conn.app.name
            for name in old - now:
                self.groups.left(app, name)
            for name in now - old:
                self.groups.joined(app, name)
        if now:
            self._grouped[cid] = (app, now)
        else:
            self._grouped.pop(cid, None)

    def _tell_again(self, cid: str) -> None:
        peer = self.core.peers.get(cid)
        self._tell(cid, peer.connection if peer is not None else None)

    async def _set_room_field(
        self, app: str, room: str, name: str, value: Any, shared: bool
    ) -> None:
        await self.set_room_field(app, room, name, value, shared=shared)

    def route(self, send: Push) -> ErrorCode | None:
        """A push for a connection held here: queued (or refused when its queue is full); for
        a stub: to its node's inbox (dropped if nobody here knows it)."""
        if send.to in self.holds.held:
            return self._queue(send)
        node = self.where.get(send.to)
        if node is not None and node != self.node_id:
            body = send.body
            sender = None
            if type(body) is dict:
                sender = body.get("senderEasyrtcid")
                if send.to in self.stubs.keyed and RELAYED in body and STAMP not in body:
                    body = self._kept(send.to, send.event, body)
            self.inbox.send(node, send.to, send.event, body, self.marks.stamp(sender, node))
        return None

    def _kept(self, to: str, event: str, body: Json) -> Json:
        """``body`` stamped for keyed ``to`` and kept until its client confirms it, wherever
        it is by then: sent again to the node it moves to (adopted after its node died, or
        handed over), as the log cluster's sender keeps it (``delivery``)."""
        ledger = self.ledger
        body = ledger.stamp(to, body)
        ledger.keep(to, body[STAMP][1], event, body)
        return body

    def route_fanout(self, send: Fanout, to: list[str]) -> ErrorCode | None:
        by_node: dict[str, list[str]] = {}
        where = self.where
        held = self.holds.held
        keyed = self.stubs.keyed if RELAYED in send.body else ()
        code = None
        for cid in to:
            if cid in held:
                code = self.holds.take(Push(cid, send.event, send.body_for(cid))) or code
                continue
            if cid in keyed:  # stamped and kept for it alone (``route``)
                code = self.route(Push(cid, send.event, send.body_for(cid))) or code
                continue
            node = where.get(cid)
            if node is not None and node != self.node_id:
                by_node.setdefault(node, []).append(cid)
        sender = send.body.get("senderEasyrtcid")
        for node, ids in by_node.items():
            after = self.marks.stamp(sender, node)
            if send.after or len(ids) == 1:
                for cid in ids:
                    self.inbox.send(node, cid, send.event, send.body_for(cid), after)
            else:
                self.inbox.send(node, ids, send.event, send.body, after)
        return code

    def disconnect(self, easyrtcid: str) -> bool:
        node = self.where.get(easyrtcid)
        if node is None or node == self.node_id:
            return False
        self.inbox.send(node, easyrtcid, None, None)
        return True

    def confirmed(self, origin: str, to: str, n: int) -> None:
        """Confirmed to the node that kept it (through its inbox, batched as relays are); a
        second copy of it here is dropped (``_known``)."""
        seen = self._seen.get(to)
        if seen is None and to in self.holds.key_of:
            seen = self._seen[to] = Seen()
        if seen is not None:
            seen.first_time((origin, n))
        if origin == self.ledger.origin:
            self.ledger.confirm(to, n)
        else:
            self.inbox.send(origin, to, None, n)

    def _queue(self, send: Push) -> ErrorCode | None:
        """A push into its connection's hold here, unless it is a second copy; a stamped one
        counts as done here (the hold, and a hand-over of it, carries it)."""
        stamp = stamp_of(send.body)
        if stamp is not None:
            seen = self._seen.get(send.to)
            if seen is None:
                seen = self._seen[send.to] = Seen()
            if not seen.first_time(stamp):
                return None
        return self.holds.take(send)

    def _known(self, cid: str, body: Any, link: Any, taken: set[tuple[str, str, int]]) -> bool:
        """``body`` is a second copy of a relay done with here (confirmed; or sent, to a
        client that does not confirm): its origin told so, dropped. Else its origin is noted
        (asked to send again what is unconfirmed after a resume)."""
        stamp = stamp_of(body)
        if stamp is None:
            return False
        seen = self._seen.get(cid)
        if seen is None:
            seen = self._seen[cid] = Seen()
        key = (cid, *stamp)
        if key in taken:  # a second copy in this batch: the first one goes
            return True
        if not getattr(link, "confirms", False) and seen.first_time(stamp):
            return False  # sent now: done with
        if seen.has(stamp):
            if stamp[0] != self.ledger.origin:
                self.inbox.send(stamp[0], cid, None, stamp[1])
            return True
        seen.note(stamp[0])
        taken.add(key)
        return False

    def _resend_to(self, node: str, cid: str) -> None:
        """Stub ``cid`` moved to ``node``: what this node relayed to it unconfirmed goes
        again, in order (its client drops what it had: ``delivery``)."""
        for event, body in self.ledger.pending(cid):
            self.inbox.send(node, cid, event, body)

    async def resend(self, easyrtcid: str) -> None:
        """Resumed here: what its client had not confirmed is sent again, by this node and
        by the other nodes that relayed to it here (``RESEND``)."""
        await resend_unconfirmed(self.carrier, self.ledger, easyrtcid)
        seen = self._seen.get(easyrtcid)
        for origin in seen.origins() if seen is not None else ():
            if origin != self.node_id:
                self.inbox.send(origin, "", RESEND, {"n": easyrtcid, "from": self.node_id})

    def directory(self, local: LocalDirectory) -> Directory:
        """No node knows every connection: the whole cluster's answers are asked of every
        node (``clusterqueries``), a room field goes to its partition (``set_room_field``)."""

        async def alive() -> list[str]:
            return list(await self.registry.alive_nodes())

        queries = ClusterQueries(
            local,
            node_id=self.node_id,
            keys=self.keys,
            channels=self.topology.channels(),
            alive=alive,
            set_room_field=self._set_room_field,
            health=self.health,
            change=self._change_here,
            subscribed=self.changes.load,
        )
        self.changes.queries = queries
        return queries

    async def set_room_field(
        self, app: str, room: str, name: str, value: Any, *, shared: bool = True
    ) -> None:
        """Server code's room field for the whole cluster: a ``field`` fact in the room's
        partition, which every node reading it applies, telling its own members
        (``Stubs``). This node reads the partition meanwhile (to know the room is there) and
        returns once it applied the fact. KeyError: no such room; ValueError: an improper
        field name."""
        if not self.options.protocol.field_name_regexp.test(name):
            raise ValueError(f"improper field name {name!r}")
        fact = encode(SetField(app, room, name, value, shared))  # not JSON: TypeError here
        partition = self.layout.room_partition(app, room)
        linger = self._need_for_server_code(partition)
        try:
            await self._gain({partition})
            part = self.parts.get(partition)
            there = part.room(app, room) if part is not None else None
            default = room == self._default_room and app in self.core.apps
            if (there is None or not there.created) and not default:
                raise KeyError(f"no room {room!r} in application {app!r}")
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    written = await self.writer.post(partition, fact)
                    await self._applied_up_to({partition: written.seq})
                    if (part := self.parts.get(partition)) and part.room(app, room) is not None:
                        await self.counts.kept(app, room, written.seq)  # listed when empty
            except (TimeoutError, *REDIS_ERRORS) as exc:
                raise EngineUnavailable(f"the room's partition did not answer: {exc!r}") from None
        finally:
            self._unneed([partition], linger)

    async def create_room(self, app: str, room: str) -> Room:
        """Server code's ``create_room`` for the whole cluster: a ``keep`` fact in the room's
        partition, which makes the room if it is missing and keeps it when empty, on every
        node reading it (``Stubs``); listed by every node's ``getRoomList`` (``counts``), its
        name claimed against ``max_rooms_per_app`` (past the limit, as one process creates
        it). This node reads the partition until the fact is applied. The caller checked the
        application and the name (``clusterchanges``)."""
        partition = self.layout.room_partition(app, room)
        rid = f"{self.node_id}.{next(self._rids)}"
        claim = bool(self._limit) and room != self._default_room
        linger = self._need_for_server_code(partition)
        try:
            await self._gain({partition})
            if claim:
                await self._unavailable_on_failure(self.claims.claim(app, [room], 0, None))
                self._keep_claims.add(rid)
            answer = await self._room_change(partition, Keep(rid, self.node_id, app, room))
            if answer is None:  # it may be written yet: its claim is settled if it is read
                raise EngineUnavailable("the room's partition could not be written")
            await self.claims.flushed()  # a claim it did not keep is given back by now
        finally:
            self._unneed([partition], linger)
        return self.core.apps[app].rooms[room]  # made here by the fact (``Stubs``)

    async def delete_room(self, app: str, room: str) -> None:
        """Server code's ``delete_room`` for the whole cluster: a ``remove`` fact in the
        room's partition, which deletes the room if it is empty, on every node reading it
        (``Stubs``), and takes it off the list of kept rooms (``counts``); its name's claim
        is given back (``_follow``). KeyError: no such room; ``EasyRtcError`` (bad room): it
        has members, on any node."""
        partition = self.layout.room_partition(app, room)
        rid = f"{self.node_id}.{next(self._rids)}"
        linger = self._need_for_server_code(partition)
        try:
            await self._gain({partition})
            answer = await self._room_change(partition, Remove(rid, self.node_id, app, room))
        finally:
            self._unneed([partition], linger)
        if answer is None:
            raise EngineUnavailable("the room's partition could not be written")
        seq, decided = answer
        if isinstance(decided, RoomDeleted) and decided.result == MISSING:
            raise KeyError(f"no room {room!r} in application {app!r}")
        if isinstance(decided, RoomDeleted) and decided.result:
            raise EasyRtcError(ErrorCode.MSG_REJECT_BAD_ROOM, f"room {room!r} is not empty")
        await self._unavailable_on_failure(self.counts.deleted(app, room, seq))
        await self.claims.flushed()  # its place is free for the next join, on any node

    async def _room_change(
        self, partition: int, fact: Keep | Remove
    ) -> tuple[int, RoomKept | RoomDeleted] | None:
        """Server code's ``fact`` written and decided by its partition: its number and the
        decision; None if it could not be written. A ``keep`` lists its room before it is
        decided (a ``remove`` after it is written later: it wins, ``RoomCounts.kept``)."""
        decided = self._room_changes[fact.rid] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                try:
                    written = await self.writer.post(partition, encode(fact))
                except REDIS_ERRORS:
                    return None
                if isinstance(fact, Keep):
                    await self.counts.kept(fact.app, fact.room, written.seq)
                return written.seq, await decided
        except (TimeoutError, *REDIS_ERRORS) as exc:
            raise EngineUnavailable(f"the room's partition did not answer: {exc!r}") from None
        finally:
            self._room_changes.pop(fact.rid, None)

    @staticmethod
    async def _unavailable_on_failure(work: Awaitable[Any]) -> Any:
        try:
            return await work
        except REDIS_ERRORS as exc:
            raise EngineUnavailable(f"Redis did not answer: {exc!r}") from None

    def _room_list(self, peer: Peer, conn: Connection, ack: Ack | None) -> Pending:
        """``getRoomList`` for the whole cluster: the rooms with members from the room
        counts, and the rooms this node knows (kept while empty, such as the default room),
        in the order this node knows them."""

        async def listed() -> Step:
            app = conn.app
            try:
                counts = await self.counts.rooms(app.name)
            except REDIS_ERRORS as exc:
                raise EngineUnavailable(str(exc)) from None
            rooms: dict[str, Json] = {}
            for name, room in app.rooms.items():
                number = max(counts.pop(name, 0), len(room.members))
                rooms[name] = {"roomName": name, "numberClients": number}
            for name in sorted(counts):
                rooms[name] = {"roomName": name, "numberClients": counts[name]}
            out = Outcome().reply({"msgType": "roomList", "msgData": {"roomList": rooms}})
            await self.carrier.deliver(peer, out, ack)
            return out

        return listed()

    # -- catching up -----------------------------------------------------------------------

    def _after_catching_up(self, peer: Peer, conn: Connection, out: Outcome, ack: Ack) -> Pending:
        """``out``, a roomLeave's that left nothing, carried out once this node has caught up
        with ``conn``'s rooms: its own facts posted before are written, and their partitions
        applied up to their last fact then (as the log cluster answers any state change after
        its log round trip; the differential suite's cluster barrier waits on it). Answered
        anyway after ``REQUEST_TIMEOUT``: nothing changed."""
        partitions = {self.layout.room_partition(conn.app.name, name) for name in conn.rooms}

        async def caught_up() -> Step:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await self._catch_up(partitions)
            except (TimeoutError, *REDIS_ERRORS) as exc:
                self.health.once("catch-up", "a roomLeave did not catch up: %r", exc)
            await self.carrier.deliver(peer, out, ack)
            return out

        return caught_up()

    async def _catch_up(self, partitions: set[int]) -> None:
        """This node's facts written, then ``partitions`` applied up to their last fact."""
        await self._posted_written()
        wanted = sorted(partitions)
        async with self.redis.pipeline(transaction=False) as pipe:  # one connection
            for partition in wanted:
                pipe.get(self.layout.of(partition).seq)
            ends = await pipe.execute()
        await self._applied_up_to({p: int(end or 0) for p, end in zip(wanted, ends, strict=True)})

    # -- joins -----------------------------------------------------------------------------

    async def _ask_past_gone(self, conn: Connection) -> str:
        """``_ask``, asked again while a partition denies it ``gone``: this node was taken for
        dead there and is saying ``node-back`` (``_come_back``)."""
        result = await self._ask(conn)
        for _ in range(ASK_AGAIN_TRIES):
            if result != GONE:
                break
            await asyncio.sleep(RETRY_DELAY)
            result = await self._ask(conn)
        return result

    def _admit_login(self, peer: Peer, admitted: LoginAdmitted, ack: Ack | None) -> Pending:
        async def asked() -> Step:
            fields = self._spawn(self.changes.at_login(admitted.conn))  # meanwhile
            result = await self._ask_past_gone(admitted.conn)
            if result == "admitted":
                await fields  # its token shows them
                return admitted
            code = ErrorCode.LOGIN_GEN_FAIL if result == FULL else ErrorCode.LOGIN_BAD_ROOM
            out = self.core.refuse(admitted, code)
            await self.carrier.deliver(peer, out, ack)
            self._tell(peer.easyrtcid, peer.connection)
            return out

        return asked()

    def _admit_join(
        self, peer: Peer, conn: Connection, names: list[str], out: Outcome, ack: Ack | None
    ) -> Pending:
        async def asked() -> Step:
            result = await self._ask_past_gone(conn)
            if result == "admitted":
                # members came and went while the partitions decided (their updates reach it
                # first): the reply lists the rooms as they are now, not as the core saw them
                out.replace_reply(self.core.join_reply(conn, names))
                await self.carrier.deliver(peer, out, ack)
                return out
            undone = Outcome()
            asked_again = self._reasking.get(conn.easyrtcid, set())  # not this join's rooms
            for name in self._untold(conn):
                if name not in asked_again:
                    self.core.state.leave(conn, name, undone, tell=False)
            refused = refusal(
                self.core.now(), conn.easyrtcid, "roomJoin", ErrorCode.MSG_REJECT_BAD_ROOM
            )
            await self.carrier.deliver(peer, refused, ack)
            return refused

        return asked()

    def _untold(self, conn: Connection) -> list[str]:
        """The rooms ``conn`` is in on the core that its partitions do not know of."""
        told = self._told.get(conn.easyrtcid)
        known = told[1] if told is not None and told[0] == conn.app.name else {}
        return [name for name in conn.rooms if name not in known]

    async def _ask(self, conn: Connection) -> str:
        """The rooms ``conn`` is in on the core and not yet in its partitions, asked of them:
        ``"admitted"`` or the refusal's reason. Once admitted, the partitions know it."""
        cid, app = conn.easyrtcid, conn.app.name
        told = self._told.get(cid)
        if told is not None and told[0] != app:  # moved to another application: left there
            self._tell(cid, None)
            told = None
        known = told[1] if told is not None else {}
        keyed = self._keyed(cid)
        rooms = {name: _entry(conn, name, keyed) for name in conn.rooms if name not in known}
        if not rooms:
            return "admitted"
        wanted = self._partitions_of(app, rooms)
        self._need(wanted)
        try:
            await self._gain(wanted)
            return await self._request(conn, app, rooms)
        finally:
            self._unneed(wanted)

    async def _request(self, conn: Connection, app: str, rooms: dict[str, Json]) -> str:
        cid = conn.easyrtcid
        layout = self.layout
        expect = [
            name
            for name in rooms
            if self.parts[layout.room_partition(app, name)].room(app, name) is None
        ]
        claimed: list[str] = []
        names = [name for name in expect if name != self._default_room]
        if self._limit and names:  # max_rooms_per_app: the names it may create, claimed
            try:
                granted = await self._claim(app, names)
                if not granted and (self._posted or self._tasks):
                    # a room this node's clients just left may be on its way out (its claim
                    # is given back once its leave is read back): as in one process, a join
                    # after that leave's reply finds the place free
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        await self._own_facts_applied()
                    granted = await self._claim(app, names)
                if not granted:
                    return TOO_MANY
            except (TimeoutError, *REDIS_ERRORS) as exc:
                raise EngineUnavailable(str(exc)) from None
            claimed = names
        rid = f"{self.node_id}.{next(self._rids)}"
        request = RoomRequest(
            rid,
            self.node_id,
            app,
            cid,
            self._logins.get(cid, LOGIN),
            rooms,
            partial(layout.room_partition, app),
            None,
            frozenset(expect),
        )
        asking = _Asking(request, asyncio.get_running_loop().create_future())
        self._asking[rid] = asking
        result = "unavailable"
        try:
            self._append_in_turn(asking, request.start())
            async with asyncio.timeout(REQUEST_TIMEOUT):
                result = await asking.done
        except TimeoutError:
            self._give_up(asking)
            raise EngineUnavailable("the rooms' partitions did not decide in time") from None
        finally:
            del self._asking[rid]
            created = set(request.creates) if result == "admitted" else set()
            self._unclaim(app, claimed, created)
        if result == "admitted":
            peer = self.core.peers.get(cid)
            current = peer is not None and peer.connection is conn
            view = self._told.setdefault(cid, (app, {}))[1]
            view.update(rooms)
            for name in rooms:
                self.counts.joined(app, name)
            self._need(layout.room_partition(app, name) for name in rooms)
            if not current:  # closed meanwhile: it leaves what it entered
                self._tell(cid, None)
            else:
                self._stamp_joined(cid, app, rooms, view)
                self._tell(cid, conn)  # entries changed while it waited
                if cid in self.holds.key_of and (will := self._write_will(cid)) is not None:
                    # before its token or its rooms' answer: were this node killed then, the
                    # client comes back to another node with its easyrtcid (adopted)
                    await asyncio.wait([will], timeout=REQUEST_TIMEOUT)
        return result

    async def _claim(self, app: str, names: list[str]) -> bool:
        """Claim ``names`` of ``app`` for a join, sharing this node's claims in flight or held
        (the members of a new room log in together: one claim per node, not per member).
        False (nothing held) when the limit refuses one."""
        claiming = self._claiming
        new = [name for name in names if (app, name) not in claiming]
        if new:
            asked = asyncio.ensure_future(
                self.claims.claim(app, new, self._limit, self._default_room)
            )
            for name in new:
                claiming[app, name] = _Claim(asked)
        held = [claiming[app, name] for name in names]
        for claim in held:
            claim.holders += 1
        try:
            granted = all(
                [
                    claim.granted.result()
                    if claim.granted.done()
                    else await asyncio.shield(claim.granted)
                    for claim in held
                ]
            )
        except BaseException:
            self._unclaim(app, names, set())
            raise
        if not granted:
            self._unclaim(app, names, set())
        return granted

    def _unclaim(self, app: str, names: list[str], created: set[str]) -> None:
        """A join's claims released: the claim of a room it created stays the room's (given
        back when the room is removed); a name no join of this node holds any more is given
        back unless a room of it was created."""
        back = []
        for name in names:
            claim = self._claiming.get((app, name))
            if claim is None:
                continue
            claim.holders -= 1
            claim.kept = claim.kept or name in created
            if claim.holders > 0:
                continue
            del self._claiming[app, name]
            if claim.kept:
                continue
            granted = claim.granted
            if not granted.done():  # its joins gave up waiting: given back once it is held
                granted.add_done_callback(partial(self._late_claim, app, name))
            elif not granted.cancelled() and not granted.exception() and granted.result():
                back.append(name)
        self.claims.give_back(app, back)

    def _late_claim(self, app: str, name: str, granted: asyncio.Future[bool]) -> None:
        if not granted.cancelled() and not granted.exception() and granted.result():
            self.claims.give_back(app, [name])

    def _give_up(self, asking: _Asking) -> None:
        request = asking.request
        for partition in {*request.granted, *request.steps}:
            self._post(partition, Abort(request.current, self.node_id))

    def _append_in_turn(self, asking: _Asking, appends: list[Append]) -> None:
        """Append a request's facts one after the other, each taken by Redis before the next
        is sent (the census's commit lands before the rooms')."""
        if not appends:
            return
        previous = asking.chain
        if (previous is None or previous.done()) and len(appends) == 1:  # most joins: one fact
            step = appends[0]
            written = self.writer.post(step.partition, encode(step.fact))
            written.add_done_callback(partial(self._append_failed, asking))
            asking.chain = written
            return

        async def in_turn() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            for step in appends:
                try:
                    await self.writer.append(step.partition, encode(step.fact))
                except REDIS_ERRORS as exc:
                    if not asking.done.done():
                        asking.done.set_exception(EngineUnavailable(str(exc)))
                    return

        asking.chain = self._spawn(in_turn())

    def _append_failed(self, asking: _Asking, written: asyncio.Future[Appended]) -> None:
        if written.cancelled() or (exc := written.exception()) is None:
            return
        if not asking.done.done():
            asking.done.set_exception(EngineUnavailable(str(exc)))

    # -- what the partitions know of this node's connections --------------------------------

    def _keyed(self, cid: str) -> bool:
        """Whether ``cid`` may be held (a resume key, a grace): its entries say so, and the
        other nodes keep what they relay to it until its client confirms it."""
        peer = self.core.state.peers.get(cid)
        return peer is not None and peer.resume_key is not None and self.holds.grace_ms > 0

    def _tell(self, cid: str, conn: Connection | None) -> list[asyncio.Future[Appended]]:
        """The partitions told what changed for ``cid`` since they were last told: a ``leave``
        per partition of the rooms it left, an ``update`` per partition of those whose entry
        changed. Rooms it entered are asked (``_ask``), not told. The group directory too."""
        self._note_groups(cid, conn)
        told = self._told.get(cid)
        if told is None:
            return []
        app, known = told
        login = self._logins.get(cid, LOGIN)
        keyed = self._keyed(cid)
        now = (
            {name: _entry(conn, name, keyed) for name in conn.rooms}
            if conn is not None and conn.app.name == app
            else {}
        )
        layout = self.layout
        posted: list[asyncio.Future[Appended]] = []
        gone: dict[int, list[str]] = {}
        changed: dict[int, dict[str, Json]] = {}
        for name, entry in known.items():
            if name not in now:
                gone.setdefault(layout.room_partition(app, name), []).append(name)
            elif now[name] != entry:
                changed.setdefault(layout.room_partition(app, name), {})[name] = now[name]
        for partition, names in sorted(gone.items()):
            posted.append(self._post(partition, Leave(app, cid, login, tuple(names), self.node_id)))
            for name in names:
                del known[name]
                self.counts.left(app, name)
            self._unneed([partition] * len(names))
        for partition, entries in sorted(changed.items()):
            posted.append(self._post(partition, Update(app, cid, login, entries)))
            known.update(entries)
        if not known:
            del self._told[cid]
        if posted and cid in self.holds.key_of:
            self._write_will(cid)
        return posted

    def _post(self, partition: int, fact: Fact) -> asyncio.Future[Appended]:
        written = self.writer.post(partition, encode(fact))
        self._tasks.add(written)
        written.add_done_callback(self._written)
        if type(fact) is Update or (type(fact) is Leave and fact.by == self.node_id):
            ticket = self.marks.posted(fact.cid, partition)  # its relays wait for it
            written.add_done_callback(partial(self._fact_written, ticket))
        return written

    def _fact_written(self, ticket: int, written: asyncio.Future[Appended]) -> None:
        """A client's fact its relays were stamped with is written: the nodes they went to
        are told its number (``factorder``; 0: not written, nothing to wait for)."""
        seq = 0
        if not written.cancelled() and written.exception() is None:
            seq = written.result().seq
        for node in self.marks.written(ticket, seq):
            self.inbox.send(node, "", WRITTEN, [ticket, seq])

    def _stamp_joined(self, cid: str, app: str, rooms: Iterable[str], view: Iterable[str]) -> None:
        """``cid`` admitted into ``rooms``: its relays wait, on the nodes they reach, for
        those partitions as applied here now (its join is, it was answered after)."""
        partition_of = self.layout.room_partition
        positions = {}
        for name in rooms:
            partition = partition_of(app, name)
            positions[partition] = self._position.get(partition, ("", 0))[1]
        self.marks.joined(cid, positions, {partition_of(app, name) for name in view})

    def _written(self, written: asyncio.Future[Any]) -> None:
        self._tasks.discard(written)
        if written.cancelled():
            return
        if (exc := written.exception()) is not None:
            self.health.once("fact", "a room fact could not be written: %r", exc)
            return
        at: Appended = written.result()
        if at.seq > self._posted.get(at.partition, 0):
            self._posted[at.partition] = at.seq

    async def _own_facts_applied(self) -> None:
        """Every fact this node posted is written and applied here, and the claims its
        effects gave back are sent: what its clients did before is settled."""
        await self._posted_written()
        await self._applied_up_to(dict(self._posted))
        self._posted.clear()
        await self.claims.flushed()

    async def _posted_written(self) -> None:
        """Every fact (and other work) this node has under way is done."""
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            await asyncio.wait(pending)

    async def _applied_up_to(self, seqs: dict[int, int]) -> None:
        """Each partition (still read here) applied up to its number in ``seqs``."""
        for partition, seq in seqs.items():
            while partition in self._loaded and self._position.get(partition, ("", 0))[1] < seq:
                await self._progress.wait()

    # -- interest: the partitions read -----------------------------------------------------

    def _partitions_of(self, app: str, rooms: Any) -> set[int]:
        layout = self.layout
        wanted = {layout.room_partition(app, name) for name in rooms if isinstance(name, str)}
        return wanted

    def _reading(self, partitions: set[int]) -> bool:
        loaded = self._loaded
        return all(p in loaded and loaded[p].done() for p in partitions)

    def _after_gain(
        self, peer: Peer, ack: Ack | None, partitions: set[int], then: Callable[[], Step]
    ) -> Pending:
        """``then`` once ``partitions`` are read; an outcome it gives is carried out here
        (an engine's pending change carries its outcome out itself)."""

        async def gained() -> Step:
            self._need(partitions)
            try:
                await self._gain(partitions)
            finally:
                self._unneed(partitions)
            step = then()
            if isinstance(step, Outcome):
                await self.carrier.deliver(peer, step, ack)
            return step

        return gained()

    def _need(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._needs[partition] += 1
            timer = self._dropping.pop(partition, None)
            if timer is not None:
                timer.cancel()
            if partition not in self._loaded:
                self._loaded[partition] = asyncio.get_running_loop().create_future()
                self.reader.gain(partition)

    def _unneed(self, partitions: Iterable[int], linger: float = LINGER) -> None:
        for partition in partitions:
            self._needs[partition] -= 1
            if self._needs[partition] <= 0:
                del self._needs[partition]
                if partition not in self._dropping:
                    loop = asyncio.get_running_loop()
                    self._dropping[partition] = loop.call_later(linger, self._drop, partition)

    def _need_for_server_code(self, partition: int) -> float:
        """``_need`` of a partition for server code's change of a room there: how long to
        linger after it (``SERVER_CODE_LINGER`` if it was not read before, else ``LINGER``)."""
        linger = LINGER if partition in self._loaded else SERVER_CODE_LINGER
        self._need([partition])
        return linger

    def _drop(self, partition: int) -> None:
        self._dropping.pop(partition, None)
        if self._needs.get(partition):
            return
        self.reader.drop(partition)
        loaded = self._loaded.pop(partition, None)
        if loaded is not None and not loaded.done():
            loaded.cancel()
        part = self.parts.pop(partition, None)
        self._position.pop(partition, None)
        self._settled.pop(partition, None)
        if part is not None:
            self.stubs.unload(part)
            self._forget_gone_stubs(part)

    async def _gain(self, partitions: set[int]) -> None:
        waiting = [self._loaded[p] for p in partitions if not self._loaded[p].done()]
        if not waiting:
            return
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                for loaded in waiting:
                    await asyncio.shield(loaded)
        except TimeoutError:
            raise EngineUnavailable("a partition could not be read in time") from None

    # -- reading ---------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        failing = False
        while True:
            try:
                reads = await self.reader.read()
            except REDIS_ERRORS as exc:
                if not failing:
                    log.error("cannot read the partition logs: %r", exc)
                    failing = True
                self.health.failing(repr(exc))
                await asyncio.sleep(RETRY_DELAY)
                continue
            if failing:  # an idle partition of an older Redis shows no gap: looked at
                self._spawn(self._look_back_in_time())
            failing = False
            self.health.caught_up()
            for read in reads:
                try:
                    await self._take(read)
                except Exception:  # a bug must cost one partition's batch, not the reader
                    self.health.skipped_entries += len(read.entries)
                    log.exception("partition %d: facts could not be applied", read.partition)
            if self._reconciled:
                self._told_reconciled()
            for read in reads:
                if (at := self._position.get(read.partition)) is not None:
                    self._settled[read.partition] = at[1]
            if self.order.holding:
                await self._deliver_ordered(self.order.ready(self._told_at))
            self._progress.set()  # what waits for the partitions to catch up looks again
            self._progress = asyncio.Event()

    async def _take(self, read: PartitionRead) -> None:
        partition = read.partition
        if partition not in self._loaded:
            return  # dropped meanwhile
        out = Outcome()
        reread = read.reload is not None and partition in self.parts
        if read.reload is not None:
            out = self._reload(partition, read.reload, gap=read.gap)
        part = self.parts.get(partition)
        if part is None:
            return
        reaped: dict[str, list[tuple[Connection, str]]] = {}
        for entry in read.entries:
            try:
                fact = decode(entry.fact)
            except FactError as exc:
                self.health.skipped_entries += 1
                self.health.once("fact-skipped", "a room fact was skipped: %s", exc)
                continue
            effects = part.apply(fact)
            self._position[partition] = (entry.id, entry.seq)
            self._since_snapshot[partition] += 1
            if type(fact) is NodeGone and fact.by == self.node_id:  # this node's reap did it
                self._reaped_here(effects, reaped.setdefault(fact.node, []))
            out.extend(self.stubs.apply(effects))
            self._follow(fact, effects)
        if read.entries or out.sends:  # even without sends: coalesced updates get their timer
            await self.carrier.deliver(None, out, None)
        if any(reaped.values()):
            self._spawn(self._departed(reaped))
        self._maybe_snapshot(partition, part)
        if self.node_id in part.gone and partition not in self._coming_back:
            self._come_back(partition)
        elif reread:
            self._reconcile(partition, part)

    def _told_reconciled(self) -> None:
        """One line for the partitions a read found lacking this node's facts."""
        found, self._reconciled = self._reconciled, Counter()
        self.health.older_redis += 1
        log.warning(
            "%d partitions lack facts this node wrote (Redis came back with an older dataset): "
            "%d of its connections ask their rooms there again, %d gone since leave",
            found["partitions"],
            found["missing"],
            found["ghosts"],
        )

    async def _look_back_in_time(self) -> None:
        """After the reader lost Redis: a partition whose number is now below the last one
        this node applied went back in time (Redis came back older) and is read anew
        (``_reconcile``); one with new facts shows it by their numbers, an idle one only so.
        A Redis back empty (no epoch) is the epoch's watch's (``_redis_came_back_empty``)."""
        positions = list(self._position.items())
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.keys.epoch)
                for partition, _at in positions:
                    pipe.get(self.layout.of(partition).seq)
                epoch, *numbers = await pipe.execute()
        except REDIS_ERRORS as exc:
            self.health.once("look-back", "the partitions' numbers could not be read: %r", exc)
            return
        if epoch is None or epoch != self._epoch:
            return
        for (partition, (_id, seq)), number in zip(positions, numbers, strict=True):
            if int(number or 0) < seq and self._position.get(partition, (None, 0))[1] >= seq:
                self.reader.reload(partition)

    def _reconcile(self, partition: int, part: Partition) -> None:
        """``partition`` read anew (its numbers jumped, or went back): Redis may have come
        back with an older dataset (a stale dump, a failover to a replica that lacked the last
        writes) and lost facts about this node's connections. Its members that are missing
        there are asked again, as joins (the others see them come back); members there of
        this node that it no longer has leave. A partition that was only trimmed past this
        reader differs in nothing of this node's."""
        missing: set[str] = set()
        layout = self.layout
        for cid, (app, known) in self._told.items():
            rooms = part.rooms.get(app, {})
            for name in known:
                if layout.room_partition(app, name) != partition:
                    continue
                room = rooms.get(name)
                member = room.members.get(cid) if room is not None else None
                if member is None or member.node != self.node_id:
                    missing.add(cid)
        busy = {asking.request.cid for asking in self._asking.values()}
        busy |= self._reasking.keys() | self._moved.keys() | self.holds.held.keys()
        ghosts: dict[tuple[str, str, int], list[str]] = {}
        for app, rooms in part.rooms.items():
            for name, room in rooms.items():
                for cid, member in room.members.items():
                    if (
                        member.node == self.node_id
                        and cid not in self.core.peers
                        and cid not in self._told
                        and cid not in busy
                    ):
                        ghosts.setdefault((app, cid, member.login), []).append(name)
        if not missing and not ghosts:
            return
        self._reconciled.update(partitions=1, missing=len(missing), ghosts=len(ghosts))
        self._restate_counts = True
        if missing:
            self._back_in(partition, None, only=missing)
        for (app, cid, login), names in ghosts.items():
            self._post(partition, Leave(app, cid, login, tuple(names), self.node_id))

    def _reload(self, partition: int, snap: Snapshot, *, gap: bool) -> Outcome:
        """``partition`` (re)loaded from ``snap``. Read again (a gap, Redis back empty), its
        other nodes' members that are gone now leave, told, and those that are new join,
        told: this node's clients in its rooms hold the lists it holds now."""
        told = Outcome()
        old = self.parts.pop(partition, None)
        before: dict[tuple[str, str, str], str] = {}
        if old is not None:
            before = _others(old, self.node_id)
            self.health.log_gaps += 1
        part = Partition(self._rules)
        if snap.doc:
            try:
                part = Partition.restore(orjson.loads(snap.doc), self._rules)
            except (ValueError, TypeError) as exc:
                self.health.snapshot_failures += 1
                self.health.once("snapshot", "a partition's snapshot was unreadable: %s", exc)
        if old is not None:
            after = _others(part, self.node_id)
            gone = [
                Left(a, r, c, node) for (a, r, c), node in before.items() if (a, r, c) not in after
            ]
            told.extend(self.stubs.apply(gone))
            self.stubs.unload(old)
            self._forget_gone_stubs(old)
        self.parts[partition] = part
        self.stubs.load(part)
        if old is not None:
            for app, name, cid in after.keys() - before.keys():
                if (stub := self.stubs.members.get((app, cid))) is not None:
                    self.core.state.tell_peers(stub, told, with_api_field=True, rooms=[name])
        for rooms in part.rooms.values():
            for room in rooms.values():
                for cid, member in room.members.items():
                    if member.node != self.node_id:
                        self.where[cid] = member.node
        self._position[partition] = (snap.id, snap.seq)
        self._since_snapshot[partition] = 0
        loaded = self._loaded.get(partition)
        if loaded is not None and not loaded.done():
            loaded.set_result(None)
        return told

    def _follow(self, fact: Fact, effects: list[Effect]) -> None:
        """What the effects of one fact mean beyond the stubs: decisions for this node's
        requests, the addresses of stubs, the releases this node owes the census."""
        touched: list[_Asking] = []
        for effect in effects:
            match effect:
                case Granted(node=node) | Denied(node=node) if node == self.node_id:
                    asking = self._asking.get(effect.rid.split("~", 1)[0])
                    if asking is None:
                        continue
                    request = asking.request
                    if isinstance(effect, Granted):
                        appends = request.on_granted(effect)
                    else:
                        appends = request.on_denied(effect)
                    self._append_in_turn(asking, appends)
                    touched.append(asking)
                case Admitted(node=node):
                    if node != self.node_id:
                        if self.where.get(effect.cid, node) != node:  # moved: adopted, handed
                            self._resend_to(node, effect.cid)
                        self.where[effect.cid] = node
                        handed = self._handed.pop(effect.cid, None)
                        if handed is not None and not handed.done():
                            handed.set_result(None)
                        continue
                    asking = self._asking.get(effect.rid.split("~", 1)[0])
                    if asking is None:
                        continue
                    asking.admitted.add(effect.room)
                    touched.append(asking)
                case Left(node=node):
                    if node != self.node_id and (effect.app, effect.cid) not in self.stubs.members:
                        self.where.pop(effect.cid, None)
                        self.ledger.release(effect.cid)
                    handed = self._handed.pop(effect.cid, None)
                    if handed is not None and not handed.done():
                        handed.set_result(None)
                case RoomRemoved(app=app, room=room) if _by(fact) == self.node_id:
                    if self._limit and room != self._default_room:  # its fact removed it
                        self.claims.give_back(app, [room])
                case RoomKept(node=node) | RoomDeleted(node=node) if node == self.node_id:
                    if isinstance(effect, RoomKept) and effect.rid in self._keep_claims:
                        self._keep_claims.discard(effect.rid)
                        if not effect.made:  # the room's claim is the join's that made it
                            self.claims.give_back(effect.app, [effect.room])
                    decided = self._room_changes.pop(effect.rid, None)
                    if decided is not None and not decided.done():
                        decided.set_result(effect)
        for asking in touched:
            result = asking.request.result
            if result is None or asking.done.done():
                continue
            if result != "admitted" or asking.admitted >= set(asking.request.rooms):
                asking.done.set_result(result)  # admitted: once in every room it asked

    def _forget_gone_stubs(self, part: Partition) -> None:
        members = self.stubs.members
        for app, rooms in part.rooms.items():
            for room in rooms.values():
                for cid in room.members:
                    if (app, cid) not in members:
                        self.where.pop(cid, None)

    def _maybe_snapshot(self, partition: int, part: Partition) -> None:
        """Every ``cluster_snapshot_entries`` facts, a snapshot of the partition by one of its
        readers (the lock's holder): a node gaining interest loads it and what follows."""
        if self._since_snapshot[partition] < self.options.cluster_snapshot_entries:
            return
        self._since_snapshot[partition] = 0
        position = self._position.get(partition)
        if position is None:
            return
        doc = orjson.dumps(part.snapshot())
        self._spawn(self._write_snapshot(partition, Snapshot(position[0], position[1], doc)))

    async def _write_snapshot(self, partition: int, snap: Snapshot) -> None:
        try:
            if await self.snapshots.claim(partition, self.node_id, SNAPSHOT_LOCK_MS):
                retention = int(self.options.cluster_log_retention * 1000)
                await self.snapshots.write(partition, snap, retention_ms=retention)
        except REDIS_ERRORS as exc:
            self.health.snapshot_failures += 1
            self.health.once("partition-snapshot", "a partition snapshot failed: %r", exc)

    # -- holds: the hold directory and the hand-over (``partitionholds``) --------------------------

    def _may_be_held_elsewhere(self, peer: Peer) -> bool:
        """A keyed login whose key this node does not know: another node may hold it."""
        return (
            self.holds.grace_ms > 0
            and peer.resume_key is not None
            and peer.connection is None
            and self.holds.resumes(peer) is None
        )

    def _after_handover(
        self, peer: Peer, decision: LoginRequested, answer: LoginAnswer, ack: Ack | None
    ) -> Pending:
        """The login, once the node holding its key's connection handed it over (or said it
        does not hold it, or did not answer in time: then it logs in afresh)."""

        async def handed() -> Step:
            digest = peer.resume_key
            if digest is not None:
                name = hold_name(digest)
                asked = await self._take_over(name, None)
                if asked is not None and self.holds.resumes(peer) is None:
                    await self._take_over(name, asked)  # handed on meanwhile (a drain)?
            return await self._carried(peer, self._login_answer(peer, decision, answer, ack), ack)

        return handed()

    async def _take_over(self, name: str, asked: str | None) -> str | None:
        """Ask the node the hold directory names for the hold ``name`` (unless it is ``asked``,
        asked already); back once it is installed here, refused, or after
        ``HANDOVER_TIMEOUT``. The node asked, if any."""
        installing = self._installing.get(name)
        if installing is not None:  # adopted here from a will, or handed over, right now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANDOVER_TIMEOUT):
                    await asyncio.shield(installing)
            return None
        try:
            owner = await self.holds_directory.owner(name)
        except REDIS_ERRORS as exc:
            self.health.once("hold-directory", "the hold directory could not be read: %r", exc)
            return None
        if owner is None or owner == self.node_id or owner == asked:
            return None
        if owner in self._reaped:  # dead: its will, unless a node adopted it already
            await self._from_will(owner, name)
            return owner
        waiting = self._handovers.get(name)
        if waiting is None:
            waiting = self._handovers[name] = asyncio.get_running_loop().create_future()
            self.inbox.send(owner, "", HOLD_ASK, {"n": name, "from": self.node_id})
        try:
            async with asyncio.timeout(HANDOVER_TIMEOUT):
                await asyncio.shield(waiting)
        except TimeoutError:
            log.warning("node %s did not hand a held connection over in time", owner)
        finally:
            if self._handovers.get(name) is waiting and not waiting.done():
                del self._handovers[name]  # a late one is held here until its grace ends
        if not waiting.done():  # dead, and not reaped yet? its will, once it is not alive
            await self._from_will(owner, name, wait_dead=True)
        return owner

    async def _from_will(self, node: str, name: str, *, wait_dead: bool = False) -> None:
        """The connection named ``name`` of dead ``node``, adopted here from its will if no
        node took it yet (``wait_dead``: once ``node``'s alive key expired, at most an alive
        TTL from now; alive, it is left to it)."""
        try:
            if wait_dead:
                async with asyncio.timeout(self.registry.ttl + 1.0):
                    while True:  # a look in Redis (its key's TTL), not an event here
                        if node not in await self.registry.alive_nodes(also=[node]):
                            break
                        await asyncio.sleep(RETRY_DELAY)
            wills = await self.wills.take(node, [name])
            if not wills:  # taken by another node: on once the hold directory names it
                async with asyncio.timeout(HANDOVER_TIMEOUT):
                    while True:  # a look in Redis, not an event here
                        if await self.holds_directory.owner(name) != node:
                            return
                        await asyncio.sleep(SETTLE_POLL)
        except (TimeoutError, *REDIS_ERRORS):
            return
        await self._adopt_wills(node, wills)

    def _node_message(self, kind: Any, body: Any) -> None:
        """A message from another node to this one (not to a socket)."""
        if type(body) is not dict or type(body.get("n")) is not str:
            raise TypeError("not a node message")
        if kind == HOLD_ASK and type(body.get("from")) is str:
            self._give_hold(body["n"], body["from"])
        elif kind == RESEND and type(body.get("from")) is str:
            self._resend_to(body["from"], body["n"])
        elif kind == HOLD_GIVE:
            record = Handover.from_json(body) if len(body) > 1 else None
            if record is not None:
                loop = asyncio.get_running_loop()
                self._installing.setdefault(record.name, loop.create_future())
                self._arriving.setdefault(record.cid, [])
                self._spawn(self._install(record))
                return
            waiting = self._handovers.pop(body["n"], None)
            if waiting is not None and not waiting.done():
                waiting.set_result(False)
        else:
            raise TypeError("not a node message")

    def _give_hold(self, name: str, to: str) -> None:
        """Node ``to`` asks for the connection of the key named ``name``: handed over, or it
        is told it is not here. One still live here (its client came back elsewhere before
        this node noticed the drop) is held first, its socket closed, as one process lets a
        key take its live connection over."""
        installing = self._installing.get(name)
        if installing is not None:  # handed to this node a moment ago: on once it is here
            self._spawn(self._give_once_installed(installing, name, to))
            return
        cid = self._named.get(name)
        moved = self._moved_names.get(name)
        if cid is None and moved is not None and moved != to:  # handed on: asked there
            self.inbox.send(moved, "", HOLD_ASK, {"n": name, "from": to})
            return
        if cid is not None and to != self.node_id and cid not in self.holds.held:
            self._hold_live(cid)
        if cid is None or to == self.node_id or not self._hand_over(cid, to):
            self.inbox.send(to, "", HOLD_GIVE, {"n": name})

    async def _give_once_installed(
        self, installing: asyncio.Future[bool], name: str, to: str
    ) -> None:
        await asyncio.wait([installing])
        self._give_hold(name, to)

    def _hold_live(self, cid: str) -> None:
        peer = self.core.state.peers.get(cid)
        link = self.carrier.links.get(cid)
        if peer is None or link is None or not self._hold(peer):
            return  # (not announced: it is handed over at once)
        del self.carrier.links[cid]
        self._spawn(link.close())  # superseded by then: its close tells nobody

    def _hand_over(self, cid: str, to: str) -> bool:
        """Let the hold of ``cid`` go without telling anyone (the connection stays in the
        core as ``to``'s member) and send it to node ``to``; False if it is not held here
        (or is in no room the partitions know)."""
        held = self.holds.held.get(cid)
        if held is None:
            return False
        queue = [(push.event, push.body) for push in held.queue if type(push.body) is dict]
        left_ms = max(0, held.until - self.core.now())
        record = self._record_of(cid, held.peer, queue, held.size, left_ms)
        if record is None:
            return False
        self.wills.drop(record.name)
        self._let_go(held.peer, record.name, to)
        self.inbox.send(to, "", HOLD_GIVE, record.to_json())
        self.carrier.released(held.peer)
        if cid not in self._handed:
            self._handed[cid] = asyncio.get_running_loop().create_future()
        return True

    def _record_of(
        self, cid: str, peer: Peer, queue: list[tuple[str, Json]], size: int, left_ms: int
    ) -> Handover | None:
        """What another node needs to hold ``cid`` (a hand-over, or a will); None if it is
        not keyed here or in no room its partitions know."""
        conn = peer.connection
        told = self._told.get(cid)
        digest = self.holds.key_of.get(cid)
        if conn is None or digest is None or told is None or told[0] != conn.app.name:
            return None
        app, known = told
        return Handover(
            hold_name(digest),
            digest,
            cid,
            app,
            self._logins.get(cid, LOGIN),
            conn.username,
            dict(conn.presence),
            encode_fields(conn.fields),
            {room: dict(entry) for room, entry in known.items()},
            queue,
            size,
            left_ms,
        )

    def _write_will(self, cid: str) -> asyncio.Future[None] | None:
        """``cid``'s will as it is now (``partitionwills``); dropped when it is in no room
        the partitions know. The write, when there is one (done once sent)."""
        peer = self.core.state.peers.get(cid)
        digest = self.holds.key_of.get(cid)
        if peer is None or digest is None:
            return None
        will = self._record_of(cid, peer, [], 0, self.holds.grace_ms)
        if will is None:
            self.wills.drop(hold_name(digest))
            return None
        return self.wills.put(will)

    def _let_go(self, peer: Peer, name: str, to: str) -> None:
        """``peer``'s connection is node ``to``'s from now on (handed over, or adopted there
        while this node was taken for dead): its hold, if any, ends here, nobody told; the
        connection stays in the core as ``to``'s member (a stub)."""
        cid = peer.easyrtcid
        conn = peer.connection
        self.holds.give(cid)
        self._named.pop(name, None)
        self._seen.pop(cid, None)
        state = self.core.state
        if state.peers.get(cid) is peer:
            del state.peers[cid]
        peer.connection = None
        peer.superseded = True
        if conn is not None:
            detach(conn)
            self.stubs.take(conn)
        self._note_groups(cid, None)  # its groups are its new node's to name
        self.marks.forget(cid)
        told = self._told.pop(cid, None)
        if told is not None:
            app, known = told
            for room in known:
                self.counts.left(app, room)
            self._unneed([self.layout.room_partition(app, room) for room in known])
        self._logins.pop(cid, None)
        self.where[cid] = to
        self._moved[cid] = to
        self._moved_names[name] = to
        loop = asyncio.get_running_loop()
        loop.call_later(MOVED_KEPT, self._moved.pop, cid, None)
        loop.call_later(MOVED_KEPT, self._moved_names.pop, name, None)

    async def _install(self, record: Handover) -> None:
        waiting = self._handovers.pop(record.name, None)
        installed = False
        try:
            installed = await self._adopt(record)
        except Exception:  # a bug must cost one hold, not the inbox
            log.exception("a held connection handed over could not be installed")
        finally:
            self._arriving.pop(record.cid, None)
            for done in (waiting, self._installing.pop(record.name, None)):
                if done is not None and not done.done():
                    done.set_result(installed)

    async def _adopt(self, record: Handover) -> bool:
        """A held connection another node gave this one: its rooms' partitions read, the
        connection built from its stub, held here for the grace it has left, then its rooms
        joined again with the next login number (nobody is told: its entries are the same).
        What cannot be done ends the hold as a disconnect."""
        self.holds_directory.put(record.name, self.node_id, record.left_ms)  # asked here now
        self._moved_names.pop(record.name, None)  # (back here, if it was here before)
        self._moved.pop(record.cid, None)
        wanted = self._partitions_of(record.app, record.rooms)
        self._need(wanted)
        named = self._name_in_groups(record)
        try:
            try:
                await self._gain(wanted)
                await self.groups.written()  # named for its groups before it can resume here
            except EngineUnavailable:
                self._leave_handed(record)
                if named:
                    self._note_groups(record.cid, None)
                return False
            conn = self._connection_of(record)
            if conn is None:
                self._leave_handed(record)
                if named:
                    self._note_groups(record.cid, None)
                return False
            cid = record.cid
            peer = Peer(cid, connection=conn, resume_key=record.digest)
            self.core.state.peers[cid] = peer
            self._note_groups(cid, conn)
            seen = self._seen[cid] = Seen()
            queue = _first_copies(seen, [Push(cid, event, body) for event, body in record.queue])
            held = self.holds.adopt(peer, record.digest, record.left_ms, queue, record.size)
            arrived = _first_copies(seen, self._arriving.pop(cid, []))
            self.holds.requeue(cid, arrived, first=False)
            self._logins[cid] = record.login + 1
            self._named[record.name] = cid
            loop = asyncio.get_running_loop()
            loop.call_later(record.left_ms / 1000, self._adopted_due, cid, held)
            try:
                result = await self._ask(conn)
            except EngineUnavailable:
                result = "unavailable"
            if result != "admitted":
                log.warning("a held connection handed over could not join again: %s", result)
                self._leave_handed(record)
                self._adopted_due(cid, held)
                return False
            await self.resend(cid)  # what this node kept for it: into its hold's queue
            return True
        finally:
            self._unneed(wanted)

    def _name_in_groups(self, record: Handover) -> bool:
        """The group directory asked to name this node for the groups of the connection handed
        over (its entries carry them), before its hold is made here: once its client can
        resume here, a message to one of its groups comes here. False if nothing was asked."""
        cid = record.cid
        names = groups_of(next(iter(record.rooms.values()), {}))
        if not names or cid in self.core.state.peers or cid in self._grouped:
            return False
        for name in names:
            self.groups.joined(record.app, name)
        self._grouped[cid] = (record.app, frozenset(names))
        return True

    def _connection_of(self, record: Handover) -> Connection | None:
        """The handed-over connection in this node's core, made from its stub (or anew), with
        its identity and rooms as the record says; None if its easyrtcid is in use here."""
        state = self.core.state
        cid = record.cid
        if cid in state.peers:
            return None
        app = state.apps.get(record.app) or state.create_app(record.app)
        conn = self.stubs.give(app.name, cid)
        if conn is None:
            if cid in app.connections:
                return None
            conn = Connection(cid, app)
            app.connections[cid] = conn
        conn.username = record.username
        conn.presence = dict(record.presence)
        conn.fields = decode_fields(record.fields)
        for name, entry in record.rooms.items():
            if name not in conn.rooms:
                when = entry.get("roomJoinTime")
                state.join(
                    conn,
                    name,
                    None,
                    joined_at=when if type(when) is int else None,
                    api_field=entry.get("apiField") or None,
                )
        state.refresh_entries(conn)
        entries = iter(record.rooms.values())
        set_groups(conn, groups_of(next(entries, {})))  # carried in its entries
        self.where.pop(cid, None)
        return conn

    def _leave_handed(self, record: Handover) -> None:
        """The rooms a handed-over connection could not be installed in are told it left
        (with the login its node gave it); the hold directory forgets it."""
        self.holds_directory.drop(record.name, self.node_id)
        rooms: dict[int, list[str]] = {}
        for name in record.rooms:
            rooms.setdefault(self.layout.room_partition(record.app, name), []).append(name)
        for partition, names in sorted(rooms.items()):
            fact = Leave(record.app, record.cid, record.login, tuple(names), self.node_id)
            self._post(partition, fact)

    def _adopted_due(self, cid: str, held: Held) -> None:
        """The grace of a hold handed over to this node is over (the server's timer knows
        only the holds of its own sockets): it ends as a disconnect, unless resumed."""
        if self.holds.held.get(cid) is held:
            self._spawn(self._end_hold(cid))

    async def _end_hold(self, cid: str) -> None:
        """A hold ends as a disconnect: the members here told, the partitions told, the
        ``room_left`` and ``disconnect`` hooks run (``Carrier.departed``)."""
        digest = self.holds.key_of.get(cid)
        peer = self.holds.end(cid)
        if peer is None:
            return
        conn = peer.connection
        out = await self.close(peer)
        if digest is not None:
            self._forget_hold(hold_name(digest))
        if conn is not None:
            self.carrier.departed([conn], out)

    async def _ask_after_resume(self, peer: Peer, conn: Connection) -> None:
        """A resume entered rooms its held connection was not in: asked of their partitions
        afterwards; a room they refuse is left again (its members told)."""
        try:
            result = await self._ask(conn)
        except EngineUnavailable:
            result = "unavailable"
        if result == "admitted" or peer.connection is not conn:
            return
        out = Outcome()
        for name in self._untold(conn):
            self.core.state.leave(conn, name, out)
        await self.carrier.deliver(None, out, None)

    def _not_here(self, cid: str, event: str | None, body: Any) -> None:
        """A relay from another node for a socket this node does not have: queued if it is
        held here or being handed over to it (a disconnect ends its hold), forwarded if it was
        handed on, else dropped."""
        if cid in self.holds.held:
            if event is not None:
                self._queue(Push(cid, event, body))
            elif body is None:
                self._spawn(self._end_hold(cid))
            return
        arriving = self._arriving.get(cid)
        if arriving is not None:  # handed over to this node, being installed
            if event is not None and type(body) is dict and "senderEasyrtcid" in body:
                arriving.append(Push(cid, event, body))
            return
        node = self._moved.get(cid)
        if node is not None:
            self.inbox.send(node, cid, event, body)

    def _forget_hold(self, name: str) -> None:
        """A hold of this node ended (resumed, expired): off the hold directory."""
        if self._named.pop(name, None) is not None:
            self.holds_directory.drop(name, self.node_id)

    async def _hand_over_holds(self) -> None:
        """Stopping: the holds of this node go to the other nodes alive, in turn, each until
        its rooms' partitions show it there (then this node may leave the cluster: its
        ``node-gone`` no longer concerns them). A hold no node takes in time ends as a
        disconnect, its rooms told; one handed over whose new node did not show up in time
        leaves its rooms when the other nodes reap this one."""
        held = list(self.holds.held)
        others: list[str] = []
        if held:
            with contextlib.suppress(*REDIS_ERRORS):
                others = sorted(set(await self.registry.alive_nodes()) - {self.node_id})
        for i, cid in enumerate(held):
            if not (others and self._hand_over(cid, others[i % len(others)])):
                await self._end_hold(cid)
        shown = [handed for handed in self._handed.values() if not handed.done()]
        if shown:
            _, late = await asyncio.wait(shown, timeout=HANDOVER_TIMEOUT)
            if late:
                log.warning("leaving the cluster: %d held connections not taken in time", len(late))

    # -- other nodes ------------------------------------------------------------------------

    async def _reap_forever(self) -> None:
        """Every ``cluster_check_interval``: a node whose alive key expired (it was seen
        alive, or this node shows its members) is gone: ``node-gone`` to the partitions this
        node reads that hold its members or requests, its room counts taken back. Every node
        does it; both are idempotent. Nobody is judged for an alive TTL after Redis came back
        empty: every node's alive key went with the data, and comes back at its next refresh."""
        loop = asyncio.get_running_loop()
        judge_from = 0.0
        while True:
            await asyncio.sleep(self.options.cluster_check_interval)
            try:
                if await self._epoch_changed():
                    judge_from = loop.time() + self.registry.ttl
                    await self._redis_came_back_empty()
            except REDIS_ERRORS:
                continue
            if self._restate_counts or self.counts.reaped:
                await self._restate()
            try:
                known = self._alive | set(self.where.values())
                alive = set(await self.registry.alive_nodes(also=known))
            except REDIS_ERRORS:
                continue
            if loop.time() < judge_from:
                self._alive |= alive
                continue
            alive.discard(self.node_id)
            suspects = known - alive - self._reaped
            suspects.discard(self.node_id)
            self._alive = alive
            for node in sorted(suspects):
                self._reaped.add(node)
                log.warning("cluster node %s is gone: its clients leave their rooms", node)
                self.inbox.forget(node)  # a direct link to it is closed
                await self._adopt_wills_of(node)
                for partition, part in sorted(self.parts.items()):
                    if _mentions(part, node):
                        self._post(partition, NodeGone(node, self.node_id))
                try:
                    await self.counts.reap(node)
                    await self.groups.reap(node)
                except REDIS_ERRORS as exc:
                    self._reaped.discard(node)  # tried again at the next look
                    log.warning("could not reap the room counts of node %s: %r", node, exc)

    async def _adopt_wills_of(self, node: str) -> None:
        """Before dead ``node``'s ``node-gone``: its keyed connections no other node took
        first are adopted here (held, their rooms joined again: ``partitionwills``), and
        every node's adoptions are in (at most ``REQUEST_TIMEOUT`` each), so that its
        ``node-gone`` finds them moved and nobody sees them leave."""
        try:
            wills = await self.wills.take(node)
        except REDIS_ERRORS as exc:
            log.warning("could not take the wills of node %s: %r", node, exc)
            wills = []
        if wills:
            log.warning("adopting %d keyed connections of node %s", len(wills), node)
            await self._adopt_wills(node, wills)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await self.wills.settled(node)
        except (TimeoutError, *REDIS_ERRORS) as exc:
            log.warning("the adoptions of node %s's connections did not end: %r", node, exc)

    async def _adopt_wills(self, node: str, wills: list[Handover]) -> None:
        """``wills`` of dead ``node``, taken by this node: each installed as a hand-over is.
        Then ``node-gone`` to their rooms' partitions (where ``node`` may have no member
        left to be reaped for): a node only paused finds it there and lets them go."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await asyncio.gather(*(self._install_will(will) for will in wills))
        except TimeoutError:
            log.warning("adopting the connections of node %s took too long", node)
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.wills.adopted(node)
        partitions = {
            partition for will in wills for partition in self._partitions_of(will.app, will.rooms)
        }
        for partition in sorted(partitions):
            self._post(partition, NodeGone(node, self.node_id))

    async def _install_will(self, will: Handover) -> None:
        loop = asyncio.get_running_loop()
        self._installing.setdefault(will.name, loop.create_future())
        self._arriving.setdefault(will.cid, [])
        await self._install(will)

    def _reaped_here(self, effects: list[Effect], left: list[tuple[Connection, str]]) -> None:
        """The rooms a dead node's members (as this node knows them: stubs) left by ``effects``
        of this node's ``node-gone``."""
        members = self.stubs.members
        for effect in effects:
            if type(effect) is Left and (stub := members.get((effect.app, effect.cid))):
                left.append((stub, effect.room))

    async def _departed(self, reaped: dict[str, list[tuple[Connection, str]]]) -> None:
        """A dead node's members (``reaped``: by node, each room one left) left rooms by this
        node's ``node-gone`` (the first of that partition's, so one node in the cluster):
        their ``room_left`` hooks run here, as the log cluster runs them on its reaper; each
        one's ``disconnect`` hook runs on the node that claims it first (``keys.departed``),
        after the ``room_left`` hooks it runs there."""
        claimed: list[Connection] = []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                groups = []
                for node, left in reaped.items():
                    conns = list({conn.easyrtcid: conn for conn, _room in left}.values())
                    groups.append(conns)
                    key = self.keys.departed(node)
                    for conn in conns:
                        pipe.hsetnx(key, conn.easyrtcid, self.node_id)
                    pipe.pexpire(key, DEPARTED_TTL_MS)
                answers = iter(await pipe.execute())
            for conns in groups:
                claimed.extend(conn for conn in conns if next(answers))
                next(answers)  # the pexpire's
        except REDIS_ERRORS as exc:
            self.health.once("departed", "a dead node's disconnect hooks not claimed: %r", exc)
        left = [pair for pairs in reaped.values() for pair in pairs]
        self.carrier.departed(claimed, Outcome(left=left))

    # -- taken for dead, and alive ----------------------------------------------------------

    def _come_back(self, partition: int) -> None:
        """``partition`` took this node for dead (a reaper saw its alive key expire: the
        process was paused, or cut off from Redis past the TTL) and its clients' members there
        are gone. Its clients are still here: the node says it is back (``node-back``) and
        asks their rooms there again, as joins; the others see them leave and come back, as
        in the log cluster (``liveness``). A room that refuses one now (filled meanwhile) is
        left on the core: its client and this node's members there are told."""
        if not self._coming_back:
            log.warning(
                "this node was taken for dead (paused, or cut off from Redis past its alive "
                "TTL): its clients ask their rooms again"
            )
            self._taken_check = self._spawn(self._let_taken_go())
        self._coming_back.add(partition)
        self._restate_counts = True
        task = self._back_in(partition, NodeBack(self.node_id))
        task.add_done_callback(lambda _task: self._coming_back.discard(partition))

    async def _let_taken_go(self) -> None:
        """Back from being taken for dead: the keyed connections another node adopted from
        their wills meanwhile (``partitionwills``; their wills are gone) are that node's now:
        let go here, nobody told, a live one's socket closed (its client resumes there)."""
        try:
            kept = await self.wills.names()
            taken = [
                (name, cid)
                for name, cid in self._named.items()
                if name not in kept and not self.wills.writing(name)
            ]
            owners = [await self.holds_directory.owner(name) for name, _ in taken]
        except REDIS_ERRORS as exc:
            log.warning("could not look for connections adopted meanwhile: %r", exc)
            return
        for (name, cid), owner in zip(taken, owners, strict=True):
            peer = self.core.state.peers.get(cid)
            if owner is None or owner == self.node_id or peer is None:
                continue
            if cid not in self.holds.held:
                self._hold_live(cid)
            held = self.holds.held.get(cid)
            for push in held.queue if held is not None else ():  # unconfirmed, queued: there
                self.inbox.send(owner, cid, push.event, push.body)
            self._let_go(peer, name, owner)
            self._reasking.pop(cid, None)
            self.carrier.released(peer)
        if taken:
            log.warning("%d keyed connections were adopted by other nodes meanwhile", len(taken))

    async def _agree_on_layout(self) -> None:
        from .layoutmeta import agree_on_layout

        await agree_on_layout(
            self.redis, self.keys.layout, self.layout.partitions, self.layout.groups
        )

    async def _epoch_changed(self) -> bool:
        """Whether Redis came back empty since the last look: the cluster's epoch is gone
        (then one node sets a new one, ``SET NX``) or is another than this node knew."""
        key = self.keys.epoch
        epoch = await self.redis.get(key)
        if epoch is None:
            await self.redis.set(key, new_epoch(), nx=True)
            epoch = await self.redis.get(key)
        changed = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        return changed

    async def _redis_came_back_empty(self) -> None:
        """Redis restarted without its data: the partition logs lost this node's members
        (each reader reloads a partition whose numbers start again). The node records its
        layout again and asks again, as joins, every room of its connections; its room counts
        are written again (the claims of rooms created again are made as they are)."""
        log.warning("Redis came back empty: this node's clients ask their rooms again")
        await self._agree_on_layout()
        self._restate_counts = True
        for partition in list(self.parts):  # what was read of them is gone: read them anew
            self.reader.reload(partition)
        layout = self.layout
        partitions = {
            layout.room_partition(app, name) for app, known in self._told.values() for name in known
        }
        asked = [self._back_in(partition, None) for partition in sorted(partitions)]
        self._spawn(self._reregistered(asked))

    async def _reregistered(self, asked: list[asyncio.Future[Any]]) -> None:
        await asyncio.gather(*asked, return_exceptions=True)
        log.info("re-registered this node's connections (%d partitions)", len(asked))

    def _back_in(
        self, partition: int, back: NodeBack | None, *, only: set[str] | None = None
    ) -> asyncio.Future[Any]:
        """This node's connections' rooms in ``partition`` (those of ``only``, if given)
        forgotten as told, at once (room counts restated from now on leave them out: their
        joins count them), then asked again in a task (after ``back``, when the partition had
        taken the node for dead)."""
        layout = self.layout
        asking: list[str] = []
        for cid, (app, known) in list(self._told.items()):
            if only is not None and cid not in only:
                continue
            names = [name for name in known if layout.room_partition(app, name) == partition]
            for name in names:
                del known[name]  # gone there: asked again below
            self._unneed([partition] * len(names))
            if names:
                asking.append(cid)
                self._reasking.setdefault(cid, set()).update(names)
            if not known:
                del self._told[cid]
        return self._spawn(self._ask_again(partition, asking, back))

    async def _ask_again(self, partition: int, asking: list[str], back: NodeBack | None) -> None:
        while back is not None:
            try:
                at = await self._post(partition, back)
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    await self._applied_up_to({partition: at.seq})
                break
            except (TimeoutError, *REDIS_ERRORS):
                await asyncio.sleep(RETRY_DELAY)
        try:
            if back is not None and self._taken_check is not None:
                await asyncio.wait([self._taken_check])  # adopted elsewhere: not asked again
            await asyncio.gather(*(self._ask_until_decided(cid) for cid in asking))
        finally:
            for cid in asking:
                self._reasking.pop(cid, None)

    async def _ask_until_decided(self, cid: str) -> None:
        """``cid``'s untold rooms asked until the partitions decide (Redis just back, or this
        node just woken, a request may go unanswered, or be denied ``gone`` by a partition of
        its other rooms this node has not said ``node-back`` to yet: asked again); refused, or
        never decided, they are left on the core and its client told."""
        for _ in range(ASK_AGAIN_TRIES):
            peer = self.core.peers.get(cid)
            conn = peer.connection if peer is not None else None
            if conn is None:
                return
            try:
                result = await self._ask(conn)
            except EngineUnavailable:
                result = GONE
            if result == GONE:  # a partition of its other rooms that has not been told yet
                await asyncio.sleep(RETRY_DELAY)
                continue
            if result == "admitted" or peer is None or peer.connection is not conn:
                return
            break
        peer = self.core.peers.get(cid)
        conn = peer.connection if peer is not None else None
        if conn is None:
            return
        out = Outcome()
        left = self._untold(conn)
        for name in left:
            self.core.state.leave(conn, name, out)
        out.extend(
            control.command_to(self.core.state, [cid], room_data({n: leave_state(n) for n in left}))
        )
        await self.carrier.deliver(None, out, None)

    async def _restate(self) -> None:
        """This node's whole share of the room counts written again (the reap took it)."""
        share = Counter((app, name) for app, known in self._told.values() for name in known)
        self._restate_counts = False
        try:
            await self.counts.restate(share)
            await self.groups.restate()
        except REDIS_ERRORS:
            self._restate_counts = True  # again at the next look

    async def _from_inbox(
        self, sender: str | None, first: int, afters: list[Any], items: list[Any]
    ) -> None:
        """Relays other nodes sent for this node's sockets: delivered once this node applied
        the facts their senders' nodes had appended before them, else held (``factorder``)."""
        if sender is not None:
            items = self.order.arrived(sender, afters, items, self._told_at)
            self._arm_order_timer()
        await self._deliver_items(items)

    def _told_at(self, partition: int) -> int | None:
        """The number of ``partition``'s last fact applied here and told to this node's
        sockets; None when it is not read here (nothing to wait for)."""
        if partition not in self._loaded:
            return None
        return self._settled.get(partition, 0)

    def _arm_order_timer(self) -> None:
        """Wake up when the first held relay's wait runs out."""
        due = self.order.next_deadline()
        if due is None or self._order_timer is not None:
            return
        delay = max(0.0, due - self.order.clock())
        self._order_timer = asyncio.get_running_loop().call_later(delay, self._order_due)

    def _order_due(self) -> None:
        self._order_timer = None
        self._spawn(self._expire_held())

    async def _expire_held(self) -> None:
        """Relays held past ``cluster_order_wait``: delivered without their facts, counted.
        Taken from the holds in the step that sends them, so that none that arrived meanwhile
        overtakes them."""
        late = self.order.expired(self._told_at)
        if late:
            if not self._order_logged:
                self._order_logged = True
                log.warning(
                    "relays were delivered before facts their senders' nodes appended first "
                    "(waited %.1f s, cluster_order_wait); further ones are counted in "
                    "easyrtc_cluster_order_timeouts_total",
                    self.order.wait,
                )
            await self._deliver_ordered(late)
        self._arm_order_timer()

    async def _deliver_ordered(self, items: list[Any]) -> None:
        """Held relays, released; whatever they do, the reader and the timer go on."""
        try:
            await self._deliver_items(items)
        except Exception as exc:
            self.health.inbox_drops += len(items)
            self.health.once("inbox-held", "could not deliver held relays: %r", exc)

    async def _deliver_items(self, items: list[Any]) -> None:
        """Inbox items for this node's sockets (or for this node itself), in order."""
        links = self.carrier.links
        out = Outcome()
        taken: set[tuple[str, str, int]] = set()  # stamped relays pushed in this batch
        for to, event, body in items:
            if to == "":  # a message to this node itself
                if event == GROUP_MESSAGE:
                    self._group_here(body, out)
                else:
                    self._node_message(event, body)
                continue
            if type(to) is list:
                if type(body) is not dict or type(event) is not str:
                    raise TypeError("not a fan-out")
                here = [cid for cid in to if cid in links]
                if here:
                    out.sends.append(Fanout(here, event, body))
                if len(here) < len(to):
                    fanout = Fanout(to, event, body)
                    for cid in to:
                        if cid not in links:
                            self._not_here(cid, event, fanout.body_for(cid))
                continue
            if event is None and type(body) is int:  # a confirmation (``confirmed``)
                self.ledger.confirm(to, body)
                continue
            if to not in links:
                self._not_here(to, event, body)
                continue
            if event is not None and self._known(to, body, links[to], taken):
                continue
            if event is None:  # a disconnect: what came before it first
                if out.sends:
                    await self.carrier.deliver(None, out, None)
                    out = Outcome()
                await links[to].close()
                continue
            out.push(to, event, body)
        if out.sends:
            await self.carrier.deliver(None, out, None)

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _first_copies(seen: Seen, pushes: list[Push]) -> list[Push]:
    """``pushes`` but a second copy of a stamped one, each taken into ``seen`` (carried into
    a hold here: an origin's copy sent again is dropped)."""
    stamps = [stamp_of(push.body) for push in pushes]
    return [
        push
        for push, stamp in zip(pushes, stamps, strict=True)
        if stamp is None or seen.first_time(stamp)
    ]


def _entry(conn: Connection, room: str, keyed: bool) -> Json:
    """``conn``'s entry in ``room`` as its peers see it (and whether it is keyed and its groups,
    which they do not see: ``stubs.KEYED``, ``stubs.GROUPS``)."""
    member = conn.rooms[room]
    entry = dict(member.room.entries.get(conn.easyrtcid) or client_entry(member))
    if keyed:
        entry[KEYED] = 1
    if conn.groups:
        entry[GROUPS] = sorted(conn.groups)
    return entry


def _refused(step: Step) -> bool:
    """The core answered with an EasyRTC error."""
    return isinstance(step, Outcome) and any(
        isinstance(send, Reply)
        and isinstance(send.body, dict)
        and send.body.get("msgType") == "error"
        for send in step.sends
    )


def _by(fact: Fact) -> str | None:
    """The node that appended ``fact``, where the fact names it."""
    match fact:
        case Leave(by=by) | NodeGone(by=by) | Abort(by=by):
            return by
        case Reserve(node=node) | Remove(node=node):
            return node
    return None


def _others(part: Partition, node: str) -> dict[tuple[str, str, str], str]:
    """``(app, room, easyrtcid) -> node`` of the members of ``part`` on other nodes than
    ``node``."""
    return {
        (app, name, cid): member.node
        for app, rooms in part.rooms.items()
        for name, room in rooms.items()
        for cid, member in room.members.items()
        if member.node != node
    }


def _mentions(part: Partition, node: str) -> bool:
    """Whether ``node`` has members or requests in ``part``."""
    if any(hold.fact.node == node for hold in part.holds.values()):
        return True
    return any(
        member.node == node
        for rooms in part.rooms.values()
        for room in rooms.values()
        for member in room.members.values()
    )


def _asked_rooms(msg: Json) -> list[str]:
    """The room names a ``roomJoin`` asks for, an array read as the core reads it."""
    data = msg.get("msgData")
    asked = as_map(data.get("roomJoin")) if isinstance(data, dict) else None
    return list(asked) if asked is not None else []
