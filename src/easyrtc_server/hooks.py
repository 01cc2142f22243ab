"""Server events that Python code can override: who may log in, which rooms exist, what the
server answers to messages addressed to it, which ICE servers a connection gets.

Subclass ``Hooks``, override the events you need, and pass an instance to ``EasyRtcServer``,
which binds it (``hooks.server`` is then the server, for its push API).
Every event is an ``async def``; call ``super()`` to keep the stock behaviour around your own.
To refuse, raise ``EasyRtcError(code)``: the client gets that EasyRTC error (a refused login is
then disconnected). Any other exception is logged and answered with the event's generic failure
code; it never costs the connection or leaves a half-joined room, because state only changes
after the policy events have all agreed.

Events of one socket run in that socket's message order. They do not block other sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .protocol.decisions import AuthRequest, JoinPhase
from .protocol.errors import EasyRtcError, ErrorCode
from .protocol.ice import ice_servers
from .protocol.model import Connection, Peer
from .protocol.outcome import Json

if TYPE_CHECKING:
    from .server import EasyRtcServer

__all__ = ["AuthRequest", "Hooks", "JoinPhase"]


class Hooks:
    """The stock behaviour of every event; override what you need."""

    _server: EasyRtcServer | None = None

    def bind(self, server: EasyRtcServer) -> None:
        """Called by the ``EasyRtcServer`` these hooks serve (one server per instance)."""
        if self._server is not None and self._server is not server:
            raise RuntimeError("these hooks already serve another server")
        self._server = server

    @property
    def server(self) -> EasyRtcServer:
        """The server these hooks serve: its push API (``send_message``…) and queries."""
        if self._server is None:
            raise RuntimeError("hooks not bound: pass them to EasyRtcServer(hooks=...)")
        return self._server

    async def connect(self, peer: Peer) -> None:
        """A socket connected (``peer.remote_address`` is known). Raise to close it at once."""

    async def authenticate(self, peer: Peer, request: AuthRequest) -> None:
        """A structurally valid login. Raise to refuse (default code ``LOGIN_BAD_AUTH``).

        ``request`` may be changed: its ``username``, ``app_name`` or ``rooms`` are used as they
        are after this returns, once they pass the same checks as a client's values (else
        ``LOGIN_BAD_AUTH``). ``request.app_name_given`` tells whether the client named the
        application. ``peer.data`` keeps anything needed by later events.
        """

    async def room_create(self, peer: Peer, app_name: str, room_name: str) -> None:
        """A login or ``roomJoin`` is about to create a room. Raise to refuse."""

    async def room_join(
        self, peer: Peer, app_name: str, room_name: str, room_parameter: Any, phase: JoinPhase
    ) -> None:
        """A login (``phase`` is ``JoinPhase.LOGIN``) or a ``roomJoin`` (``ROOM_JOIN``) is
        about to enter a room. Raise to refuse.

        Refusing one room refuses the whole request (``LOGIN_GEN_FAIL`` for a login,
        ``MSG_REJECT_BAD_ROOM`` for a ``roomJoin``, unless you raise another code).
        """

    async def authenticated(self, conn: Connection) -> None:
        """The connection is built and in its rooms; its token is not sent yet.

        Set fields here. Raise to undo the login (``LOGIN_GEN_FAIL``).
        """

    async def ice_servers(self, conn: Connection) -> list[Json]:
        """The ICE servers for the token and for ``getIceConfig``.

        By default a copy of the application's ``app_ice_servers`` (yours to change), plus a
        TURN entry with fresh time-limited credentials when ``turn_urls`` is set (``turn.py``).
        """
        return ice_servers(conn, self.server.options)

    async def server_message(self, conn: Connection, msg: Json) -> Json | None:
        """An ``easyrtcMsg`` with no target, i.e. for the server.

        Return the acknowledgement (``{"msgType": ..., "msgData": ...}``; None sends a plain
        ack). The stock server has no such messages: it raises ``MSG_REJECT_BAD_TYPE``, which
        the client gets only with ``strict_errors`` (the reference answers nothing).
        """
        raise EasyRtcError(ErrorCode.MSG_REJECT_BAD_TYPE)

    async def command(self, conn: Connection, msg: Json) -> Json | None:
        """An ``easyrtcCmd`` whose msgType EasyRTC does not define. Return the acknowledgement."""
        raise EasyRtcError(ErrorCode.MSG_REJECT_BAD_TYPE)

    async def room_left(self, conn: Connection, room_name: str) -> None:
        """The connection left a room (``roomLeave`` or disconnect). Errors are only logged."""

    async def disconnect(self, conn: Connection) -> None:
        """An authenticated socket is gone and cleaned up. Errors are only logged."""


DECIDING = ("authenticate", "room_create", "room_join", "authenticated", "ice_servers")
"""The hooks that answer the decisions of a state change (a login, a ``roomJoin``)."""


def decides_as_stock(hooks: Hooks) -> bool:
    """``hooks`` answer every decision of a state change as ``Hooks`` does (none of
    ``DECIDING`` is overridden): a cluster's replicas may answer them themselves
    (``protocol.stock``)."""
    kind = type(hooks)
    return all(getattr(kind, name) is getattr(Hooks, name) for name in DECIDING)
