"""Runs the protocol core behind a transport: feeds it socket events, awaits the hooks, carries
out the outcomes.

This is the only place that turns the core's ``Outcome`` into I/O: acknowledgements through the
transport's ack callable, pushes through the recipients' ``Link``, and the closing of sockets
that failed to authenticate. Transports call ``open``, ``receive`` and ``close`` (see
``transport/__init__.py``) and serialise the calls of one socket, which keeps a client's
messages in arrival order. Relayed signals go straight to the core; only the events that have
hooks (login, roomJoin, getIceConfig, messages for the server) await anything.
"""

from __future__ import annotations

import logging
from typing import Any

from . import auth, control, ice, rooms
from .core import COMMANDS, Core, Peer
from .errors import EasyRtcError, ErrorCode, error_message
from .hooks import Hooks
from .limits import Guard
from .model import Connection
from .options import Options
from .outcome import ACK, Json, Outcome
from .transport import Ack, Link

log = logging.getLogger("easyrtc_server")

_HOOKED_COMMANDS = frozenset(("roomJoin", "roomLeave", "getIceConfig"))
_TARGETS = ("targetEasyrtcid", "targetRoom", "targetGroup")


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
        self.links: dict[str, Link] = {}
        self.guard = Guard(self.options, self.core.now)

    @property
    def draining(self) -> bool:
        """True once a graceful shutdown has begun (new sockets are refused)."""
        return self.guard.draining

    # -- the transport seam ------------------------------------------------------------------

    async def open(self, link: Link) -> Peer | None:
        """A socket connected; None if the ``connect`` hook refused it."""
        peer = self.core.open(link.remote_address)
        self.links[peer.easyrtcid] = link
        if await self.guard.refused(peer, link):
            return peer
        try:
            await self.hooks.connect(peer)
        except Exception as exc:
            _log_refusal("connection", peer, exc)
            del self.links[peer.easyrtcid]
            self.guard.closed(peer)
            self.core.close(peer)
            return None
        return peer

    async def receive(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> None:
        if (refusal := self.guard.check(peer, event, ack is not None)) is not None:
            return await self.deliver(peer, refusal, ack)
        try:
            out = await self._handle(peer, event, data, ack is not None)
        except Exception:  # a bug must cost one reply, not the connection
            log.exception("failed to handle %s from %s", event, peer.easyrtcid)
            login = event == "easyrtcAuth"
            code = ErrorCode.LOGIN_GEN_FAIL if login else ErrorCode.MSG_REJECT_GEN_FAIL
            out = Outcome(close=login).reply(error_message(code, self.core.now()))
        await self.deliver(peer, out, ack)

    async def close(self, peer: Peer) -> None:
        self.guard.closed(peer)
        self.links.pop(peer.easyrtcid, None)
        conn = peer.connection
        left = list(conn.rooms) if conn is not None else []
        await self.deliver(peer, self.core.close(peer), None)
        if conn is not None:
            for room_name in left:
                await self._notify(self.hooks.room_left, conn, room_name)
            await self._notify(self.hooks.disconnect, conn)

    async def deliver(self, peer: Peer | None, out: Outcome, ack: Ack | None) -> None:
        """Carry out ``out`` for an event of ``peer``: sends in order, then maybe close."""
        links = self.links
        undeliverable = False
        for to, event, body in out.sends:
            if to is None:
                if ack is not None and peer is not None and peer.easyrtcid in links:
                    if undeliverable:
                        body = error_message(ErrorCode.MSG_REJECT_BAD_DATA, self.core.now())
                    await ack(body)
                continue
            link = links.get(to)
            if link is None:
                continue
            try:
                await link.send(event, body)
            except (TypeError, ValueError, RecursionError) as exc:  # not encodable (too deep)
                log.warning("could not send %s to %s: %s", body.get("msgType"), to, exc)
                undeliverable = True
        if out.close and peer is not None:
            link = links.get(peer.easyrtcid)
            if link is not None:
                await link.close()

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
            recipients = control.room_members(core, app_name, room)
            extra["targetRoom"] = room
        elif group is not None:
            recipients = control.group_members(core, app_name, group)
            extra["targetGroup"] = group
        else:
            raise ValueError("send_message needs easyrtcid, room or group")
        await self.apply(control.message_to(core, recipients, msg_type, msg_data, **extra))
        return len(recipients)

    async def send_error(self, easyrtcid: str, code: ErrorCode | str) -> None:
        """Push an EasyRTC error to a client, which shows its text."""
        await self.apply(control.error_to(self.core, easyrtcid, code))

    async def push_ice_config(self, easyrtcid: str) -> None:
        """Send a connection fresh ICE servers (from the ``ice_servers`` hook)."""
        conn = control.connection_of(self.core, easyrtcid)
        servers = await self.hooks.ice_servers(conn)
        await self.apply(control.ice_config_to(self.core, easyrtcid, servers))

    async def set_room_field(
        self, app: str, room: str, name: str, value: Any, *, shared: bool = True
    ) -> None:
        await self.apply(control.set_room_field(self.core, app, room, name, value, shared=shared))

    async def set_session_field(
        self, app: str, easyrtcsid: str, name: str, value: Any, *, shared: bool = True
    ) -> None:
        out = control.set_session_field(self.core, app, easyrtcsid, name, value, shared=shared)
        await self.apply(out)

    async def disconnect(self, easyrtcid: str) -> bool:
        """Close a client's socket (it is then cleaned up as any disconnect)."""
        link = self.links.get(easyrtcid)
        if link is None:
            return False
        await link.close()
        return True

    def connection(self, easyrtcid: str) -> Connection | None:
        peer = self.core.peers.get(easyrtcid)
        return peer.connection if peer is not None else None

    def applications(self) -> list[str]:
        return list(self.core.apps)

    def rooms(self, app: str) -> dict[str, int]:
        """The rooms of an application with their member counts."""
        return {name: len(r.members) for name, r in control.app_of(self.core, app).rooms.items()}

    def occupants(self, app: str, room: str) -> list[str]:
        return control.room_members(self.core, app, room)

    # -- events with hooks ------------------------------------------------------------------

    async def _handle(self, peer: Peer, event: str, data: Any, has_ack: bool) -> Outcome:
        conn = peer.connection
        if has_ack and type(data) is dict:
            if event == "easyrtcAuth":
                return await self._authenticate(peer, data)
            if conn is not None:
                msg_type = data.get("msgType")
                if (
                    event == "easyrtcCmd"
                    and type(msg_type) is str
                    and (msg_type in _HOOKED_COMMANDS or msg_type not in COMMANDS)
                ):
                    return await self._command(peer, conn, msg_type, data)
                if (
                    event == "easyrtcMsg"
                    and type(msg_type) is str
                    and not any(key in data for key in _TARGETS)
                ):
                    return await self._reply_from(
                        peer,
                        self.hooks.server_message(conn, data),
                        ErrorCode.MSG_REJECT_GEN_FAIL,
                    )
        return self.core.receive(peer, event, data, has_ack)

    async def _authenticate(self, peer: Peer, data: Json) -> Outcome:
        core = self.core
        request = auth.parse_auth(core, data)
        if isinstance(request, ErrorCode):
            return core.reject(peer.easyrtcid, "authenticate", request, close=True)
        hooks = self.hooks
        try:
            await hooks.authenticate(peer, request)
        except Exception as exc:
            return self._refuse(peer, "login", exc, ErrorCode.LOGIN_BAD_AUTH, close=True)
        try:
            await self._room_policy(peer, request.app_name, auth.rooms_to_join(core, request))
        except Exception as exc:
            return self._refuse(peer, "login", exc, ErrorCode.LOGIN_GEN_FAIL, close=True)
        if peer.easyrtcid not in core.peers:  # closed while the hooks ran
            return Outcome()
        admitted = auth.admit(core, peer, request)
        if isinstance(admitted, Outcome):
            return admitted
        try:
            await hooks.authenticated(admitted.conn)
            servers = await hooks.ice_servers(admitted.conn)
        except Exception as exc:
            out = auth.revoke(core, peer, admitted)
            refusal = self._refuse(peer, "login", exc, ErrorCode.LOGIN_GEN_FAIL, close=True)
            out.sends.extend(refusal.sends)
            out.close = True
            return out
        if peer.connection is not admitted.conn:  # closed while the hooks ran
            return admitted.out
        return auth.finish(core, admitted, servers)

    async def _command(self, peer: Peer, conn: Connection, msg_type: str, msg: Json) -> Outcome:
        core = self.core
        if msg_type == "roomJoin":
            requested = rooms.parse_room_join(core, conn, msg)
            if isinstance(requested, Outcome):
                return requested
            try:
                await self._room_policy(peer, conn.app.name, requested)
            except Exception as exc:
                return self._refuse(peer, "roomJoin", exc, ErrorCode.MSG_REJECT_BAD_ROOM)
            if peer.connection is not conn:
                return Outcome()
            return rooms.apply_room_join(core, conn, list(requested))
        if msg_type == "roomLeave":
            before = list(conn.rooms)
            out = rooms.room_leave(core, conn, msg)
            for room_name in before:
                if room_name not in conn.rooms:
                    await self._notify(self.hooks.room_left, conn, room_name)
            return out
        if msg_type == "getIceConfig":
            refused = ice.check_ice_request(core, conn, msg)
            if refused is not None:
                return refused
            try:
                servers = await self.hooks.ice_servers(conn)
            except Exception as exc:
                return self._refuse(peer, "getIceConfig", exc, ErrorCode.MSG_REJECT_GEN_FAIL)
            return Outcome().reply(ice.ice_config_reply(servers))
        return await self._reply_from(
            peer, self.hooks.command(conn, msg), ErrorCode.MSG_REJECT_GEN_FAIL
        )

    async def _room_policy(self, peer: Peer, app_name: str, requested: dict[str, Any]) -> None:
        app = self.core.apps.get(app_name)
        for room_name, parameter in requested.items():
            if app is None or room_name not in app.rooms:
                await self.hooks.room_create(peer, app_name, room_name)
            await self.hooks.room_join(peer, app_name, room_name, parameter)

    async def _reply_from(self, peer: Peer, pending: Any, failure: ErrorCode) -> Outcome:
        try:
            reply = await pending
        except Exception as exc:
            return self._refuse(peer, "message", exc, failure)
        return Outcome().reply(reply if reply is not None else ACK)

    def _refuse(
        self, peer: Peer, what: str, exc: Exception, default: ErrorCode, *, close: bool = False
    ) -> Outcome:
        _log_refusal(what, peer, exc)
        code = exc.code if isinstance(exc, EasyRtcError) else default
        text = exc.text if isinstance(exc, EasyRtcError) else None
        return Outcome(close=close).reply(error_message(code, self.core.now(), text))

    async def _notify(self, event: Any, *args: Any) -> None:
        try:
            await event(*args)
        except Exception:
            log.exception("hook %s failed", getattr(event, "__name__", event))


def _log_refusal(what: str, peer: Peer, exc: Exception) -> None:
    if isinstance(exc, EasyRtcError):
        log.info("refused %s of %s: %s", what, peer.easyrtcid, exc.code)
    else:
        log.error("hook failed for %s of %s", what, peer.easyrtcid, exc_info=exc)
