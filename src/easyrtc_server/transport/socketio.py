"""Socket.IO packets over the lean Engine.IO server, bound to the transport seam.

Protocol 5 runs over Engine.IO 4 (socket.io-client 3 and 4), protocol 4 over Engine.IO 3
(socket.io-client 2). Only the default namespace ``/`` exists: connecting to another one gets a
CONNECT_ERROR ("Invalid namespace"). With ``binary_events``, clients may send binary attachments
(BINARY_EVENT, BINARY_ACK); they are put back in place as ``bytes``. The server only sends JSON.

Usage::

    transport = LeanTransport(server, ping_interval=5.0, ping_timeout=10.0)
    transport.attach(app)                   # serves /socket.io/ on an aiohttp application

For each socket.io connection ``await server.open(link)`` is called with a `SocketLink` (a
``None`` result refuses the connection with a CONNECT_ERROR "refused"); events go to ``await
server.receive(peer, event, data, ack)`` inline, in arrival order; ``await server.close(peer)``
follows once. An event's data is its first argument (``None`` when it has none; further
arguments are dropped).

JSON is parsed with orjson. Malformed JSON, or JSON nested deeper than orjson takes (1024
levels), closes the socket, as the reference closes a socket on a parse error; an event nested
deeper than ``max_json_depth`` (64) is acknowledged with the server's ``refused(reason)`` (or,
asking for none, its socket closed). Binary events are refused (the socket closed) unless
``binary_events`` is set. Values nested deeper than orjson writes (254 levels) are sent with the
standard library's encoder.

The protocol itself (packets, namespace states, ack ids, bounds) is `socketio_protocol`, without
I/O; this module drives it: it awaits the server's coroutines, keeps the connect timers and turns
the protocol's events into calls and closes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

from aiohttp import web

from ..options import Options
from ..protocol.delivery import wants_acks
from . import Ack, Link, SharedEvent
from .asgi_engineio import ASGIApp, AsgiEngineIO
from .engineio import AiohttpEngineIO
from .engineio_protocol import ENGINEIO_DEFAULTS, READ_TIMEOUT, UPGRADE_TIMEOUT, SplitPacket
from .engineio_sessions import EngineIOServer, EngineSocket
from .socketio_protocol import (
    SOCKETIO_DEFAULTS,
    AckReceived,
    AutoReply,
    ConnectRequest,
    ConnectTimedOut,
    Disconnected,
    Event,
    EventReceived,
    EventRefused,
    NamespaceState,
    ProtocolError,
    SocketIOLimits,
    SocketSession,
    dumps,
    encode_ack,
    encode_event,
    encode_event_asking,
    split_event,
)

__all__ = [
    "LeanTransport",
    "SeamServer",
    "SocketLink",
]

log = logging.getLogger("easyrtc_server.transport.socketio")

_monotonic: Final = time.monotonic
"""The protocol's clock (the connect timers are armed with delays from it)."""

RESUME_KEY: Final = "easyrtcResumeKey"
RESUME_TOKEN: Final = "easyrtcResumeToken"
RESUME_ACKS: Final = "easyrtcResumeAcks"
"""Where a client gives its resume key and token (``hold``): in the CONNECT auth (Socket.IO 5),
or as handshake query parameters (any protocol; Socket.IO 4 clients have no CONNECT auth)."""

DROPS: Final = frozenset(("ping timeout", "transport close", "transport error"))
MAX_AWAITED_ACKS: Final = 4096
"""Acknowledgements one socket may owe at once (``send_confirmed``); past it, the oldest is
forgotten (its message stays unconfirmed: sent again after a resume)."""
"""Engine.IO close reasons that are not a goodbye: the socket dropped."""


_UNSPLIT: Final = SplitPacket(b"", b"")
"""A `SharedEvent`'s encoding when it cannot be split (its data holds its key already): each
socket's is encoded whole."""


class SeamServer(Protocol):
    """The server side of the seam (see `easyrtc_server.transport`)."""

    async def open(self, link: Link) -> Any | None: ...

    async def receive(self, peer: Any, event: str, data: Any, ack: Ack | None) -> None: ...

    async def close(self, peer: Any) -> None: ...

    def refused(self, reason: str) -> Any: ...

    @property
    def draining(self) -> bool:
        """True while the server shuts down: new sessions are refused at the handshake."""
        ...


