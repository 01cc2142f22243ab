"""One node's replica of the whole cluster state: the protocol core, fed the log in order.

Every node applies the same entries (``log``) to its own ``Core`` in stream order, with the
core's clock reading each entry's time while it is applied, so every replica ends in the same
state and computes the same outcome for each entry. The replica also keeps what the core leaves
to its caller: each peer's pending decision (a login asks three times; the origin's hooks
answer with ``accept``/``refuse`` entries) and each peer's owner node (where its socket is).

Each replica builds only the sends of its node (``NodeSockets``, the core's ``scope``): the
pushes to the node's own sockets and, for an entry the node appended, the reply to its client
(a login's token, with its whole room list, is built on the client's node alone); the state
changes alike on every replica. What to do with an outcome (deliver the pushes to the sockets,
the reply to the client) is the node's business (``node``); this module does no I/O.
``Replica.kinds`` maps each entry kind to its function: a new kind is one function and one
line (kinds defined elsewhere, as ``rebuild``'s, are given to the constructor).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..options import Options
from ..protocol import control
from ..protocol.core import Core
from ..protocol.decisions import Decision, LoginRequested
from ..protocol.model import Connection, Peer
from ..protocol.outcome import Outcome, Push
from ..protocol.stock import stock_answer
from .holds import ReplicatedHolds
from .log import (
    ANSWER,
    CLOSE,
    CONTROL,
    EXPIRE,
    HOLD,
    NODE_GONE,
    QUEUE,
    RECV,
    RELEASE,
    STOCK,
    LogEntry,
    answer_of,
)

log = logging.getLogger("easyrtc_server.cluster")

CONTROLS: Final[dict[str, Callable[..., Any]]] = {
    name: getattr(control, name)
    for name in (
        "set_room_field",
        "set_session_field",
        "set_app_field",
        "set_connection_field",
        "add_to_group",
        "remove_from_group",
        "create_room",
        "delete_room",
        "create_app",
    )
}
"""The server-code changes (``control``) that a ``control`` entry may name."""


@dataclass(slots=True)
class Applied:
    """What applying one entry gave: the peer it is about, the core's outcome or next
    decision, and the exception server code raised (a ``control`` entry)."""

    peer: Peer | None
    result: Outcome | Decision = field(default_factory=Outcome)
    error: Exception | None = None
    gone: list[Peer] = field(default_factory=list)
    """Peers removed (``close``, ``node-gone``)."""
    departed: list[Connection] = field(default_factory=list)
    """Connections of a dead node whose ``room_left`` and ``disconnect`` hooks this node runs
    for it: it appended the ``node-gone`` that removed them (one node of the cluster, once)."""


class LogClock:
    """The replicas' clock: the time of the entry being applied, else the wall clock (ms)."""

    __slots__ = ("at", "wall")

    def __init__(self, wall: Callable[[], int] | None = None) -> None:
        self.wall: Callable[[], int] = wall or (lambda: int(time.time() * 1000))
        self.at: int | None = None
        """The time of the entry being applied, None between entries."""

    def now(self) -> int:
        at = self.at
        return at if at is not None else self.wall()


class NodeSockets:
    """A node's ``scope.SendScope``: pushes to its own sockets (``here``) and, while an
    entry is applied, the reply only if this node appended it (its client sent the event)."""

    __slots__ = ("node_id", "origin", "sockets")

    def __init__(self, node_id: str, here: Callable[[str], bool]) -> None:
        self.node_id = node_id
        self.sockets = here
        self.origin: str | None = None
        """The node of the entry being applied, None between entries."""

    @property
    def here(self) -> Callable[[str], bool] | None:
        return self.sockets

    def answering(self) -> bool:
        origin = self.origin
        return origin is None or origin == self.node_id


Apply = Callable[[LogEntry], "Applied"]


