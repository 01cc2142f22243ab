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
deeper than ``max_json_depth`` (64) gets EasyRTC's ``MSG_REJECT_BAD_STRUCTURE`` error as its
acknowledgement (or, asking for none, its socket closed). Binary events are refused (the socket
closed) unless ``binary_events`` is set. Values nested deeper than orjson writes (254 levels)
are sent with the standard library's encoder.

To send the same event to many sockets, encode it once with `prepare_event` and hand it to each
link's `SocketLink.send_raw`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any, Final, Protocol

import orjson
from aiohttp import web

from ..errors import ErrorCode, error_message
from ..options import Options
from . import Ack, Link
from .asgi_engineio import ASGIApp, AsgiEngineIO
from .engineio import EngineIOServer, EngineSocket, PreparedPacket

__all__ = [
    "LeanTransport",
    "PreparedEvent",
    "SeamServer",
    "SocketLink",
    "prepare_event",
]

log = logging.getLogger("easyrtc_server.transport.socketio")

CONNECT: Final = 0
DISCONNECT: Final = 1
EVENT: Final = 2
ACK: Final = 3
CONNECT_ERROR: Final = 4
BINARY_EVENT: Final = 5
BINARY_ACK: Final = 6

PreparedEvent = PreparedPacket
"""An event encoded once (see `prepare_event`)."""

# type digit, [attachments "-"], [namespace ("," or end)], [ack id]; the JSON follows
_HEADER: Final = re.compile(rb"([0-6])(?:(\d{1,6})-)?(?:(/[^,]*)(?:,|\Z))?(\d{0,16})")


class SeamServer(Protocol):
    """The server side of the seam (see `easyrtc_server.transport`)."""

    async def open(self, link: Link) -> Any | None: ...

    async def receive(self, peer: Any, event: str, data: Any, ack: Ack | None) -> None: ...

    async def close(self, peer: Any) -> None: ...


def prepare_event(event: str, data: Any) -> PreparedEvent:
    """Encode an event push once, for `SocketLink.send_raw` to any number of sockets."""
    return PreparedPacket(b"42" + _dumps([event, data]))


class SocketLink:
    """One socket.io connection, as the server sees it (implements `Link`).

    Pushes made while ``server.open`` runs are held and follow the CONNECT packet.
    """

    __slots__ = ("_early", "_sock", "_want_close", "connected", "peer", "sid")

    def __init__(self, sock: EngineSocket, sid: str) -> None:
        self._sock = sock
        self.sid = sid
        """The Socket.IO session id (the one the client sees as ``socket.id``)."""
        self.peer: Any = None
        self.connected = False
        self._early: list[bytes] | None = []
        self._want_close = False

    def __repr__(self) -> str:
        return f"<SocketLink {self.sid} on {self._sock!r}>"

    @property
    def remote_address(self) -> str | None:
        return self._sock.remote_address

    @property
    def engine_socket(self) -> EngineSocket:
        return self._sock

    async def send(self, event: str, data: Any) -> None:
        """Push one event (no ack requested); queues and returns at once."""
        if self.connected:
            try:
                packet = b"42" + orjson.dumps([event, data])
            except orjson.JSONEncodeError:  # nested beyond orjson's 254 levels
                packet = b"42" + _dumps([event, data])
            self._sock.send_packet(packet)
        elif self._early is not None:
            self._early.append(b"42" + _dumps([event, data]))

    def send_raw(self, prepared: PreparedEvent) -> None:
        """Push an event encoded once by `prepare_event`."""
        if self.connected:
            self._sock.send_prepared(prepared)
        elif self._early is not None:
            self._early.append(prepared.packet)

    async def close(self) -> None:
        """Disconnect the client (it will not reconnect on its own); ``server.close`` follows."""
        self.disconnect()

    def disconnect(self) -> None:
        """`close` without the coroutine."""
        sock = self._sock
        if self._early is not None:  # still opening: done once the CONNECT is out
            self._want_close = True
        elif self.connected and not sock.closed:
            sock.send_packet(b"41")
            sock.close("server namespace disconnect", graceful=True)

    def _accepted(self) -> None:
        early, self._early = self._early or [], None
        self.connected = True
        for packet in early:
            self._sock.send_packet(packet)
        if self._want_close:
            self.disconnect()

    def _refused(self) -> None:
        self._early = None
        self.connected = False