class SocketLink:
    """One socket.io connection, as the server sees it (implements `Link`).

    Pushes made while ``server.open`` runs are held and follow the CONNECT packet.
    """

    __slots__ = (
        "_awaited",
        "_next_ack",
        "_proto",
        "_sock",
        "confirms",
        "connected",
        "opening",
        "peer",
        "resume_key",
        "resume_token",
        "said_goodbye",
        "sid",
    )

    def __init__(
        self, sock: EngineSocket, proto: SocketSession, sid: str, auth: Any = None
    ) -> None:
        self._sock = sock
        self._proto = proto
        self.sid = sid
        """The Socket.IO session id (the one the client sees as ``socket.id``)."""
        self.peer: Any = None
        self.connected = False
        self.opening = True
        """``server.open`` runs: pushes are held until the CONNECT is out."""
        self.said_goodbye = False
        """The client sent a Socket.IO DISCONNECT."""
        # the client's resume key and token (``hold``): CONNECT auth, else the handshake query
        given = auth if isinstance(auth, dict) and RESUME_KEY in auth else sock.query
        self.resume_key: Any = given.get(RESUME_KEY)
        self.resume_token: Any = given.get(RESUME_TOKEN)
        self.confirms: bool = self.resume_key is not None and wants_acks(given.get(RESUME_ACKS))
        """The client confirms relayed messages (``delivery``): ``send_confirmed`` asks."""
        self._awaited: dict[int, Callable[[], None]] = {}
        self._next_ack = 0

    def __repr__(self) -> str:
        return f"<SocketLink {self.sid} on {self._sock!r}>"

    @property
    def remote_address(self) -> str | None:
        return self._sock.remote_address

    @property
    def engine_socket(self) -> EngineSocket:
        """The Engine.IO session under this connection (for this transport's own tests)."""
        return self._sock

    @property
    def transport(self) -> str:
        return self._sock.transport_name

    @property
    def close_reason(self) -> str:
        return self._sock.close_reason

    @property
    def goodbye(self) -> bool:
        """The client left on purpose (a DISCONNECT, an Engine.IO close, a websocket closed
        with 1000/1001), or the server closed it; False for a drop (timeout, broken transport),
        after which a keyed connection is held."""
        return self.said_goodbye or self._sock.close_reason not in DROPS

    async def send(self, event: str, data: Any) -> None:
        """Push one event (no ack requested); queues and returns at once."""
        if self.connected:
            self._sock.send_packet(encode_event(event, data))
        elif self.opening:
            self._proto.hold(encode_event(event, data))

    async def send_shared(self, event: SharedEvent, value: Any) -> None:
        """`send` of ``event.data_for(value)``: the EVENT packet is split around ``value``
        once, by the first socket of ``event`` (the same for Socket.IO 4 and 5, Engine.IO 3
        and 4); each socket adds its value, framed as its transport wants (`SplitPacket`)."""
        packet = event.encoded
        if packet is None:
            parts = split_event(event.event, event.data, event.key, event.after)
            packet = event.encoded = _UNSPLIT if parts is None else SplitPacket(*parts)
        if packet is _UNSPLIT:
            await self.send(event.event, event.data_for(value))
        elif self.connected:
            self._sock.send_split(packet, dumps(value))
        elif self.opening:
            self._proto.hold(packet.packet(dumps(value)))

    async def send_confirmed(self, event: str, data: Any, confirmed: Callable[[], None]) -> None:
        """Push one event asking for an acknowledgement; ``confirmed`` is called when it comes
        (``delivery``). Queues and returns at once."""
        if not self.connected:
            return await self.send(event, data)
        self._next_ack += 1
        awaited = self._awaited
        awaited[self._next_ack] = confirmed
        if len(awaited) > MAX_AWAITED_ACKS:
            del awaited[next(iter(awaited))]
        self._sock.send_packet(encode_event_asking(event, data, self._next_ack))

    def acked(self, ack_id: int) -> None:
        confirmed = self._awaited.pop(ack_id, None)
        if confirmed is not None:
            confirmed()

    async def close(self) -> None:
        """Disconnect the client (it will not reconnect on its own); ``server.close`` follows."""
        self.disconnect()

    def drop(self) -> None:
        """End the session without a Socket.IO DISCONNECT, as a broken network would: a client
        that resumes (``hold``) comes back. ``server.close`` follows. What is queued for it
        still goes out first (its client sees "transport close" all the same): a relayed
        message handed to this socket just before a drain is delivered, not lost."""
        if not self._sock.closed:
            self._sock.close("server restart", graceful=True)

    def disconnect(self) -> None:
        """`close` without the coroutine."""
        if not (self.connected or self.opening):
            return
        sock = self._sock
        packet = self._proto.disconnect()  # None while opening: done once the CONNECT is out
        if packet is not None and not sock.closed:
            sock.send_packet(packet)
            sock.close("server namespace disconnect", graceful=True)


class _Session(SocketSession):
    """The protocol state of one Engine.IO session with the driver's: its link, its timer.

    A subclass rather than a wrapper: one attribute less to look up per message.
    """

    __slots__ = ("link", "timer")

    def __init__(self, eio: int, limits: SocketIOLimits) -> None:
        super().__init__(eio, limits)
        self.link: SocketLink | None = None
        self.timer: asyncio.TimerHandle | None = None