class Replica:
    """The core of one node, applying the log's entries."""

    def __init__(
        self,
        core: Core,
        node_id: str,
        clock: LogClock,
        *,
        kinds: Mapping[str, Apply] | None = None,
        sockets: NodeSockets | None = None,
    ) -> None:
        """``core`` reads ``clock`` and builds the sends ``sockets`` says (``Replica.new``
        makes them; None: all of them); ``kinds`` adds entry kinds or replaces this
        module's."""
        self.core = core
        self.node_id = node_id
        self.clock = clock
        self.sockets = sockets
        self.owners: dict[str, str] = {}
        """easyrtcid -> node whose socket it is (peers that ever had an entry). A held
        connection has no socket, so no owner: no node's reaper or tidy-up takes it for a
        socket of a dead node, or a stale one of its own, and ends it."""
        self.pending: dict[str, Decision] = {}
        """easyrtcid -> the decision its origin's hooks are to answer."""
        self.seqs: dict[str, int] = {}
        """node -> the sequence number of its last entry applied (``ordering``: a relay from
        it waits for its entries up to the one before it); forgotten at its ``node-gone``."""
        self.kinds: Mapping[str, Apply] = {
            RECV: self._recv,
            ANSWER: self._answer,
            CLOSE: self._close,
            CONTROL: self._control,
            NODE_GONE: self.node_gone,
            HOLD: self._hold,
            QUEUE: self._queue,
            EXPIRE: self._expire,
            RELEASE: self._release,
            STOCK: self._stock,
            **(kinds or {}),
        }
        self.on_login: Callable[[LogEntry, LoginRequested], None] | None = None
        """Told of a ``stock`` login's request before it is answered here: its node gives it
        back the client's own message and credential (``recv`` carries neither)."""
        holds = ReplicatedHolds(core.state.options, clock.now)
        core.state.holds = holds
        self.holds = holds
        """The key bindings, holds and queues, alike on every replica (``cluster.holds``)."""

    @classmethod
    def new(
        cls,
        options: Options | None,
        node_id: str,
        *,
        wall: Callable[[], int] | None = None,
        kinds: Mapping[str, Apply] | None = None,
        here: Callable[[str], bool] | None = None,
    ) -> Replica:
        """A replica with a fresh core reading the log's clock; ``here`` says which sockets
        are this node's (the core builds pushes for those only, and the reply for this node's
        entries only: ``NodeSockets``); None: every push and reply is built."""
        clock = LogClock(wall)
        sockets = NodeSockets(node_id, here) if here is not None else None
        core = Core(options, clock=clock.now, scope=sockets)
        return cls(core, node_id, clock, kinds=kinds, sockets=sockets)

    def now(self) -> int:
        """The entry's time while one is applied, else the wall clock."""
        return self.clock.now()

    def apply(self, entry: LogEntry) -> Applied:
        """Apply one entry (unknown kinds are skipped: an older node reading a newer log)."""
        handler = self.kinds.get(entry.kind)
        if handler is None:
            log.warning("skipped a log entry of unknown kind %r", entry.kind[:40])
            return Applied(None)
        self.clock.at = entry.t
        sockets = self.sockets
        if sockets is not None:
            sockets.origin = entry.node
        seqs = self.seqs
        if entry.seq > seqs.get(entry.node, 0):
            seqs[entry.node] = entry.seq
        try:
            return handler(entry)
        finally:
            self.clock.at = None
            if sockets is not None:
                sockets.origin = None

    def owned_by(self, node_id: str) -> list[str]:
        return [cid for cid, owner in self.owners.items() if owner == node_id]

    # -- entry kinds --------------------------------------------------------------------------

    def _peer(self, entry: LogEntry) -> Peer:
        """The entry's peer; created here with its easyrtcid on a replica that has not seen it
        (the origin created it when its socket opened)."""
        cid = entry.body["p"]
        peers = self.core.state.peers
        peer = peers.get(cid)
        if peer is None:
            address = entry.body.get("a")
            peer = peers[cid] = Peer(cid, address if isinstance(address, str) else None)
        self.owners[cid] = entry.node
        key = entry.body.get("rk")
        if isinstance(key, str) and len(key) == 64:
            with contextlib.suppress(ValueError):
                peer.resume_key = bytes.fromhex(key)
        return peer

    def _keep(self, entry: LogEntry, peer: Peer, result: Outcome | Decision) -> Applied:
        cid = entry.body["p"]
        if peer.easyrtcid != cid:  # its login resumed a held (or live) connection
            self.pending.pop(cid, None)
            self.owners.pop(cid, None)
            self.owners[peer.easyrtcid] = entry.node
        if isinstance(result, Outcome):
            self.pending.pop(peer.easyrtcid, None)
        else:
            self.pending[peer.easyrtcid] = result
        return Applied(peer, result)

    def _recv(self, entry: LogEntry) -> Applied:
        peer = self._peer(entry)
        body = entry.body
        return self._keep(entry, peer, self.core.receive(peer, body["e"], body.get("d"), True))

    def _stock(self, entry: LogEntry) -> Applied:
        """A ``recv`` whose decisions this replica answers as the stock hooks do, as every
        replica does, each the same: one entry for what is otherwise the event and its
        origin's answers. A decision they do not answer stays pending for the origin's
        hooks, as after a ``recv``."""
        peer = self._peer(entry)
        body = entry.body
        core = self.core
        step = core.receive(peer, body["e"], body.get("d"), True)
        sockets = self.sockets
        answering = sockets is None or sockets.answering()
        options = core.state.options
        while not isinstance(step, Outcome):
            if isinstance(step, LoginRequested) and self.on_login is not None:
                self.on_login(entry, step)
            answer = stock_answer(step, options, answering=answering)
            if answer is None:
                break
            step = core.answer(step, answer)
        return self._keep(entry, peer, step)

    def _known(self, entry: LogEntry) -> Peer | None:
        """The entry's peer if it is still open (an answer that comes after its close, or
        after a lost entry, is about nothing)."""
        return self.core.state.peers.get(entry.body["p"])

    def _answer(self, entry: LogEntry) -> Applied:
        peer = self._known(entry)
        if peer is None:
            return Applied(None)
        decision = self.pending.pop(peer.easyrtcid, None)
        answer = answer_of(entry.body)
        if decision is None or answer is None:  # its socket closed meanwhile: nothing to do
            return Applied(peer)
        return self._keep(entry, peer, self.core.answer(decision, answer))

    def _close(self, entry: LogEntry) -> Applied:
        cid = entry.body["p"]
        peer = self.core.state.peers.get(cid)
        if peer is None:
            self.owners.pop(cid, None)
            return Applied(None)
        if self.holds.is_held(cid) or self.owners.get(cid, entry.node) != entry.node:
            return Applied(None)  # held, or resumed on another node meanwhile: not this socket
        out = self._remove(peer)
        return Applied(peer, out, gone=[peer])

    def _remove(self, peer: Peer) -> Outcome:
        self.pending.pop(peer.easyrtcid, None)
        self.owners.pop(peer.easyrtcid, None)
        return self.core.close(peer)

    def _control(self, entry: LogEntry) -> Applied:
        body = entry.body
        change = CONTROLS.get(str(body.get("name")))
        if change is None:
            return Applied(None, error=KeyError(f"no control change {body.get('name')!r}"))
        try:
            result = change(self.core.state, *body.get("args", ()), **body.get("kwargs", {}))
        except Exception as exc:  # the same on every replica: the caller on the origin sees it
            return Applied(None, error=exc)
        return Applied(None, result if isinstance(result, Outcome) else Outcome())

    def node_gone(self, entry: LogEntry) -> Applied:
        """Every peer of a dead node leaves, as if each socket had closed; a keyed one is
        held instead (its client resumes on another node), nobody told. The node that
        appended the entry runs the leavers' hooks (``Applied.departed``): the reaper lock lets
        one node append it, and should two, only the first in log order still finds peers."""
        out = Outcome()
        gone: list[Peer] = []
        conns: list[Connection] = []
        peers = self.core.state.peers
        holds = self.holds
        gone_node = str(entry.body.get("node"))
        self.seqs.pop(gone_node, None)
        for cid in self.owned_by(gone_node):
            peer = peers.get(cid)
            self.owners.pop(cid, None)
            if peer is not None and (holds.is_held(cid) or self.core.hold(peer)):
                continue
            if peer is not None:
                if peer.connection is not None:
                    conns.append(peer.connection)
                out.extend(self._remove(peer))
                gone.append(peer)
        departed = conns if entry.node == self.node_id else []
        return Applied(None, out, gone=gone, departed=departed)

    def _hold(self, entry: LogEntry) -> Applied:
        """A keyed socket dropped on its node: held, nobody told (ignored when the connection
        resumed on another node meanwhile)."""
        cid = entry.body["p"]
        peer = self.core.state.peers.get(cid)
        if peer is None or self.owners.get(cid) != entry.node or self.holds.is_held(cid):
            return Applied(None)
        if self.core.hold(peer):
            del self.owners[cid]  # no socket now (see ``owners``)
        return Applied(peer)

    def _queue(self, entry: LogEntry) -> Applied:
        """A relayed push for a held connection: queued (bounded: past the bounds dropped);
        if it resumed meanwhile, its node delivers it now, in the log's order."""
        body = entry.body
        cid = body["p"]
        relayed = body.get("b")
        if not isinstance(relayed, dict):
            return Applied(None)
        push = Push(cid, str(body.get("e")), relayed)
        if self.holds.is_held(cid):
            if body.get("u"):  # unconfirmed by its client: its sender was answered long ago
                self.holds.requeue(cid, [push], first=False)
            else:
                self.holds.take(push)
            return Applied(None)
        if cid not in self.core.state.peers:
            return Applied(None)
        return Applied(None, Outcome([push]))

    def _release(self, entry: LogEntry) -> Applied:
        """Server code disconnected a held connection: an ordinary leave, now."""
        return self._end_hold(entry, self.holds.end_now(entry.body["p"]))

    def _expire(self, entry: LogEntry) -> Applied:
        """A hold's grace is over by this entry's time: an ordinary disconnect."""
        return self._end_hold(entry, self.holds.expire_due(entry.body["p"]))

    def _end_hold(self, entry: LogEntry, peer: Peer | None) -> Applied:
        """A hold ended (``peer``: its dropped socket, None if it was not held): peers told on
        every replica, the hooks run by the node that appended the entry (the first one in
        log order, should two append it)."""
        if peer is None:
            return Applied(None)
        conn = peer.connection
        out = self._remove(peer)
        departed = [conn] if conn is not None and entry.node == self.node_id else []
        return Applied(None, out, gone=[peer], departed=departed)