class _Session:
    """Socket.IO state of one Engine.IO session."""

    __slots__ = ("ack_id", "buffers", "kind", "link", "need", "pending", "timer")

    def __init__(self) -> None:
        self.link: SocketLink | None = None
        self.timer: asyncio.TimerHandle | None = None
        # a binary packet waiting for its attachments
        self.pending: Any = None
        self.kind = 0
        self.ack_id: int | None = None
        self.need = 0
        self.buffers: list[bytes] = []


class _BadPacket(Exception):
    pass


class _TooDeep(_BadPacket):
    """Valid JSON nested deeper than ``max_json_depth``."""


_BINARY_DEPTH: Final = 64
"""Most nesting of a binary packet's JSON (placeholder filling recurses that deep)."""


def _dumps(value: Any) -> bytes:
    """JSON with orjson; the standard library for what orjson refuses (nesting beyond 254)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_PLAIN_ACK: Final = {"msgType": "ack"}
_PLAIN_ACK_ARGS: Final = orjson.dumps([_PLAIN_ACK])
"""EasyRTC's success reply, the acknowledgement of nearly every event: encoded once. Compared
by value (a one-key dict compares in a few dozen nanoseconds), so a caller may pass any dict."""


def _make_ack(sock: EngineSocket, ack_id: bytes) -> Ack:
    """The acknowledgement callable of one event; ``ack_id``: the id in digits, no leading 0."""
    sent = False

    async def ack(arg: Any) -> None:
        nonlocal sent
        if not sent:
            # may raise (not encodable): the caller can then send another reply
            args = _PLAIN_ACK_ARGS if arg == _PLAIN_ACK else _dumps([arg])
            sent = True
            sock.send_packet(b"43" + ack_id + args)

    return ack


def _too_deep(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if type(item) is dict else item
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def _fill_placeholders(value: Any, buffers: list[bytes]) -> Any:
    if type(value) is list:
        return [_fill_placeholders(v, buffers) for v in value]
    if type(value) is dict:
        if value.get("_placeholder") is True:
            num = value.get("num")
            if type(num) is not int or not 0 <= num < len(buffers):
                raise _BadPacket("bad placeholder")
            return buffers[num]
        return {k: _fill_placeholders(v, buffers) for k, v in value.items()}
    return value


class LeanTransport:
    """Socket.IO (protocols 5 and 4) on the lean Engine.IO server, feeding a `SeamServer`.

    Options (times in seconds):

    - ``ping_interval`` (5), ``ping_timeout`` (10), ``upgrade_timeout`` (3): Engine.IO timers;
    - ``max_http_buffer_size`` (1e6): largest message or POST body; bigger closes the socket;
    - ``cors_origins``: origins whose pages may long-poll cross-origin (``"*"`` for any);
    - ``max_send_buffer`` (4 MiB): unsent bytes after which a socket is closed as a slow consumer;
    - ``allow_eio3`` (True): accept Engine.IO 3 / Socket.IO 4 clients (socket.io-client 2.x);
    - ``read_timeout`` (10): a POST body must arrive within this time;
    - ``max_poll_packets`` (0): most packets in one poll response (0: no cap; python-engineio's
      client takes at most 16);
    - ``connect_timeout`` (45): an Engine.IO 4 session must CONNECT to ``/`` within this time;
    - ``max_json_depth`` (64): an event nested deeper gets the EasyRTC error reply
      ``MSG_REJECT_BAD_STRUCTURE`` when it asked for an acknowledgement, else its socket is
      closed; None leaves it to orjson, which refuses (closes) more than 1024 levels;
    - ``binary_events`` (False): binary events (BINARY_EVENT/BINARY_ACK, which EasyRTC never
      sends) close the socket unless True;
    - ``max_attachments`` (16): a binary packet announcing more closes the socket.
    """

    def __init__(
        self,
        server: SeamServer,
        *,
        ping_interval: float = 5.0,
        ping_timeout: float = 10.0,
        upgrade_timeout: float = 3.0,
        max_http_buffer_size: int = 1_000_000,
        cors_origins: Iterable[str] = (),
        max_send_buffer: int = 4 * 1024 * 1024,
        allow_eio3: bool = True,
        read_timeout: float = 10.0,
        max_poll_packets: int = 0,
        connect_timeout: float = 45.0,
        max_json_depth: int | None = 64,
        max_attachments: int = 16,
        binary_events: bool = False,
    ) -> None:
        self.server = server
        self.connect_timeout = connect_timeout
        self.max_json_depth = max_json_depth
        self.max_attachments = max_attachments
        self.binary_events = binary_events
        self.engine = EngineIOServer(
            self,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            upgrade_timeout=upgrade_timeout,
            max_http_buffer_size=max_http_buffer_size,
            cors_origins=cors_origins,
            max_send_buffer=max_send_buffer,
            allow_eio3=allow_eio3,
            read_timeout=read_timeout,
            max_poll_packets=max_poll_packets,
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
            "connect_timeout": options.login_timeout or 45.0,
        }
        settings.update(extra)
        return cls(server, **settings)

    prepare_event = staticmethod(prepare_event)

    def attach(self, app: web.Application, path: str = "/socket.io/") -> None:
        """Serve Socket.IO at exactly ``path`` (with and without the trailing slash)."""
        self.engine.attach(app, path)

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
        session = _Session()
        sock.user = session
        if sock.eio < 4:
            await self._connect(sock, session)  # protocol 4 connects "/" implicitly
        else:
            self._arm_connect_timer(sock, session)

    async def on_close(self, sock: EngineSocket, reason: str) -> None:
        session: _Session | None = sock.user
        if session is None:
            return
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        session.pending = None
        await self._disconnected(session)

    async def on_message(self, sock: EngineSocket, data: bytes, binary: bool) -> None:
        session: _Session = sock.user
        if data[:1] == b"2" and not binary and session.pending is None:
            # The hot path: an EVENT for "/" (``2[...]`` or ``2<ack id>[...]``).
            link = session.link
            start = data.find(b"[", 1)
            if link is not None and 1 <= start <= 17:
                head = data[1:start]
                if not head or head.isdigit():
                    try:
                        args = orjson.loads(data[start:])
                    except ValueError as exc:
                        log.info("closing %r: %s", sock, exc)
                        sock.close("parse error", graceful=False)
                        return
                    limit = self.max_json_depth
                    # as deep as that takes that many brackets (the head has none)
                    if (
                        limit is not None
                        and data.count(b"[") + data.count(b"{") > limit
                        and _too_deep(args, limit)
                    ):
                        self._refuse_too_deep(sock, int(head) if head else None)
                        return
                    if type(args) is not list or not args or type(args[0]) is not str:
                        sock.close("parse error", graceful=False)
                        return
                    if head[:1] == b"0" and len(head) > 1:  # "007" is sent back as "7"
                        head = str(int(head)).encode()
                    ack = _make_ack(sock, head) if head else None
                    try:
                        await self.server.receive(
                            link.peer, args[0], args[1] if len(args) > 1 else None, ack
                        )
                    except Exception:
                        log.exception("server.receive failed for %r", link)
                    return
        try:
            if binary:
                if session.pending is None:
                    raise _BadPacket("unexpected binary data")
                session.buffers.append(data)
                if len(session.buffers) == session.need:
                    await self._binary_complete(sock, session)
                return
            if session.pending is not None:
                raise _BadPacket("text while waiting for attachments")
            match = _HEADER.match(data)
            if match is None:
                raise _BadPacket("bad header")
            kind = data[0] - 0x30
            attachments, nsp_raw, ack_raw = match.group(2, 3, 4)
            nsp = "/" if nsp_raw is None else nsp_raw.split(b"?", 1)[0].decode("utf-8", "replace")
            ack_id = int(ack_raw) if ack_raw else None
            rest = data[match.end() :]
            if kind == EVENT:
                if attachments is not None:
                    raise _BadPacket("attachments on a plain event")
                try:
                    args = self._loads(rest)
                except _TooDeep:
                    self._refuse_too_deep(sock, ack_id)
                    return
                await self._event(sock, session, nsp, args, ack_id)
            elif kind in (BINARY_EVENT, BINARY_ACK):
                if not self.binary_events:
                    # EasyRTC never sends binary; held attachments would cost memory
                    raise _BadPacket("binary events are refused")
                if attachments is None:
                    raise _BadPacket("binary packet without attachment count")
                need = int(attachments)
                if need > self.max_attachments:
                    raise _BadPacket("too many attachments")
                value = self._loads(rest)
                if _too_deep(value, min(self.max_json_depth or _BINARY_DEPTH, _BINARY_DEPTH)):
                    raise _BadPacket("binary packet nested too deep")
                session.pending = (nsp, value)
                session.kind, session.ack_id, session.need = kind, ack_id, need
                session.buffers = []
                if need == 0:
                    await self._binary_complete(sock, session)
            elif kind == ACK:
                if attachments is not None:
                    raise _BadPacket("attachments on a plain ack")
                self._loads(rest)  # the server never asks for acks: check and drop
            elif kind == CONNECT:
                if rest:
                    auth = self._loads(rest)
                    if sock.eio >= 4 and type(auth) is not dict:
                        raise _BadPacket("CONNECT payload is not an object")
                if nsp != "/":
                    self._connect_error(sock, nsp, "Invalid namespace")
                elif session.link is None:
                    await self._connect(sock, session)
            elif kind == DISCONNECT:
                if nsp == "/" and session.link is not None:
                    await self._disconnected(session)
                    self._arm_connect_timer(sock, session)
            else:
                raise _BadPacket("CONNECT_ERROR from a client")
        except (_BadPacket, ValueError) as exc:
            log.info("closing %r: %s", sock, exc)
            sock.close("parse error", graceful=False)

    # -- packets ---------------------------------------------------------------------------------

    def _loads(self, raw: bytes) -> Any:
        value = orjson.loads(raw)  # ValueError beyond 1024 levels
        limit = self.max_json_depth
        if (
            limit is not None
            and raw.count(b"[") + raw.count(b"{") > limit
            and _too_deep(value, limit)
        ):
            raise _TooDeep(f"JSON nested deeper than {limit}")
        return value

    def _refuse_too_deep(self, sock: EngineSocket, ack_id: int | None) -> None:
        """An event nested deeper than ``max_json_depth``: its EasyRTC error, or a close."""
        if ack_id is None:
            log.info("closing %r: JSON nested deeper than %s", sock, self.max_json_depth)
            sock.close("parse error", graceful=False)
            return
        log.info("refused an event of %r: JSON nested deeper than %s", sock, self.max_json_depth)
        reply = error_message(ErrorCode.MSG_REJECT_BAD_STRUCTURE, int(time.time() * 1000))
        sock.send_packet(b"43" + str(ack_id).encode() + orjson.dumps([reply]))

    async def _event(
        self, sock: EngineSocket, session: _Session, nsp: str, args: Any, ack_id: int | None
    ) -> None:
        if type(args) is not list or not args or type(args[0]) is not str:
            raise _BadPacket("event payload is not [name, ...]")
        link = session.link
        if link is None or nsp != "/":
            return
        data = args[1] if len(args) > 1 else None
        ack = None if ack_id is None else _make_ack(sock, str(ack_id).encode())
        try:
            await self.server.receive(link.peer, args[0], data, ack)
        except Exception:
            log.exception("server.receive failed for %r", link)

    async def _binary_complete(self, sock: EngineSocket, session: _Session) -> None:
        nsp, value = session.pending
        buffers = session.buffers
        session.pending = None
        session.buffers = []
        value = _fill_placeholders(value, buffers)
        if session.kind == BINARY_EVENT:
            await self._event(sock, session, nsp, value, session.ack_id)

    async def _connect(self, sock: EngineSocket, session: _Session) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        link = SocketLink(sock, secrets.token_urlsafe(15))
        session.link = link  # a second CONNECT meanwhile is ignored
        try:
            peer = await self.server.open(link)
        except Exception:
            log.exception("server.open failed")
            peer = None
        if peer is None:
            session.link = None
            link._refused()
            self._connect_error(sock, "/", "refused")
            self._arm_connect_timer(sock, session)
            return
        link.peer = peer
        if sock.eio >= 4:
            sock.send_packet(b"40" + orjson.dumps({"sid": link.sid}))
        else:
            sock.send_packet(b"40")
        link._accepted()

    def _connect_error(self, sock: EngineSocket, nsp: str, message: str) -> None:
        data: Any = message
        if sock.eio >= 4:
            data = {"message": message}
        prefix = b"44" if nsp == "/" else b"44" + nsp.encode() + b","
        sock.send_packet(prefix + orjson.dumps(data))

    def _arm_connect_timer(self, sock: EngineSocket, session: _Session) -> None:
        if sock.closed:
            return
        loop = asyncio.get_running_loop()
        session.timer = loop.call_later(self.connect_timeout, self._connect_timed_out, sock)

    @staticmethod
    def _connect_timed_out(sock: EngineSocket) -> None:
        session: _Session | None = sock.user
        if session is not None:
            session.timer = None
            if session.link is None:
                sock.close("connect timeout", graceful=True)

    async def _disconnected(self, session: _Session) -> None:
        link = session.link
        if link is None:
            return
        session.link = None
        link.connected = False
        try:
            await self.server.close(link.peer)
        except Exception:
            log.exception("server.close failed for %r", link)
