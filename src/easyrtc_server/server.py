"""Runs the protocol core behind a transport: feeds it socket events, answers its decisions
with the hooks, carries out the outcomes.

This is the only place that turns the core's ``Outcome`` into I/O: the ``Reply`` through the
transport's ack callable, each ``Push`` through the recipient's ``Link``, and the closing of
sockets that failed to authenticate. Transports call ``open``, ``receive`` and ``close`` (see
``transport/__init__.py``) and serialise the calls of one socket, which keeps a client's
messages in arrival order. What a message means is the core's business alone: where a policy
may say no, the core returns a decision (``decisions``), and ``_decide`` awaits the hooks and
answers it. Relayed signals await nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from . import control
from .cluster.replica import is_logged
from .core import Core
from .decisions import (
    Decision,
    IceRequested,
    JoinRequested,
    LoginAdmitted,
    LoginRequested,
    ServerMessage,
    UnknownCommand,
)
from .errors import EasyRtcError, ErrorCode, error_message
from .events import ServerEvents
from .hooks import Hooks
from .limits import Guard
from .model import Connection, Peer
from .options import Options
from .outcome import Outcome, Reply
from .transport import Ack, Link

if TYPE_CHECKING:
    from .cluster.node import ClusterNode

log = logging.getLogger("easyrtc_server")


class EasyRtcServer:
    """One EasyRTC server: the core, the hooks, and the links of its open sockets."""

    def __init__(
        self,
        options: Options | None = None,
        *,
        hooks: Hooks | None = None,
        core: Core | None = None,
    ) -> None:
        self.core = core or Core(options)
        self.options = self.core.options
        self.hooks = hooks or Hooks()
        self.hooks.bind(self)
        self.links: dict[str, Link] = {}
        self._room_update_timer: asyncio.TimerHandle | None = None
        self._room_update_tasks: set[asyncio.Task[None]] = set()
        self._room_update_cost = 0.0
        """Seconds the last tick's updates took to build and send: the next tick waits at least
        as long, so a big room's updates take at most about half of the event loop."""
        self.events = ServerEvents()  # ops: metrics, webhooks, admin (events.py)
        self.draining = False  # set while shutting down: /readyz answers 503
        self.guard = Guard(self.options, self.core.now)  # connection and rate limits
        self.cluster: ClusterNode | None = None  # set when this process is a cluster node
        self._hold_timer: asyncio.TimerHandle | None = None
        self._hold_tasks: set[asyncio.Task[None]] = set()

    # -- the transport seam ------------------------------------------------------------------

    async def open(self, link: Link) -> Peer | None:
        """A socket connected; None if the ``connect`` hook refused it."""
        # resume keys (``hold``): one process only for now; a cluster node ignores them
        keyed = self.cluster is None
        peer = self.core.open(
            link.remote_address,
            resume_key=getattr(link, "resume_key", None) if keyed else None,
            resume_token=getattr(link, "resume_token", None) if keyed else None,
        )
        self.links[peer.easyrtcid] = link
        try:
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
        """One event of ``peer``: the core's outcome, or its decision answered by the hooks."""
        if (refusal := self.guard.check(peer, event, ack is not None)) is not None:
            return await self.deliver(peer, refusal, ack)
        if self.cluster is not None and is_logged(peer, event, data, ack is not None):
            return await self._receive_logged(peer, event, data, ack)
        try:
            out = self.core.receive(peer, event, data, ack is not None)
            if not isinstance(out, Outcome):
                easyrtcid = peer.easyrtcid
                out = await self._decide(peer, out)
                if peer.easyrtcid != easyrtcid:  # its login resumed a held connection
                    self._resumed(easyrtcid, peer)
        except Exception:  # a bug must cost one reply, not the connection
            log.exception("failed to handle %s from %s", event, peer.easyrtcid)
            login = event == "easyrtcAuth"
            code = ErrorCode.LOGIN_GEN_FAIL if login else ErrorCode.MSG_REJECT_GEN_FAIL
            out = Outcome(close=login).reply(error_message(code, self.core.now()))
        self.events.received(peer, event, data, out)
        await self.deliver(peer, out, ack)
        if out.left:
            await self._rooms_left(out.left)

    async def _receive_logged(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> None:
        """A cluster node's state change: through the cluster's log (delivered there)."""
        assert self.cluster is not None
        out = await self.cluster.receive(peer, event, data, ack)
        self.events.received(peer, event, data, out)
        if out.left:
            await self._rooms_left(out.left)

    async def close(self, peer: Peer) -> None:
        """The socket is gone: its rooms are told, then the hooks. A keyed connection that
        dropped without a goodbye is held instead (``hold``): nobody is told yet."""
        if self.core.is_superseded(peer):  # another socket resumed its easyrtcid
            self.guard.closed(peer)
            return
        if self.core.is_held(peer):  # held already (``hold_for_restart``)
            return
        link = self.links.get(peer.easyrtcid)
        if (
            self.cluster is None
            and link is not None
            and not getattr(link, "goodbye", True)
            and self.core.hold(peer)
        ):
            del self.links[peer.easyrtcid]  # still counted by the guard: held, not gone
            self._arm_hold_timer()
            return
        await self._gone(peer)

    async def _gone(self, peer: Peer) -> None:
        self.guard.closed(peer)
        self.events.closed(peer, self.links.get(peer.easyrtcid))
        self.links.pop(peer.easyrtcid, None)
        conn = peer.connection
        out = await self.cluster.close(peer) if self.cluster is not None else None
        if out is None:  # not a cluster, or a socket only this node knew
            out = self.core.close(peer)
            await self.deliver(peer, out, None)
        if out.left:
            await self._rooms_left(out.left)
        if conn is not None:
            await self._notify(self.hooks.disconnect, conn)

    async def deliver(
        self,
        peer: Peer | None,
        out: Outcome,
        ack: Ack | None,
        *,
        settled: bool = False,
        replicated: bool = False,
    ) -> None:
        """Carry out ``out`` for an event of ``peer``: sends in order, then maybe close.
        ``settled``: ``out`` is a flush of room updates, in order as it is. ``replicated``:
        ``out`` is a cluster log entry's, which every node delivers to its own sockets; else
        a cluster node forwards pushes for other nodes' sockets to them."""
        if not settled:
            out = self.core.settle(out, peer)
        if self._room_update_timer is None and self.core.next_room_update() is not None:
            delay = max(self.options.room_update_tick, self._room_update_cost)
            self._room_update_timer = asyncio.get_running_loop().call_later(
                delay, self._room_updates_due
            )
        self.events.sent(out)
        links = self.links
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
            to = send.to
            link = links.get(to)
            if link is None:
                if self.cluster is not None and not replicated:
                    self.cluster.forward(send)
                else:  # held (``hold``): queued, or refused as for a gone peer
                    gone = self.core.state.holds.take(send)
                continue
            try:
                await link.send(send.event, body)
            except (TypeError, ValueError, RecursionError) as exc:  # not encodable (too deep)
                log.warning("could not send %s to %s: %s", send.event, to, exc)
                undeliverable = True
        if out.close and peer is not None:
            link = links.get(peer.easyrtcid)
            if link is not None:
                await link.close()

    # -- held connections (``hold``) ---------------------------------------------------------

    def _resumed(self, easyrtcid: str, peer: Peer) -> None:
        """``peer`` (until now ``easyrtcid``) took a held or live connection over: its link
        and its count follow it; a socket still open under that easyrtcid is closed."""
        links = self.links
        superseded = links.pop(peer.easyrtcid, None)
        link = links.pop(easyrtcid, None)
        if link is not None:
            links[peer.easyrtcid] = link
        self.guard.moved(easyrtcid, peer)
        self.events.connected_since.pop(easyrtcid, None)
        if superseded is not None:
            self._spawn(superseded.close())

    def hold_for_restart(self, peer: Peer) -> bool:
        """Shutting down: hold a keyed connection and drop its socket without a goodbye, so
        that its client comes back to the next process (which restores it from its resume
        token) and its peers hear nothing. Only with a ``resume_secret`` (else the next
        process could not restore it) and a transport that can drop a socket."""
        link = self.links.get(peer.easyrtcid)
        drop = getattr(link, "drop", None)
        if self.cluster is not None or not self.options.resume_secret or drop is None:
            return False
        if not self.core.hold(peer):
            return False
        del self.links[peer.easyrtcid]
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

    async def _decide(self, peer: Peer, decision: Decision) -> Outcome:
        """Answer the core's decision with the hooks, and the next one (a login asks thrice)."""
        step: Outcome | Decision = decision
        while not isinstance(step, Outcome):
            try:
                accept = await self._ask_hooks(peer, step)
            except EasyRtcError as exc:  # the core logs the refusal
                return self.core.refuse(step, exc.code, exc.text)
            except Exception:
                log.exception("hook failed for %s of %s", step.what, peer.easyrtcid)
                return self.core.refuse(step, step.failure)
            step = accept()
        return step

    async def _ask_hooks(self, peer: Peer, decision: Decision) -> Callable[[], Outcome | Decision]:
        """Await the hooks ``decision`` needs; return its acceptance (raise to refuse)."""
        core, hooks = self.core, self.hooks
        match decision:
            case LoginRequested(request=request):
                await hooks.authenticate(peer, request)
                return partial(core.accept_login, decision)
            case JoinRequested(app_name=app_name, phase=phase):
                for name, parameter in decision.rooms.items():
                    if name in decision.creates:
                        await hooks.room_create(peer, app_name, name)
                    await hooks.room_join(peer, app_name, name, parameter, phase)
                return partial(core.accept_join, decision)
            case LoginAdmitted(conn=conn):
                await hooks.authenticated(conn)
                return partial(core.accept_token, decision, await hooks.ice_servers(conn))
            case IceRequested(conn=conn):
                return partial(core.accept_ice, decision, await hooks.ice_servers(conn))
            case ServerMessage(conn=conn, msg=msg):
                return partial(core.accept_reply, decision, await hooks.server_message(conn, msg))
            case UnknownCommand(conn=conn, msg=msg):
                return partial(core.accept_reply, decision, await hooks.command(conn, msg))

    async def _rooms_left(self, left: list[tuple[Connection, str]]) -> None:
        for conn, room_name in left:
            await self._notify(self.hooks.room_left, conn, room_name)

    async def _notify(self, event: Any, *args: Any) -> None:
        try:
            await event(*args)
        except Exception:
            log.exception("hook %s failed", getattr(event, "__name__", event))

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
        """Push an ``easyrtcMsg`` from the server to a connection, a room or a group.

        Returns how many connections it was sent to.
        """
        core = self.core
        app_name = app or self.options.app_default_name
        extra: dict[str, Any] = {}
        if easyrtcid is not None:
            recipients = [easyrtcid] if easyrtcid in core.peers else []
        elif room is not None:
            recipients = control.room_members(core.state, app_name, room)
            extra["targetRoom"] = room
        elif group is not None:
            recipients = control.group_members(core.state, app_name, group)
            extra["targetGroup"] = group
        else:
            raise ValueError("send_message needs easyrtcid, room or group")
        await self.apply(control.message_to(core.state, recipients, msg_type, msg_data, **extra))
        return len(recipients)

    async def send_error(self, easyrtcid: str, code: ErrorCode | str) -> None:
        """Push an EasyRTC error to a client, which shows its text."""
        await self.apply(control.error_to(self.core.state, easyrtcid, code))

    async def push_ice_config(self, easyrtcid: str) -> None:
        """Send a connection fresh ICE servers (from the ``ice_servers`` hook)."""
        conn = control.connection_of(self.core.state, easyrtcid)
        servers = await self.hooks.ice_servers(conn)
        await self.apply(control.ice_config_to(self.core.state, easyrtcid, servers))

    async def change(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Make the change ``control.<name>(state, *args, **kwargs)`` and deliver its pushes;
        on a cluster node, on every node (``cluster.replica.CONTROLS`` names the changes)."""
        if self.cluster is not None:
            return await self.cluster.control(name, *args, **kwargs)
        result = getattr(control, name)(self.core.state, *args, **kwargs)
        if isinstance(result, Outcome):
            await self.apply(result)
        return result

    async def set_room_field(
        self, app: str, room: str, name: str, value: Any, *, shared: bool = True
    ) -> None:
        await self.change("set_room_field", app, room, name, value, shared=shared)

    async def set_session_field(
        self, app: str, easyrtcsid: str, name: str, value: Any, *, shared: bool = True
    ) -> None:
        await self.change("set_session_field", app, easyrtcsid, name, value, shared=shared)

    async def disconnect(self, easyrtcid: str) -> bool:
        """Close a client's socket (it is then cleaned up as any disconnect); a held
        connection (``hold``) leaves at once."""
        link = self.links.get(easyrtcid)
        if link is None:
            held = self.core.end_hold(easyrtcid)
            if held is not None:
                await self._gone(held)
                return True
            return self.cluster is not None and self.cluster.disconnect(easyrtcid)
        await link.close()
        return True

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
        log.info("refused %s of %s: %s", what, easyrtcid, exc.code)
    else:
        log.error("hook failed for %s of %s", what, easyrtcid, exc_info=exc)
