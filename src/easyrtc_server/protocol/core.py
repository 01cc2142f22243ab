"""The EasyRTC protocol core: one incoming message in, what to send to whom out.

``Core`` dispatches the events of sockets (``open``, ``receive``, ``close``) to the rules in
``auth``, ``rooms``, ``relay`` and ``ice``, which change the ``State`` and return an
``Outcome``: an ordered list of sends (the ``Reply`` to the sender, ``Push`` es to easyrtcids,
a ``Fanout`` for a room or group message) and whether to close the socket. It does no I/O and
knows nothing of sockets, tasks or time beyond the state's injected clock.

Where server policy may say no, a rule returns a decision (``decisions``) instead; the caller
answers with an answer record (``answer``), and only then does the state change. Whether the
socket closed in the meantime is checked here, once, for every decision. ``check`` runs a
state-changing event's rule without changing anything (a cluster node does, before it logs).

``COMMANDS`` maps every ``easyrtcCmd`` msgType to its rule: the whole command API in one table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from ..options import Options
from . import auth, ice, relay, rooms
from .decisions import (
    Answer,
    Decision,
    IceAnswer,
    IceRequested,
    JoinAnswer,
    JoinPhase,
    JoinRequested,
    LoginAdmitted,
    LoginAnswer,
    LoginRequested,
    Refused,
    ReplyAnswer,
    ServerMessage,
    TokenAnswer,
    UnknownCommand,
)
from .errors import ErrorCode
from .hold import key_digest, well_formed_token
from .model import Application, Connection, Peer
from .outcome import ACK, Json, Outcome, refusal
from .scope import SendScope
from .state import State

__all__ = ["CHECKS", "COMMANDS", "Core", "Peer", "changes_state"]

Rule = Callable[[State, Connection, Json], "Outcome | Decision"]
Check = Callable[[State, Connection, Json], "Json | Outcome"]

COMMANDS: Final[dict[str, Rule]] = {
    "candidate": relay.relay_signal,
    "offer": relay.relay_signal,
    "answer": relay.relay_signal,
    "reject": relay.relay_signal,
    "hangup": relay.relay_signal,
    "getIceConfig": ice.get_ice_config,
    "getRoomList": rooms.get_room_list,
    "roomJoin": rooms.room_join,
    "roomLeave": rooms.room_leave,
    "setPresence": rooms.set_presence,
    "setRoomApiField": rooms.set_room_api_field,
    "setUserCfg": rooms.set_user_cfg,
    "stillAlive": rooms.still_alive,
}

CHECKS: Final[dict[str, Check]] = {
    "roomJoin": rooms.check_room_join,
    "roomLeave": rooms.check_room_leave,
    "setPresence": rooms.check_set_presence,
    "setRoomApiField": rooms.check_set_room_api_field,
}
"""The commands that change the state (with a login, ``changes_state``), each with its check:
what its rule reads, or its refusal (``Core.check``). ``setUserCfg`` is checked and discarded;
``getRoomList``, ``getIceConfig``, ``stillAlive`` and the relayed signals only read."""


def changes_state(peer: Peer, event: str, data: Any, has_ack: bool) -> bool:
    """Whether this event of a client may change the state (``Core.check`` takes it)."""
    if not has_ack:
        return False
    if event == "easyrtcAuth":
        return True
    return (
        event == "easyrtcCmd"
        and peer.connection is not None
        and type(data) is dict
        and type(msg_type := data.get("msgType")) is str  # a list cannot be looked up in a dict
        and msg_type in CHECKS
    )


class Core:
    """The state machine of one EasyRTC server (all applications, all sockets)."""

    def __init__(
        self,
        options: Options | None = None,
        *,
        clock: Callable[[], int] | None = None,
        new_id: Callable[[], str] | None = None,
        scope: SendScope | None = None,
    ) -> None:
        """``scope``: which sends the changes build (a cluster node's: pushes to its own
        sockets, replies to its own clients; ``scope``); None: all of them."""
        self.state = State(options, clock=clock, new_id=new_id, scope=scope)

    @property
    def options(self) -> Options:
        return self.state.options

    @property
    def apps(self) -> dict[str, Application]:
        return self.state.apps

    @property
    def peers(self) -> dict[str, Peer]:
        return self.state.peers

    def now(self) -> int:
        return self.state.now()

    # -- socket events ---------------------------------------------------------------------

    def open(
        self,
        remote_address: str | None = None,
        *,
        resume_key: Any = None,
        resume_token: Any = None,
    ) -> Peer:
        """A socket connected: give it an easyrtcid, unique among open sockets. A well-formed
        ``resume_key`` (``hold``) is kept as its digest, with its ``resume_token``; a bad one
        is ignored: an ordinary socket."""
        peer = self.state.add_peer(remote_address)
        digest = key_digest(resume_key)
        if digest is not None:
            peer.resume_key = digest
            peer.resume_token = well_formed_token(resume_token)
        return peer

    def receive(self, peer: Peer, event: str, payload: Any, has_ack: bool) -> Outcome | Decision:
        """Handle one event from ``peer``. Never raises for anything a client can send."""
        conn = peer.connection
        if event == "easyrtcCmd" and has_ack and conn is not None and isinstance(payload, dict):
            msg_type = payload.get("msgType")
            rule = COMMANDS.get(msg_type) if isinstance(msg_type, str) else None
            if rule is not None:
                return rule(self.state, conn, payload)
        if event == "easyrtcAuth":
            if not has_ack:  # the reference drops such a socket without a word
                return Outcome(close=True)
            return auth.authenticate(self.state, peer, payload)
        if event not in ("easyrtcCmd", "easyrtcMsg") or not has_ack:
            return Outcome()
        if conn is None:  # the reference has no handler yet: silence, unless strict_errors
            if not self.state.options.strict_errors:
                return Outcome()
            return self._refuse(peer.easyrtcid, event, ErrorCode.MSG_REJECT_NO_AUTH)
        if event == "easyrtcMsg":
            return relay.route_message(self.state, conn, payload)
        if not isinstance(payload, dict):
            code = ErrorCode.MSG_REJECT_BAD_TYPE
            if not isinstance(payload, list):
                code = ErrorCode.MSG_REJECT_BAD_STRUCTURE
            return self._refuse(conn.easyrtcid, event, code)
        msg_type = payload.get("msgType")
        if isinstance(msg_type, str):  # not in COMMANDS: the server's hooks may know it
            return UnknownCommand(conn, payload)
        return self._refuse(conn.easyrtcid, msg_type, ErrorCode.MSG_REJECT_BAD_TYPE)

    def close(self, peer: Peer) -> Outcome:
        """The socket is gone: leave every room and forget the connection."""
        state = self.state
        if peer.connection is not None and state.is_open(peer):
            state.holds.unbind(peer.easyrtcid)
        return state.remove_peer(peer)

    # -- holding keyed connections (``hold``) ------------------------------------------------

    def is_superseded(self, peer: Peer) -> bool:
        """Another socket took ``peer``'s easyrtcid over (it resumed with its key)."""
        return peer.superseded

    def hold(self, peer: Peer) -> bool:
        """``peer``'s socket dropped without a goodbye: True if its connection is now held
        (nothing changes for anyone, no outcome); False: close it as usual."""
        return self.state.is_open(peer) and self.state.holds.hold(peer)

    def is_held(self, peer: Peer) -> bool:
        """``peer`` is the dropped socket of a held connection."""
        held = self.state.holds.held.get(peer.easyrtcid)
        return held is not None and held.peer is peer

    def end_hold(self, easyrtcid: str) -> Peer | None:
        """End the hold of ``easyrtcid`` now (server code disconnects it): its dropped
        socket, to close as usual, or None if it is not held."""
        return self.state.holds.end(easyrtcid)

    def next_hold_expiry(self) -> int | None:
        """When (clock ms) the first hold runs out, or None."""
        return self.state.holds.next_expiry()

    def expire_holds(self) -> list[Peer]:
        """The held sockets whose grace is over: close each as usual (``close``)."""
        return self.state.holds.expired()

    def check(self, peer: Peer, event: str, payload: Any) -> Json | Outcome:
        """An event ``changes_state`` says yes to, checked by its rule without changing
        anything: its refusal, or its message with only what the rule reads (a login without
        its credential); ``receive`` of that message does what ``receive`` of the event does,
        unless the state changed in between (it is checked again then)."""
        if event == "easyrtcAuth":
            asked = auth.authenticate(self.state, peer, payload)
            return asked if isinstance(asked, Outcome) else auth.login_read(asked.request)
        conn = peer.connection
        assert conn is not None, "changes_state: commands of a logged-in socket only"
        return CHECKS[payload["msgType"]](self.state, conn, payload)

    # -- coalesced room updates (room_update_tick > 0) ---------------------------------------

    def next_room_update(self) -> int | None:
        """When (clock ms) the pending member-list changes are due; None if there are none."""
        return self.state.updates.next_flush()

    def flush_room_updates(self) -> Outcome:
        """The pending member-list changes: one ``roomData`` push per member behind."""
        return self.state.updates.flush()

    def settle(self, out: Outcome, sender: Peer | None) -> Outcome:
        """``out`` with each recipient first caught up on the changes pending for it (call
        before carrying out any outcome: what a member receives keeps the changes' order)."""
        return self.state.updates.settle(out, sender.easyrtcid if sender is not None else None)

    # -- decisions -------------------------------------------------------------------------

    def answer(self, decision: Decision, answer: Answer) -> Outcome | Decision:
        """Apply the caller's ``answer`` to ``decision``: the ``Outcome``, or the next decision.
        An answer that does not fit its decision (a bug, or a log entry about a decision this
        replica no longer has) changes nothing."""
        match decision, answer:
            case _, Refused(code=code, text=text):
                return self.refuse(decision, code, text)
            case LoginRequested(request=request), LoginAnswer():
                request.app_name = answer.app_name
                request.username = answer.username
                request.rooms = answer.rooms
                return self.accept_login(decision)
            case JoinRequested(), JoinAnswer():
                return self.accept_join(decision)
            case LoginAdmitted(conn=conn), TokenAnswer():
                if self.is_current(decision):
                    conn.username = answer.username
                    conn.presence = answer.presence
                    conn.fields = answer.fields
                return self.accept_token(decision, answer.ice_servers)
            case IceRequested(), IceAnswer(ice_servers=servers):
                return self.accept_ice(decision, servers)
            case ServerMessage() | UnknownCommand(), ReplyAnswer(body=body):
                return self.accept_reply(decision, body)
        return Outcome()

    def accept_login(self, decision: LoginRequested) -> JoinRequested | Outcome:
        """The login may proceed: next, may it enter its rooms?"""
        if not self.is_current(decision):
            return Outcome()
        return auth.check_login(self.state, decision)

    def accept_join(self, decision: JoinRequested) -> LoginAdmitted | Outcome:
        """The rooms may be entered: on ``roomJoin`` they are; at login the connection is built
        and the next question is whether it may stay."""
        if not self.is_current(decision):
            return Outcome()
        if decision.phase is JoinPhase.LOGIN:
            return auth.admit(self.state, decision)
        return rooms.apply_room_join(self.state, decision)

    def accept_token(self, decision: LoginAdmitted, servers: list[Json]) -> Outcome:
        """The login stands, with these ICE servers: send the token, tell the peers."""
        if not self.is_current(decision):
            return decision.out
        return auth.finish(self.state, decision, servers)

    def accept_ice(self, decision: IceRequested, servers: list[Json]) -> Outcome:
        if not self.is_current(decision):
            return Outcome()
        return Outcome().reply(ice.ice_config_reply(servers))

    def accept_reply(self, decision: ServerMessage | UnknownCommand, body: Json | None) -> Outcome:
        """The server's answer to a message or command for it (None: a plain ack)."""
        if not self.is_current(decision):
            return Outcome()
        return Outcome().reply(body if body is not None else ACK)

    def join_reply(self, conn: Connection, names: Iterable[str]) -> Json:
        """``roomJoin``'s reply as the rooms ``names`` are now (for a join answered later
        than the core applied it: its member-list updates start from here)."""
        return rooms.join_reply(self.state, conn, names)

    def refuse(self, decision: Decision, code: str, text: str | None = None) -> Outcome:
        """Refuse with EasyRTC error ``code``; a refused login closes the socket, and one
        already admitted is undone."""
        if not self.is_current(decision):
            return decision.out if isinstance(decision, LoginAdmitted) else Outcome()
        if _unanswered(decision, code):
            return Outcome()
        login = isinstance(decision, LoginRequested | LoginAdmitted) or (
            isinstance(decision, JoinRequested) and decision.phase is JoinPhase.LOGIN
        )
        easyrtcid = _peer_id(decision)
        out = refusal(self.now(), easyrtcid, decision.what, code, text=text, close=login)
        if isinstance(decision, LoginAdmitted):
            return auth.revoke(self.state, decision).extend(out)
        return out

    def is_current(self, decision: Decision) -> bool:
        """The socket a decision is about is still open, and still the same connection: a
        decision taken while it closed (or logged in elsewhere) changes nothing."""
        state = self.state
        if isinstance(decision, LoginRequested):
            return state.is_open(decision.peer)
        if isinstance(decision, LoginAdmitted) and decision.resumes is not None:
            other = state.peers.get(decision.resumes)
            if not state.is_open(decision.peer):
                return False
            if decision.fresh:  # restored after a restart: nobody took the easyrtcid since
                return other is None
            return other is not None and other.connection is decision.conn
        if isinstance(decision, JoinRequested) and decision.login is not None:
            return state.is_open(decision.login.peer)
        conn = decision.conn
        peer = state.peers.get(conn.easyrtcid) if conn is not None else None
        return peer is not None and peer.connection is conn

    def _refuse(self, easyrtcid: str, what: Any, code: ErrorCode) -> Outcome:
        return refusal(self.now(), easyrtcid, what, code)


def _unanswered(decision: Decision, code: str) -> bool:
    """A message for the server that no hook knows (``MSG_REJECT_BAD_TYPE``) gets no answer,
    as from the reference, which has no such messages; ``strict_errors`` answers it."""
    return (
        isinstance(decision, ServerMessage)
        and code == ErrorCode.MSG_REJECT_BAD_TYPE
        and not decision.conn.app.options.strict_errors
    )


def _peer_id(decision: Decision) -> str:
    if isinstance(decision, LoginRequested | LoginAdmitted):
        return decision.peer.easyrtcid
    if isinstance(decision, JoinRequested) and decision.login is not None:
        return decision.login.peer.easyrtcid
    assert decision.conn is not None
    return decision.conn.easyrtcid