def _make_ack(sock: EngineSocket, ack_id: bytes) -> Ack:
    """The acknowledgement callable of one event; ``ack_id``: the id in digits, no leading 0."""
    sent = False

    async def ack(arg: Any) -> None:
        nonlocal sent
        if not sent:
            packet = encode_ack(ack_id, arg)  # may raise: the caller can send another reply
            sent = True
            sock.send_packet(packet)

    return ack


class LeanTransport:
    """Socket.IO (protocols 5 and 4) on the lean Engine.IO server, feeding a `SeamServer`.

    Options (times in seconds):

    - ``ping_interval`` (5), ``ping_timeout`` (10), ``upgrade_timeout`` (3): Engine.IO timers
      (``upgrade_timeout`` bounds the wait for an upgrade's probe; once the probe is answered,
      the session's heartbeat bounds the wait for the upgrade packet);
    - ``max_http_buffer_size`` (1e6): largest message or POST body; bigger closes the socket;
    - ``cors_origins``: origins whose pages may long-poll cross-origin (``"*"`` for any);
    - ``max_send_buffer`` (4 MiB): unsent bytes after which a socket is closed as a slow consumer;
    - ``allow_eio3`` (True): accept Engine.IO 3 / Socket.IO 4 clients (socket.io-client 2.x);
    - ``read_timeout`` (10): a POST body must arrive within this time;
    - ``max_poll_packets`` (0): most packets in one poll response (0: no cap; python-engineio's
      client takes at most 16);
    - ``connect_timeout`` (45): an Engine.IO 4 session must CONNECT to ``/`` within this time;
    - ``max_json_depth`` (64): an event nested deeper is acknowledged with the server's
      ``refused(reason)`` when it asked for an acknowledgement, else its socket is closed;
      None leaves it to orjson, which refuses (closes) more than 1024 levels;
    - ``binary_events`` (False): binary events (BINARY_EVENT/BINARY_ACK, which EasyRTC never
      sends) close the socket unless True;
    - ``max_attachments`` (16): a binary packet announcing more closes the socket.
    """

    def __init__(
        self,
        server: SeamServer,
        *,
        ping_interval: float = ENGINEIO_DEFAULTS.ping_interval,
        ping_timeout: float = ENGINEIO_DEFAULTS.ping_timeout,
        upgrade_timeout: float = UPGRADE_TIMEOUT,
        max_http_buffer_size: int = ENGINEIO_DEFAULTS.max_payload,
        cors_origins: Iterable[str] = (),
        max_send_buffer: int = ENGINEIO_DEFAULTS.max_send_buffer,
        allow_eio3: bool = True,
        read_timeout: float = READ_TIMEOUT,
        max_poll_packets: int = ENGINEIO_DEFAULTS.max_poll_packets,
        connect_timeout: float = SOCKETIO_DEFAULTS.connect_timeout,
        max_json_depth: int | None = SOCKETIO_DEFAULTS.max_json_depth,
        max_attachments: int = SOCKETIO_DEFAULTS.max_attachments,
        binary_events: bool = SOCKETIO_DEFAULTS.binary_events,
    ) -> None:
        self.server = server
        self.connect_timeout = connect_timeout
        self.max_json_depth = max_json_depth
        self.max_attachments = max_attachments
        self.binary_events = binary_events
        self.limits = SocketIOLimits(
            connect_timeout=connect_timeout,
            max_json_depth=max_json_depth,
            binary_events=binary_events,
            max_attachments=max_attachments,
        )
        self.engine = EngineIOServer(
            self,
            kept_query=(RESUME_KEY, RESUME_TOKEN, RESUME_ACKS),
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            upgrade_timeout=upgrade_timeout,
            max_http_buffer_size=max_http_buffer_size,
            cors_origins=cors_origins,
            max_send_buffer=max_send_buffer,
            allow_eio3=allow_eio3,
            read_timeout=read_timeout,
            max_poll_packets=max_poll_packets,
            accepting=lambda: not server.draining,
        )

    @classmethod
    def from_options(cls, server: SeamServer, options: Options, **extra: Any) -> LeanTransport:
        """A transport configured from the server's `Options` (plus any keyword options)."""
        settings: dict[str, Any] = {
            "ping_interval": options.ping_interval,
            "ping_timeout": options.ping_timeout,
            "max_http_buffer_size": options.max_http_buffer_size,
            "cors_origins": options.cors_origins,
            "max_json_depth": options.max_json_depth or None,
            "binary_events": options.binary_events_enable,
            "max_send_buffer": options.max_send_buffer,
            "max_poll_packets": options.max_poll_packets,
            "read_timeout": options.http_read_timeout,
            # a session that never connects to "/" cannot log in either
            "connect_timeout": options.login_timeout or SOCKETIO_DEFAULTS.connect_timeout,
        }
        settings.update(extra)
        return cls(server, **settings)

    def attach(self, app: web.Application, path: str = "/socket.io/") -> AiohttpEngineIO:
        """Serve Socket.IO at exactly ``path`` (with and without the trailing slash); the
        aiohttp driver that does."""
        driver = AiohttpEngineIO(self.engine)
        driver.attach(app, path)
        return driver

    def asgi_app(
        self, other_asgi_app: ASGIApp | None = None, path: str = "/socket.io/"
    ) -> AsgiEngineIO:
        """An ASGI application serving Socket.IO at ``path``, the rest by ``other_asgi_app``."""
        return AsgiEngineIO(self.engine, other_asgi_app, path)

    async def shutdown(self) -> None:
        """Close every socket (also done by the application's shutdown)."""
        await self.engine.shutdown()

    @property
    def links(self) -> list[SocketLink]:
        """The connected links."""
        out: list[SocketLink] = []
        for sock in self.engine.sockets.values():
            session: _Session | None = sock.user
            if session is not None and session.link is not None and session.link.connected:
                out.append(session.link)
        return out

    # -- Engine.IO handler -----------------------------------------------------------------------

    async def on_open(self, sock: EngineSocket) -> None:
        session = _Session(sock.eio, self.limits)
        sock.user = session
        request = session.open(_monotonic())
        if request is not None:  # protocol 4 connects "/" implicitly
            await self._connect(sock, session, None)
        else:
            self._arm_connect_timer(sock, session)

    async def on_close(self, sock: EngineSocket, reason: str) -> None:
        session: _Session | None = sock.user
        if session is None:
            return
        session.close()
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        await self._disconnected(session)

    async def on_message(self, sock: EngineSocket, data: bytes, binary: bool) -> None:
        session: _Session = sock.user
        event = session.receive_message(data, binary, _monotonic())
        if type(event) is EventReceived:  # the hot path
            link = session.link
            assert link is not None
            ack_id = event.ack_id
            try:
                await self.server.receive(
                    link.peer,
                    event.name,
                    event.data,
                    None if ack_id is None else _make_ack(sock, ack_id),
                )
            except Exception:
                log.exception("server.receive failed for %r", link)
        elif event is not None:
            await self._handle(sock, session, event)

    async def _handle(self, sock: EngineSocket, session: _Session, event: Event) -> None:
        if type(event) is ProtocolError:
            log.info("closing %r: %s", sock, event.reason)
            sock.close("parse error", graceful=False)
        elif type(event) is EventRefused:
            log.info("refused an event of %r: %s", sock, event.reason)
            sock.send_packet(encode_ack(event.ack_id, self.server.refused(event.reason)))
        elif type(event) is ConnectRequest:
            await self._connect(sock, session, event.auth)
        elif type(event) is Disconnected:
            if session.link is not None:
                session.link.said_goodbye = True
            await self._disconnected(session)
            self._arm_connect_timer(sock, session)
        elif type(event) is AckReceived:
            if session.link is not None:
                session.link.acked(event.ack_id)
        elif type(event) is AutoReply:
            sock.send_packet(event.packet)

    # -- connections -----------------------------------------------------------------------------

    async def _connect(self, sock: EngineSocket, session: _Session, auth: Any) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        link = SocketLink(sock, session, secrets.token_urlsafe(15), auth)
        session.link = link
        try:
            peer = await self.server.open(link)
        except Exception:
            log.exception("server.open failed")
            peer = None
        link.opening = False
        if peer is None:
            session.link = None
            packet = session.refuse(_monotonic())
            if packet is not None:
                sock.send_packet(packet)
            self._arm_connect_timer(sock, session)
            return
        link.peer = peer
        link.connected = True
        for packet in session.accept(link.sid):
            sock.send_packet(packet)
        if session.state is NamespaceState.CLOSED:  # the server closed it while it opened
            sock.close("server namespace disconnect", graceful=True)

    def _arm_connect_timer(self, sock: EngineSocket, session: _Session) -> None:
        deadline = session.next_deadline()
        if sock.closed or deadline is None:
            return
        delay = max(0.0, deadline - _monotonic())
        session.timer = asyncio.get_running_loop().call_later(delay, self._connect_timed_out, sock)

    def _connect_timed_out(self, sock: EngineSocket) -> None:
        session: _Session | None = sock.user
        if session is None:
            return
        session.timer = None
        if isinstance(session.handle_timeout(_monotonic()), ConnectTimedOut):
            sock.close("connect timeout", graceful=True)
        else:  # woken a little early
            self._arm_connect_timer(sock, session)

    async def _disconnected(self, session: _Session) -> None:
        link = session.link
        if link is None:
            return
        session.link = None
        link.connected = False
        link.opening = False
        try:
            await self.server.close(link.peer)
        except Exception:
            log.exception("server.close failed for %r", link)
