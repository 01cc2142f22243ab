"""Where the state lives and changes: the seam between the server and its state, with the
in-memory engine (one process) as its first implementation.

The server (``server.EasyRtcServer``) owns the sockets and the hooks; an ``Engine`` owns the
protocol core and decides *where* a change is made: in this process (``LocalEngine``) or through
a cluster's log, applied by every node alike (``cluster.node.ClusterNode``). The server hands it
a client's event, the answer to a decision, a close and server code's changes. A change the
engine makes at once, in this process, comes back as its ``Outcome`` for the server to carry out
(the relayed message's path: no await in between); a change made elsewhere (through a cluster's
log) comes back as an awaitable, and its outcome is carried out by the engine as it is made
(``Carrier.deliver``, in the order of the changes), then handed over for the server's hooks and
listeners. A push for a socket the server does not hold is the engine's to route, and so is the
disconnect of such a socket. The decide loop (ask the hooks, answer the core) is the server's,
once, for every engine.

This module knows no sockets, no hooks and nothing of a cluster.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .options import Options
from .protocol import control
from .protocol.core import Core
from .protocol.decisions import Answer, Decision
from .protocol.delivery import Ledger
from .protocol.errors import ErrorCode
from .protocol.model import Connection, Peer
from .protocol.outcome import Fanout, Outcome, Push, pushes_to
from .startup import ALONE

if TYPE_CHECKING:
    from .directory import Directory, LocalDirectory
    from .transport import Ack, Link

Step = Outcome | Decision
"""A change's result: its outcome, or the core's next question."""
Pending = Awaitable[Step]
"""A change being made elsewhere: an outcome it gives is carried out already."""


class EngineUnavailable(Exception):
    """The engine could not make a change (a cluster's log did not answer in time): the event
    is refused with the generic error of its kind."""


class Carrier(Protocol):
    """What an engine needs of the server: carrying out an outcome, and its open sockets."""

    links: dict[str, Link]
    """The sockets this process holds, by easyrtcid."""
    stock_decisions: bool
    """Its hooks answer the decisions of a state change as the stock ones do
    (``protocol.stock``): an engine may answer them itself."""

    async def deliver(self, peer: Peer | None, out: Outcome, ack: Ack | None) -> None: ...

    def departed(self, conns: list[Connection], out: Outcome) -> None:
        """Connections whose socket was in another process, which died, are gone (``out``,
        delivered already, is what their removal did): run their ``room_left`` and
        ``disconnect`` hooks and tell the listeners, as that process would have. Returns at
        once; the hooks run in the background."""
        ...

    def released(self, peer: Peer) -> None:
        """``peer``'s held connection was taken over by another process (a partitioned
        cluster's handover): its dropped socket is counted no more here; nobody is told and no
        hook runs (they go on where the connection went)."""
        ...


class Engine(Protocol):
    """One place where the server's state is changed (see the module docstring)."""

    core: Core
    ledger: Ledger
    """The relayed messages this process took from their senders and their (keyed,
    confirming) recipients have not confirmed yet (``delivery``)."""

    @property
    def role(self) -> str:
        """How the start-up line describes this process."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def open(self, remote: str | None, resume_key: Any, resume_token: Any) -> Peer:
        """A socket connected: its peer, with its resume key and token where this engine
        keeps identities across drops (``hold``)."""
        ...

    def hold(self, peer: Peer) -> bool:
        """``peer``'s socket dropped without a goodbye: hold its connection for a resume
        (``hold``); False where it has no key or this engine cannot hold it."""
        ...

    def holds_outlive_stop(self) -> bool:
        """A hold made as this process stops lives on: the next process restores it from its
        resume token (one process: only with a ``resume_secret``), or the other nodes of a
        cluster keep it (``server.hold_for_restart``)."""
        ...

    def receive(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> Step | Pending:
        """A client's event: made here (the outcome to carry out, or a decision), or pending."""
        ...

    def answer(
        self, peer: Peer, decision: Decision, answer: Answer, ack: Ack | None
    ) -> Step | Pending:
        """The hooks' ``answer`` to ``decision``, as ``receive``."""
        ...

    async def close(self, peer: Peer) -> Outcome:
        """A socket of this process closed: its rooms are told (carried out)."""
        ...

    async def change(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Server code's change ``control.<name>``, carried out; returns what it returned."""
        ...

    def route(self, send: Push) -> ErrorCode | None:
        """A push for a socket this process does not hold; the error its sender gets when
        it cannot be delivered (a held connection's queue is full), else None."""
        ...

    def route_fanout(self, send: Fanout, to: list[str]) -> ErrorCode | None:
        """``route`` for the recipients ``to`` of ``send`` this process does not hold."""
        ...

    def disconnect(self, easyrtcid: str) -> bool:
        """Close a socket this process does not hold; False if nobody holds it."""
        ...

    def confirmed(self, origin: str, to: str, n: int) -> None:
        """``to``'s client confirmed the message ``n`` of ``origin`` (``delivery``)."""
        ...

    async def resend(self, easyrtcid: str) -> None:
        """A socket of this process took ``easyrtcid``'s connection over (a resume, its
        token delivered): what its client has not confirmed is sent again."""
        ...

    def directory(self, local: LocalDirectory) -> Directory:
        """What the admin API and the push API ask about the whole state, given what this
        process's core holds (``local``): ``local`` itself where the core holds it all."""
        ...


EngineFactory = Callable[[Carrier, Options], Engine]
"""How the server makes its engine: given itself (to carry outcomes out) and its options."""


def hold_with_unconfirmed(core: Core, ledger: Ledger, peer: Peer) -> bool:
    """``core.hold(peer)``, with what its client had not confirmed (``ledger``) first in its
    hold's queue: sent again when it resumes."""
    if not core.hold(peer):
        return False
    cid = peer.easyrtcid
    unconfirmed = ledger.take(cid)
    if unconfirmed:
        pushes = [Push(cid, event, body) for event, body in unconfirmed]
        core.state.holds.requeue(cid, pushes)
    return True


async def resend_unconfirmed(carrier: Carrier, ledger: Ledger, easyrtcid: str) -> None:
    """What ``easyrtcid``'s client had not confirmed (``ledger``), sent again (it resumed)."""
    again = ledger.pending(easyrtcid)
    if again:
        await carrier.deliver(None, pushes_to(easyrtcid, again), None)


class LocalEngine:
    """The state in this process: every change is made at once, on the one core."""

    role = ALONE

    def __init__(self, carrier: Carrier, core: Core) -> None:
        self.core = core
        self.carrier = carrier
        options = core.options
        self.ledger = Ledger(
            secrets.token_urlsafe(8),
            options.resume_queue_messages,
            options.resume_queue_bytes,
            core.now,
        )

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def open(self, remote: str | None, resume_key: Any, resume_token: Any) -> Peer:
        return self.core.open(remote, resume_key=resume_key, resume_token=resume_token)

    def hold(self, peer: Peer) -> bool:
        """What its client had not confirmed goes first in its hold's queue."""
        return hold_with_unconfirmed(self.core, self.ledger, peer)

    def holds_outlive_stop(self) -> bool:
        return bool(self.core.state.options.resume_secret)

    def receive(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> Step | Pending:
        return self.core.receive(peer, event, data, ack is not None)

    def answer(
        self, peer: Peer, decision: Decision, answer: Answer, ack: Ack | None
    ) -> Step | Pending:
        return self.core.answer(decision, answer)

    async def close(self, peer: Peer) -> Outcome:
        out = self.core.close(peer)
        await self.carrier.deliver(peer, out, None)
        return out

    async def change(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = getattr(control, name)(self.core.state, *args, **kwargs)
        if isinstance(result, Outcome):
            await self.carrier.deliver(None, result, None)
        return result

    def route(self, send: Push) -> ErrorCode | None:
        """Nobody else holds sockets: a push for a held connection is queued (or refused when
        its queue is full), one for an unknown socket dropped."""
        return self.core.state.holds.take(send)

    def route_fanout(self, send: Fanout, to: list[str]) -> ErrorCode | None:
        take = self.core.state.holds.take
        code = None
        for cid in to:
            code = take(Push(cid, send.event, send.body_for(cid))) or code
        return code

    def disconnect(self, easyrtcid: str) -> bool:
        return False

    def confirmed(self, origin: str, to: str, n: int) -> None:
        if origin == self.ledger.origin:
            self.ledger.confirm(to, n)

    def directory(self, local: LocalDirectory) -> Directory:
        return local

    async def resend(self, easyrtcid: str) -> None:
        await resend_unconfirmed(self.carrier, self.ledger, easyrtcid)
