"""One node's replica of the whole cluster state: the protocol core, fed the log in order.

Every node applies the same entries (``log``) to its own ``Core`` in stream order, with the
core's clock reading each entry's time while it is applied, so every replica ends in the same
state and computes the same outcome for each entry. The replica also keeps what the core leaves
to its caller: each peer's pending decision (a login asks three times; the origin's hooks
answer with ``accept``/``refuse`` entries) and each peer's owner node (where its socket is).

What to do with an outcome (deliver pushes to this node's sockets, the reply to the origin's
client) is the node's business (``node``); this module does no I/O. ``APPLY`` maps each entry
kind to its function: a new kind is one function and one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .. import control
from ..decisions import Decision, JoinRequested, LoginAdmitted, LoginRequested
from ..model import Field, Peer
from ..outcome import Outcome
from ..validation import MISSING
from .log import ACCEPT, CLOSE, CONTROL, NODE_GONE, RECV, REFUSE, LogEntry

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("easyrtc_server.cluster")

LOGGED_COMMANDS: Final = frozenset({"roomJoin", "roomLeave", "setPresence", "setRoomApiField"})
"""The ``easyrtcCmd`` msgTypes that change state (``core.COMMANDS``), so go through the log.
``setUserCfg`` is validated and discarded, ``getRoomList``/``getIceConfig``/``stillAlive`` and
the relayed signals only read; ``easyrtcMsg`` (``relay.route_message``) never changes state."""

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


def is_logged(peer: Peer, event: str, data: Any, has_ack: bool) -> bool:
    """Whether this event of a client changes the state, so goes through the log."""
    if not has_ack:
        return False
    if event == "easyrtcAuth":
        return True
    return (
        event == "easyrtcCmd"
        and peer.connection is not None
        and type(data) is dict
        and type(msg_type := data.get("msgType")) is str  # a list cannot be looked up in a set
        and msg_type in LOGGED_COMMANDS
    )


@dataclass(slots=True)
class Applied:
    """What applying one entry gave: the peer it is about, the core's outcome or next
    decision, and the exception server code raised (a ``control`` entry)."""

    peer: Peer | None
    result: Outcome | Decision = field(default_factory=Outcome)
    error: Exception | None = None
    gone: list[Peer] = field(default_factory=list)
    """Peers removed (``close``, ``node-gone``)."""


def answer_of(decision: Decision, args: tuple[Any, ...]) -> dict[str, Any]:
    """What an ``accept`` entry must carry for ``decision``, after the hooks ran on the origin:
    the values they may have written that the core reads, and the acceptance's arguments."""
    if isinstance(decision, LoginRequested):
        request = decision.request
        answer: dict[str, Any] = {"app": request.app_name, "rooms": request.rooms}
        if request.username is not MISSING:
            answer["user"] = request.username
        return answer
    if isinstance(decision, LoginAdmitted):
        conn = decision.conn
        return {
            "ice": args[0],
            "user": conn.username,
            "presence": conn.presence,
            "fields": {name: [f.value, f.shared] for name, f in conn.fields.items()},
        }
    return {}


class Replica:
    """The core of one node, applying the log's entries."""

    def __init__(self, core: Core, node_id: str) -> None:
        self.core = core
        self.node_id = node_id
        self.owners: dict[str, str] = {}
        """easyrtcid -> node whose socket it is (peers that ever had an entry)."""
        self.pending: dict[str, Decision] = {}
        """easyrtcid -> the decision its origin's hooks are to answer."""
        self._t: int | None = None
        self._wall: Callable[[], int] = core.state.now
        core.state.now = self.now
        self.applied = 0
        """Entries applied since start (snapshots are taken every so many)."""
        self.APPLY: dict[str, Callable[[LogEntry], Applied]] = {
            RECV: self._recv,
            ACCEPT: self._accept,
            REFUSE: self._refuse,
            CLOSE: self._close,
            CONTROL: self._control,
            NODE_GONE: self._node_gone,
        }

    def now(self) -> int:
        """The entry's time while one is applied, else the wall clock."""
        t = self._t
        return t if t is not None else self._wall()

    def apply(self, entry: LogEntry) -> Applied:
        """Apply one entry (unknown kinds are skipped: an older node reading a newer log)."""
        handler = self.APPLY.get(entry.kind)
        self.applied += 1
        if handler is None:
            log.warning("skipped a log entry of unknown kind %r", entry.kind[:40])
            return Applied(None)
        self._t = entry.t
        try:
            return handler(entry)
        finally:
            self._t = None

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
        return peer

    def _keep(self, peer: Peer, result: Outcome | Decision) -> Applied:
        if isinstance(result, Outcome):
            self.pending.pop(peer.easyrtcid, None)
        else:
            self.pending[peer.easyrtcid] = result
        return Applied(peer, result)

    def _recv(self, entry: LogEntry) -> Applied:
        peer = self._peer(entry)
        body = entry.body
        return self._keep(peer, self.core.receive(peer, body["e"], body.get("d"), True))

    def _known(self, entry: LogEntry) -> Peer | None:
        """The entry's peer if it is still open (an answer that comes after its close, or
        after a lost entry, is about nothing)."""
        return self.core.state.peers.get(entry.body["p"])

    def _accept(self, entry: LogEntry) -> Applied:
        peer = self._known(entry)
        if peer is None:
            return Applied(None)
        decision = self.pending.pop(peer.easyrtcid, None)
        core, body = self.core, entry.body
        result: Outcome | Decision
        if isinstance(decision, LoginRequested):
            request = decision.request
            request.app_name = body.get("app")  # type: ignore[assignment]  # checked again
            request.username = body.get("user", MISSING)
            request.rooms = body.get("rooms")  # type: ignore[assignment]  # checked again
            result = core.accept_login(decision)
        elif isinstance(decision, JoinRequested):
            result = core.accept_join(decision)
        elif isinstance(decision, LoginAdmitted):
            conn = decision.conn
            if core.is_current(decision):
                conn.username = body.get("user")
                presence = body.get("presence")
                if isinstance(presence, dict):
                    conn.presence = presence
                fields = body.get("fields") or {}
                conn.fields = {name: Field(v, bool(shared)) for name, (v, shared) in fields.items()}
            ice = body.get("ice")
            result = core.accept_token(decision, ice if isinstance(ice, list) else [])
        else:  # no decision pending (its socket closed meanwhile): nothing to do
            result = Outcome()
        return self._keep(peer, result)

    def _refuse(self, entry: LogEntry) -> Applied:
        peer = self._known(entry)
        if peer is None:
            return Applied(None)
        decision = self.pending.pop(peer.easyrtcid, None)
        if decision is None:
            return Applied(peer)
        body = entry.body
        return Applied(peer, self.core.refuse(decision, str(body.get("code")), body.get("text")))

    def _close(self, entry: LogEntry) -> Applied:
        cid = entry.body["p"]
        peer = self.core.state.peers.get(cid)
        if peer is None:
            self.owners.pop(cid, None)
            return Applied(None)
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

    def _node_gone(self, entry: LogEntry) -> Applied:
        """Every peer of a dead node leaves, as if each socket had closed."""
        out = Outcome()
        gone: list[Peer] = []
        peers = self.core.state.peers
        for cid in self.owned_by(str(entry.body.get("node"))):
            peer = peers.get(cid)
            self.owners.pop(cid, None)
            if peer is not None:
                out.extend(self._remove(peer))
                gone.append(peer)
        return Applied(None, out, gone=gone)
