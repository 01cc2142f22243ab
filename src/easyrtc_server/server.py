"""Runs the protocol core behind a transport: feeds it socket events, answers its decisions
with the hooks, carries out the outcomes.

This is the only place that turns an ``Outcome`` into I/O: the ``Reply`` through the
transport's ack callable, each ``Push`` through the recipient's ``Link`` (a ``Fanout`` through
each recipient's, its shared part encoded once: ``Link.send_shared``), and the closing of
sockets that failed to authenticate. Transports call ``open``, ``receive`` and ``close`` (see
``transport/__init__.py``) and serialise the calls of one socket, which keeps a client's
messages in arrival order. What a message means is the core's business alone, and where the
state lives is the engine's (``engine``: this process alone, or shared by several): the server
hands the engine each event, and where the core asks a decision (``decisions``), ``_decide``
awaits the hooks and hands the engine their answer, a plain record. Relayed signals await
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from functools import partial
from typing import Any

from . import logsafe
from .directory import Directory, LocalDirectory, Target
from .engine import Engine, EngineFactory, EngineUnavailable, LocalEngine, Pending, Step
from .events import ServerEvents
from .hooks import Hooks, decides_as_stock
from .limits import Guard
from .options import Options
from .protocol import control
from .protocol.core import Core
from .protocol.decisions import (
    Answer,
    Decision,
    IceAnswer,
    IceRequested,
    JoinAnswer,
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
from .protocol.delivery import RELAYED, STAMP, stamp_of
from .protocol.errors import EasyRtcError, ErrorCode, error_message
from .protocol.model import Connection, Peer
from .protocol.outcome import ADDRESS, Fanout, Outcome, Rejected, Reply
from .transport import Ack, Link, SharedEvent

try:  # mypy's, for the optional compiled build (script/compile)
    from mypy_extensions import mypyc_attr
except ImportError:  # pure Python without mypy: the decorator means nothing

    def mypyc_attr(*_args: object, **_attrs: object) -> Any:  # type: ignore[misc]
        return lambda cls: cls


log = logging.getLogger("easyrtc_server")


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled, it may still be subclassed
class EasyRtcServer:
    """One EasyRTC server: the core, the hooks, and the links of its open sockets."""

    def __init__(
        self,
        options: Options | None = None,
        *,
        hooks: Hooks | None = None,
        core: Core | None = None,
        engine: EngineFactory | None = None,
    ) -> None:
        """``engine`` makes the engine (default: the state in this process, on ``core``)."""
        self.links: dict[str, Link] = {}
        if engine is not None and core is None:
            self.engine: Engine = engine(self, options or Options())
        else:
            self.engine = LocalEngine(self, core or Core(options))
        self.core = self.engine.core
        self._updates = self.core.state.updates  # read on every delivery
        self.options = self.core.options
        self.hooks = hooks or Hooks()
        self.hooks.bind(self)
        self.stock_decisions = decides_as_stock(self.hooks)
        """The hooks decide as the stock ones (``Carrier.stock_decisions``)."""
        self._room_update_timer: asyncio.TimerHandle | None = None
        self._room_update_tasks: set[asyncio.Task[None]] = set()
        self._room_update_cost = 0.0
        """Seconds the last tick's updates took to build and send: the next tick waits at least
        as long, so a big room's updates take at most about half of the event loop."""
        self.events = ServerEvents()  # ops: metrics, webhooks, admin (events.py)
        self.draining = False  # set while shutting down: /readyz answers 503
        self.guard = Guard(self.options, self.core.now)  # connection and rate limits
        self._hold_timer: asyncio.TimerHandle | None = None
        self._dropped: set[Peer] = set()
        """Sockets dropped by ``hold_for_restart``, until their close comes: held, though a
        cluster's replica may not have applied the hold yet."""
        self._hold_tasks: set[asyncio.Task[None]] = set()
        self.directory: Directory = self.engine.directory(LocalDirectory(self))
        """The connections and rooms of the whole state, and actions on them, wherever they
        are (``directory``): what the admin API and the push API ask."""

    # -- the transport seam ------------------------------------------------------------------

    async def open(self, link: Link) -> Peer | None:
        """A socket connected; None if the ``connect`` hook refused it."""
        peer = self.engine.open(  # with its resume key and token, if any (``hold``)
            link.remote_address,
            getattr(link, "resume_key", None),
            getattr(link, "resume_token", None),
        )
        self.links[peer.easyrtcid] = link
        try:
            with self.events.hook("connect"):
                await self.hooks.connect(peer)
        except Exception as exc:
            _log_refusal("connection", peer.easyrtcid, exc)
            del self.links[peer.easyrtcid]
            self.core.close(peer)
            return None
        self.events.opened(peer, link)
        await self.guard.refused(peer, link)  # over a limit: its error is pushed, it is closed
        return peer

    async def receive(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> None:
        """One event of ``peer``: the engine's outcome, or its decision answered by the hooks."""
        if (refusal := self.guard.check(peer, event, ack is not None)) is not None:
            return await self.deliver(peer, refusal, ack)
        try:
            step = self.engine.receive(peer, event, data, ack)
            if type(step) is Outcome:  # made here, at once: a relayed message
                await self.deliver(peer, step, ack)
                out = step
            else:
                out = await self._decide(peer, step, ack)
        except Exception as exc:  # a bug must cost one reply, not the connection
            if not isinstance(exc, EngineUnavailable):
                log.exception("failed to handle %s from %s", event, peer.easyrtcid)
            login = event == "easyrtcAuth"
            code = ErrorCode.LOGIN_GEN_FAIL if login else ErrorCode.MSG_REJECT_GEN_FAIL
            out = Outcome(close=login).reply(error_message(code, self.core.now()))
            await self.deliver(peer, out.note(Rejected(code, event, peer.easyrtcid)), ack)
        self.events.received(peer, event, data, out)
        if out.left:
            await self._rooms_left(out.left)

    def refused(self, reason: str) -> dict[str, Any]:
        """The acknowledgement of an event the transport refused unread (``reason``: e.g. JSON
        nested too deep): a malformed message's EasyRTC error."""
        return error_message(ErrorCode.MSG_REJECT_BAD_STRUCTURE, self.core.now())

    async def close(self, peer: Peer) -> None:
        """The socket is gone: its rooms are told, then the hooks. A keyed connection that
        dropped without a goodbye is held instead (``hold``): nobody is told yet."""
        if self.core.is_superseded(peer):  # another socket resumed its easyrtcid
            self.guard.closed(peer)
            return
        if peer in self._dropped or self.core.is_held(peer):  # held (``hold_for_restart``)
            self._dropped.discard(peer)
            return
        link = self.links.get(peer.easyrtcid)
        if link is not None and not getattr(link, "goodbye", True) and self.engine.hold(peer):
            del self.links[peer.easyrtcid]  # still counted by the guard: held, not gone
            self._arm_hold_timer()
            return
        await self._gone(peer)

    async def _gone(self, peer: Peer) -> None:
        self.guard.closed(peer)
        self.engine.ledger.forget(peer.easyrtcid)
        link = self.links.pop(peer.easyrtcid, None)
        conn = peer.connection
        out = await self.engine.close(peer)
        self.events.closed(peer, link, out)
        if out.left:
            await self._rooms_left(out.left)
        if conn is not None:
            await self._notify("disconnect", conn)

    def released(self, peer: Peer) -> None:
        """A held connection another process took over (``engine.Carrier.released``): this
        process may still relay to it there, numbered on."""
        self.guard.closed(peer)
        self.engine.ledger.release(peer.easyrtcid)
        self.events.connected_since.pop(peer.easyrtcid, None)

    def departed(self, conns: list[Connection], out: Outcome) -> None:
        """Connections of a dead node, reaped by this one (``engine.Carrier.departed``): their
        hooks run here, in the background, in the order of a disconnect's."""
        self._spawn(self._departed(conns, out))

    async def _departed(self, conns: list[Connection], out: Outcome) -> None:
        self.events.departed(out)
        if out.left:
            await self._rooms_left(out.left)
        for conn in conns:
            await self._notify("disconnect", conn)

    async def deliver(
        self,
        peer: Peer | None,
        out: Outcome,
        ack: Ack | None,
        *,
        settled: bool = False,
    ) -> None:
        """Carry out ``out`` for an event of ``peer``: sends in order, then maybe close.
        ``settled``: ``out`` is a flush of room updates, in order as it is. A push for a
        socket this process does not hold is the engine's to route."""
        if self._updates.pending_rooms:  # coalesced member-list changes not told yet
            if not settled:
                out = self.core.settle(out, peer)
            if self._room_update_timer is None and self.core.next_room_update() is not None:
                delay = max(self.options.room_update_tick, self._room_update_cost)
                self._room_update_timer = asyncio.get_running_loop().call_later(
                    delay, self._room_updates_due
                )
        self.events.sent(out)
        links = self.links
        keyed = self.core.state.holds.key_of
        undeliverable = False
        gone: ErrorCode | None = None
        for send in out.sends:
            body = send.body
            if isinstance(send, Reply):
                if ack is not None and peer is not None and peer.easyrtcid in links:
                    if undeliverable:
                        body = error_message(ErrorCode.MSG_REJECT_BAD_DATA, self.core.now())
                    elif gone is not None:
                        body = error_message(gone, self.core.now())
                    try:
                        await ack(body)
                    except (TypeError, ValueError, RecursionError) as exc:  # not encodable
                        log.warning("could not encode the reply to %s: %s", peer.easyrtcid, exc)
                        await ack(error_message(ErrorCode.MSG_REJECT_GEN_FAIL, self.core.now()))
                continue
            if isinstance(send, Fanout):
                shared = SharedEvent(send.event, body, ADDRESS, send.after)  # encoded once
                relayed = type(body) is dict and RELAYED in body
                away: list[str] = []
                for to in send.to:
                    link = links.get(to)
                    if link is None:
                        away.append(to)
                        continue
                    try:
                        if to in keyed and relayed:  # its own stamp and confirmation
                            await self._send_keyed(link, to, send.event, send.body_for(to))
                        else:
                            await link.send_shared(shared, to)
                    except (TypeError, ValueError, RecursionError) as exc:  # not encodable
                        log.warning("could not send %s to %s: %s", send.event, to, exc)
                        undeliverable = True
                if away:
                    gone = self.engine.route_fanout(send, away) or gone
                continue
            to = send.to
            link = links.get(to)
            if link is None:
                gone = self.engine.route(send) or gone  # elsewhere, or held: queued or refused
                continue
            try:
                if to in keyed and type(body) is dict and RELAYED in body:
                    await self._send_keyed(link, to, send.event, body)
                else:
                    await link.send(send.event, body)
            except (TypeError, ValueError, RecursionError) as exc:  # not encodable (too deep)
                log.warning("could not send %s to %s: %s", send.event, to, exc)
                undeliverable = True
        if out.close and peer is not None:
            link = links.get(peer.easyrtcid)
            if link is not None:
                await link.close()

    async def _send_keyed(self, link: Link, to: str, event: str, body: dict[str, Any]) -> None:
        """A relayed message to a keyed connection's socket here: stamped, sent asking for an
        acknowledgement and kept until it comes, if its client confirms (``delivery``); else
        sent as to anyone (a stamp from another node taken off), and confirmed to its origin."""
        ledger = self.engine.ledger
        stamp = stamp_of(body)
        if getattr(link, "confirms", False):
            if stamp is None:
                body = ledger.stamp(to, body)
                stamp = (ledger.origin, body[STAMP][1])
            origin, n = stamp
            if origin == ledger.origin:
                ledger.keep(to, n, event, body)
            await link.send_confirmed(  # type: ignore[attr-defined]
                event, body, partial(self.engine.confirmed, origin, to, n)
            )
            return
        if stamp is None:
            await link.send(event, body)
            return
        await link.send(event, {key: value for key, value in body.items() if key != STAMP})
        self.engine.confirmed(stamp[0], to, stamp[1])

    # -- held connections (``hold``) ---------------------------------------------------------

    def _resumed(self, easyrtcid: str, peer: Peer) -> None:
        """``peer`` (until now ``easyrtcid``) took a held or live connection over: its link
        and its count follow it; a socket still open under that easyrtcid is closed."""
        links = self.links
        link = links.pop(easyrtcid, None)
        if link is not None:  # else its engine moved it already (a cluster's log)
            superseded = links.pop(peer.easyrtcid, None)
            links[peer.easyrtcid] = link
            if superseded is not None:
                self._spawn(superseded.close())
        self.guard.moved(easyrtcid, peer)
        self.events.connected_since.pop(easyrtcid, None)

    def hold_for_restart(self, peer: Peer) -> bool:
        """Shutting down: hold a keyed connection and drop its socket without a goodbye, so
        that its client comes back to the next process (which restores it from its resume
        token) or to another node of its cluster, and its peers hear nothing. Only where the
        hold outlives this process (``Engine.holds_outlive_stop``) and with a transport that
        can drop a socket."""
        link = self.links.get(peer.easyrtcid)
        drop = getattr(link, "drop", None)
        if not self.engine.holds_outlive_stop() or drop is None or not self.engine.hold(peer):
            return False
        del self.links[peer.easyrtcid]
        self._dropped.add(peer)
        drop()
        return True

    def _arm_hold_timer(self) -> None:
        due = self.core.next_hold_expiry()
        if due is None or self._hold_timer is not None:
            return
        delay = max(0.0, (due - self.core.now()) / 1000)
        self._hold_timer = asyncio.get_running_loop().call_later(delay, self._holds_due)

    def _holds_due(self) -> None:
        self._hold_timer = None
        self._spawn(self._expire_holds())

    async def _expire_holds(self) -> None:
        """Holds whose grace ran out end as ordinary disconnects: peers told, hooks run."""
        for peer in self.core.expire_holds():
            await self._gone(peer)
        self._arm_hold_timer()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._hold_tasks.add(task)
        task.add_done_callback(self._hold_tasks.discard)

    def _room_updates_due(self) -> None:
        """Once per ``room_update_tick``: push the member-list changes of the tick."""
        self._room_update_timer = None
        task = asyncio.ensure_future(self._send_room_updates())
        self._room_update_tasks.add(task)
        task.add_done_callback(self._room_update_tasks.discard)

    async def _send_room_updates(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.deliver(None, self.core.flush_room_updates(), None, settled=True)
        self._room_update_cost = loop.time() - started

    # -- decisions: the hooks answer what the core asks --------------------------------------

    async def _decide(self, peer: Peer, step: Step | Pending, ack: Ack | None) -> Outcome:
        """Until an outcome: answer the core's decisions with the hooks (a login asks thrice),
        await the changes made elsewhere (their outcomes are carried out as they are made),
        carry out an outcome made here."""
        easyrtcid = peer.easyrtcid
        while True:
            resumed = peer.easyrtcid != easyrtcid
            if resumed:  # its login resumed a held connection (``hold``)
                self._resumed(easyrtcid, peer)
                easyrtcid = peer.easyrtcid
            if isinstance(step, Outcome):
                await self.deliver(peer, step, ack)
                if resumed:  # after its token: what its client had not confirmed
                    await self.engine.resend(easyrtcid)
                return step
            if isinstance(step, Awaitable):
                step = await step
                if isinstance(step, Outcome):
                    if peer.easyrtcid != easyrtcid:  # resumed through a cluster's log
                        self._resumed(easyrtcid, peer)
                    return step
                continue
            step = self.engine.answer(peer, step, await self.ask_hooks(peer, step), ack)

    async def ask_hooks(self, peer: Peer, decision: Decision) -> Answer:
        """Await the hooks ``decision`` needs; their answer as a record (``Refused`` when a
        hook raised)."""
        try:
            return await self._hooks_answer(peer, decision)
        except EasyRtcError as exc:  # the core logs the refusal
            return Refused(exc.code, exc.text)
        except Exception:
            log.exception("hook failed for %s of %s", decision.what, peer.easyrtcid)
            return Refused(decision.failure)

    async def _hooks_answer(self, peer: Peer, decision: Decision) -> Answer:
        """Each hook call is timed for the listeners (``events.hook``)."""
        hooks, timed = self.hooks, self.events.hook
        match decision:
            case LoginRequested(request=request):
                with timed("authenticate"):
                    await hooks.authenticate(peer, request)
                return LoginAnswer(request.app_name, request.username, request.rooms)
            case JoinRequested(app_name=app_name, phase=phase):
                for name, parameter in decision.rooms.items():
                    if name in decision.creates:
                        with timed("room_create"):
                            await hooks.room_create(peer, app_name, name)
                    with timed("room_join"):
                        await hooks.room_join(peer, app_name, name, parameter, phase)
                return JoinAnswer()
            case LoginAdmitted(conn=conn):
                with timed("authenticated"):
                    await hooks.authenticated(conn)
                with timed("ice_servers"):
                    servers = await hooks.ice_servers(conn)
                return TokenAnswer(servers, conn.username, conn.presence, conn.fields)
            case IceRequested(conn=conn):
                with timed("ice_servers"):
                    return IceAnswer(await hooks.ice_servers(conn))
            case ServerMessage(conn=conn, msg=msg):
                with timed("server_message"):
                    return ReplyAnswer(await hooks.server_message(conn, msg))
            case UnknownCommand(conn=conn, msg=msg):
                with timed("command"):
                    return ReplyAnswer(await hooks.command(conn, msg))

    async def _rooms_left(self, left: list[tuple[Connection, str]]) -> None:
        for conn, room_name in left:
            await self._notify("room_left", conn, room_name)

    async def _notify(self, name: str, *args: Any) -> None:
        """Tell hook ``name`` (``room_left``, ``disconnect``); a failure is logged."""
        try:
            with self.events.hook(name):
                await getattr(self.hooks, name)(*args)
        except Exception:
            log.exception("hook %s failed", name)

    # -- what server code can do -------------------------------------------------------------

    async def apply(self, out: Outcome) -> None:
        """Deliver the pushes of a change made with ``control``."""
        await self.deliver(None, out, None)

    async def send_message(
        self,
        msg_type: str,
        msg_data: Any = None,
        *,
        easyrtcid: str | None = None,
        app: str | None = None,
        room: str | None = None,
        group: str | None = None,
    ) -> int:
        """Push an ``easyrtcMsg`` from the server to a connection, a room or a group, wherever
        its recipients are connected (``directory``).

        Returns how many connections it was sent to (of the nodes that answered in time, on a
        partitioned cluster). KeyError: no such application (or room).
        """
        target: Target
        if easyrtcid is not None:
            target, name = "easyrtcid", easyrtcid
        elif room is not None:
            target, name = "room", room
        elif group is not None:
            target, name = "group", group
        else:
            raise ValueError("send_message needs easyrtcid, room or group")
        app_name = app or self.options.app_default_name
        found = await self.directory.send_message(msg_type, msg_data, app_name, target, name)
        return found.value

    async def send_error(self, easyrtcid: str, code: ErrorCode | str) -> None:
        """Push an EasyRTC error to a client, which shows its text."""
        await self.apply(control.error_to(self.core.state, easyrtcid, code))

    async def push_ice_config(self, easyrtcid: str) -> None:
        """Send a connection fresh ICE servers (from the ``ice_servers`` hook)."""
        conn = control.connection_of(self.core.state, easyrtcid)
        with self.events.hook("ice_servers"):
            servers = await self.hooks.ice_servers(conn)
        await self.apply(control.ice_config_to(self.core.state, easyrtcid, servers))

    async def change(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Make the change ``control.<name>(state, *args, **kwargs)`` and deliver its pushes,
        wherever the state lives (on every process that shares it)."""
        return await self.engine.change(name, args, kwargs)

    async def set_room_field(
        self, app: str, room: str, name: str, value: Any, *, shared: bool = True
    ) -> None:
        """Set a room field wherever the room's members are (``directory``); they are told."""
        await self.directory.set_room_field(app, room, name, value, shared=shared)

    async def set_session_field(
        self, app: str, easyrtcsid: str, name: str, value: Any, *, shared: bool = True
    ) -> None:
        await self.change("set_session_field", app, easyrtcsid, name, value, shared=shared)

    async def disconnect(self, easyrtcid: str) -> bool:
        """Close a client's socket, wherever it is connected (``directory``; it is then
        cleaned up as any disconnect); a held connection (``hold``) leaves at once. False:
        nobody has it."""
        return (await self.directory.disconnect(easyrtcid)).value

    async def disconnect_here(self, easyrtcid: str) -> bool:
        """``disconnect`` of a socket of this process, or of a connection held here; False if
        neither."""
        link = self.links.get(easyrtcid)
        if link is None:
            held = self.core.end_hold(easyrtcid)
            if held is None:
                return False
            await self._gone(held)
            return True
        await link.close()
        return True

    # The queries below read this process's core: the whole state in one process and on a
    # log cluster's node; on a partitioned node, its own connections and the rooms it reads.
    # ``directory`` answers for the whole cluster (awaited).

    def connection(self, easyrtcid: str) -> Connection | None:
        peer = self.core.peers.get(easyrtcid)
        return peer.connection if peer is not None else None

    def applications(self) -> list[str]:
        return list(self.core.apps)

    def rooms(self, app: str) -> dict[str, int]:
        """The rooms of an application with their member counts."""
        return {
            name: len(r.members) for name, r in control.app_of(self.core.state, app).rooms.items()
        }

    def occupants(self, app: str, room: str) -> list[str]:
        return control.room_members(self.core.state, app, room)


def _log_refusal(what: str, easyrtcid: str, exc: Exception) -> None:
    if isinstance(exc, EasyRtcError):
        line = "refused %s of %s: %s"
        logsafe.refusals.note(easyrtcid, False, line, what, easyrtcid, exc.code, logger=log)
    else:
        log.error("hook failed for %s of %s", what, easyrtcid, exc_info=exc)
