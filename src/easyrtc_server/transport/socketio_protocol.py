"""Socket.IO sessions (protocols 5 and 4) without I/O: Engine.IO messages in, events out.

The layer above `engineio_protocol`, split the same way: `SocketSession` knows the Socket.IO
packets, the namespace CONNECT/DISCONNECT states, ack ids and the bounds on what a client may
send, and nothing of sockets or asyncio. A driver (``socketio.py``) moves the packets and the time:

- ``open(now)`` once the Engine.IO session is open: protocol 4 (Engine.IO 3) connects ``/``
  implicitly and gets a `ConnectRequest` at once; protocol 5 waits for the client's CONNECT;
- each Engine.IO message goes to ``receive_message(data, binary, now)``, which returns at most one
  event (`ConnectRequest`, `EventReceived`, `Disconnected`, `AutoReply`, `EventRefused`,
  `ProtocolError`) or None;
- the driver answers a `ConnectRequest` with ``accept(sid)`` (the CONNECT packet, then the pushes
  ``hold`` kept meanwhile) or ``refuse(now)`` (a CONNECT_ERROR);
- ``next_deadline()`` is when ``handle_timeout(now)`` must be called: a protocol 5 session must
  CONNECT within ``connect_timeout``, or gets `ConnectTimedOut`.

Packets go out as whole Engine.IO message packets (``b'42["ev",1]'``, the ``4`` included, so
that a push is not copied once more to prepend it), ready for `EngineSocket.send_packet`; what
comes in is a message's data (``b'2["ev",1]'``), as Engine.IO hands it over. Only the default
namespace exists; a CONNECT to another gets a CONNECT_ERROR "Invalid namespace" and events to it
are dropped.

Bounds: JSON nested deeper than ``max_json_depth`` is an `EventRefused` (the driver replies with
its own error when the event asked for an ack) or, without an ack id, a `ProtocolError`; orjson
refuses more than 1024 levels (a `ProtocolError`). Binary packets (BINARY_EVENT, BINARY_ACK,
which EasyRTC never sends) are a `ProtocolError` unless ``binary_events``; with it, at most
``max_attachments`` attachments, their JSON at most 64 levels deep, and every placeholder must
name one of them.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "ACK",
    "BINARY_ACK",
    "BINARY_EVENT",
    "CONNECT",
    "CONNECT_ERROR",
    "DISCONNECT",
    "DISCONNECT_PACKET",
    "EVENT",
    "SOCKETIO_DEFAULTS",
    "AckReceived",
    "AutoReply",
    "ConnectRequest",
    "ConnectTimedOut",
    "Disconnected",
    "Event",
    "EventReceived",
    "EventRefused",
    "NamespaceState",
    "ProtocolError",
    "SocketIOLimits",
    "SocketSession",
    "dumps",
    "encode_ack",
    "encode_event",
    "encode_event_asking",
    "split_event",
]

CONNECT: Final = 0
DISCONNECT: Final = 1
EVENT: Final = 2
ACK: Final = 3
CONNECT_ERROR: Final = 4
BINARY_EVENT: Final = 5
BINARY_ACK: Final = 6

DISCONNECT_PACKET: Final = b"41"
"""The server's DISCONNECT of ``/``."""

BINARY_DEPTH: Final = 64
"""Most nesting of a binary packet's JSON (placeholder filling recurses that deep)."""

# type digit, [attachments "-"], [namespace ("," or end)], [ack id]; the JSON follows
_HEADER: Final = re.compile(rb"([0-6])(?:(\d{1,6})-)?(?:(/[^,]*)(?:,|\Z))?(\d{0,16})")


def dumps(value: Any) -> bytes:
    """JSON with orjson; the standard library for what orjson refuses (nesting beyond 254)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_event_asking(event: str, data: Any, ack_id: int) -> bytes:
    """An EVENT packet for ``/`` asking for the acknowledgement ``ack_id`` (`AckReceived`)."""
    return b"42" + str(ack_id).encode() + dumps([event, data])


def encode_event(event: str, data: Any) -> bytes:
    """An EVENT packet for ``/`` asking for no acknowledgement."""
    try:
        return b"42" + orjson.dumps([event, data])
    except orjson.JSONEncodeError:  # nested beyond orjson's 254 levels
        return b"42" + dumps([event, data])


def split_event(
    event: str, data: dict[str, Any], key: str, after: dict[str, Any] | None = None
) -> tuple[bytes, bytes] | None:
    """The EVENT packet of ``{**data, key: value, **after}`` around its ``value``, for any
    ``value``: ``(head, tail)`` such that ``head + <value as JSON> + tail`` is byte for byte
    ``encode_event(event, {**data, key: value, **after})``. None when the keys overlap (a
    merged key would stay where it first stood). Raises what ``encode_event`` raises for what
    cannot be encoded."""
    if key in data or (after and (key in after or not data.keys().isdisjoint(after))):
        return None
    whole = encode_event(event, data)  # b'42["ev",{...}]'
    if not whole.endswith(b"}]"):  # not a dict's encoding: not what the caller promised
        raise TypeError(f"not an object: {type(data).__name__}")
    sep = b"," if data else b""
    tail = b"}]"
    if after:
        tail = b"," + dumps(after)[1:] + b"]"  # ',"k":v,...}' + ']'
    return whole[:-2] + sep + orjson.dumps(key) + b":", tail


_PLAIN_ACK: Final = {"msgType": "ack"}
_PLAIN_ACK_ARGS: Final = orjson.dumps([_PLAIN_ACK])
"""EasyRTC's success reply, the acknowledgement of nearly every event: encoded once. Compared
by value (a one-key dict compares in a few dozen nanoseconds), so a caller may pass any dict."""


def encode_ack(ack_id: bytes, arg: Any) -> bytes:
    """The ACK packet answering ``ack_id`` (as `EventReceived` gives it) with one argument.

    Raises ``TypeError`` (orjson's error) when ``arg`` is not JSON.
    """
    return b"43" + ack_id + (_PLAIN_ACK_ARGS if arg == _PLAIN_ACK else dumps([arg]))


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """The client asks to connect to ``/``: answer with `SocketSession.accept` or ``refuse``."""

    auth: Any
    """The CONNECT payload (protocol 5: an object or None; protocol 4: None)."""


class EventReceived:
    """An event for ``/`` on a connected session. ``ack_id``: digits (no leading 0) or None."""

    __slots__ = ("ack_id", "data", "name")

    def __init__(self, name: str, data: Any, ack_id: bytes | None) -> None:
        # a plain class: one is made per message, and a frozen dataclass costs twice as much
        self.name = name
        self.data = data
        """The first argument, None without one (further arguments are dropped)."""
        self.ack_id = ack_id

    def __repr__(self) -> str:
        return f"EventReceived({self.name!r}, {self.data!r}, {self.ack_id!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not EventReceived:
            return False
        return (self.name, self.data, self.ack_id) == (other.name, other.data, other.ack_id)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The client left ``/`` (its DISCONNECT); the session waits for another CONNECT."""


@dataclass(frozen=True, slots=True)
class AutoReply:
    """The protocol answers on its own: send ``packet`` (e.g. a CONNECT_ERROR)."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class EventRefused:
    """An event nested deeper than ``max_json_depth`` that asked for an acknowledgement.

    The driver answers it with ``encode_ack(ack_id, its error)``.
    """

    ack_id: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class AckReceived:
    """The client acknowledged the event the server sent with ``ack_id``
    (``encode_event_asking``); what it answered is not read."""

    ack_id: int


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Garbage, or something refused outright: close the Engine.IO session (a parse error)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectTimedOut:
    """No CONNECT within ``connect_timeout``: close the Engine.IO session."""


Event = (
    ConnectRequest
    | EventReceived
    | Disconnected
    | AutoReply
    | EventRefused
    | AckReceived
    | ProtocolError
)
_DISCONNECTED: Final = Disconnected()


class NamespaceState(enum.Enum):
    """Where a session's ``/`` connection is."""

    IDLE = "idle"
    """Not connected: waiting for a CONNECT (or for ``open``)."""
    CONNECTING = "connecting"
    """A `ConnectRequest` is out, not yet accepted or refused."""
    CONNECTED = "connected"
    CLOSED = "closed"
    """The server disconnected ``/``, or the Engine.IO session ended: nothing more happens."""


# module constants: an enum member looked up on its class costs some 70 ns in Python 3.11
_IDLE: Final = NamespaceState.IDLE
_CONNECTING: Final = NamespaceState.CONNECTING
_CONNECTED: Final = NamespaceState.CONNECTED
_CLOSED: Final = NamespaceState.CLOSED


@dataclass(frozen=True, slots=True)
class SocketIOLimits:
    """The bounds of every session of one server (see the module documentation)."""

    connect_timeout: float = 45.0
    max_json_depth: int | None = 64
    binary_events: bool = False
    max_attachments: int = 16


SOCKETIO_DEFAULTS: Final = SocketIOLimits()
"""The Socket.IO defaults, written once: the transport's and the server options' defaults."""


class _BadPacket(Exception):
    pass


class _TooDeep(_BadPacket):
    pass


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


class SocketSession:
    """The Socket.IO state of one Engine.IO session; see the module documentation."""

    __slots__ = (
        "_ack_id",
        "_binary_kind",
        "_buffers",
        "_deadline",
        "_held",
        "_max_depth",
        "_need",
        "_pending",
        "_want_close",
        "eio",
        "limits",
        "state",
    )

    def __init__(self, eio: int, limits: SocketIOLimits) -> None:
        self.eio = eio
        self.limits = limits
        self._max_depth = limits.max_json_depth
        self.state: NamespaceState = _IDLE
        self._deadline: float | None = None
        self._held: list[bytes] = []
        self._want_close = False
        # a binary packet waiting for its attachments: (namespace, JSON), its kind, ack id
        self._pending: tuple[str, Any] | None = None
        self._binary_kind = 0
        self._ack_id: bytes | None = None
        self._need = 0
        self._buffers: list[bytes] = []

    def __repr__(self) -> str:
        return f"<SocketSession EIO{self.eio} {self.state.value}>"

    # -- the connection of "/" ------------------------------------------------------------------

    def open(self, now: float) -> ConnectRequest | None:
        """The Engine.IO session is open: protocol 4 connects ``/`` now, 5 waits (and a timer)."""
        if self.eio < 4:
            self.state = _CONNECTING
            return ConnectRequest(None)
        self._deadline = now + self.limits.connect_timeout
        return None

    def accept(self, sid: str) -> list[bytes]:
        """The server took the `ConnectRequest`: the CONNECT packet, then the held pushes.

        If ``disconnect`` was called meanwhile, a DISCONNECT follows and the state is CLOSED.
        """
        if self.state is not _CONNECTING:
            return []
        self.state = _CONNECTED
        packets = [b"40" + orjson.dumps({"sid": sid}) if self.eio >= 4 else b"40"]
        packets += self._held
        self._held = []
        if self._want_close:
            packets.append(DISCONNECT_PACKET)
            self.state = _CLOSED
        return packets

    def refuse(self, now: float) -> bytes | None:
        """The server refused the `ConnectRequest`: a CONNECT_ERROR; another CONNECT may follow."""
        if self.state is not _CONNECTING:
            return None
        self.state = _IDLE
        self._held = []
        self._want_close = False
        self._deadline = now + self.limits.connect_timeout
        return self._connect_error("/", "refused")

    def hold(self, packet: bytes) -> None:
        """A push made while CONNECTING: sent after the CONNECT packet by ``accept``."""
        if self.state is _CONNECTING:
            self._held.append(packet)

    def disconnect(self) -> bytes | None:
        """The server ends ``/``: the DISCONNECT packet (then close the Engine.IO session).

        While CONNECTING it is done by ``accept`` (or ``refuse``): None now.
        """
        if self.state is _CONNECTING:
            self._want_close = True
            return None
        if self.state is _CONNECTED:
            self.state = _CLOSED
            return DISCONNECT_PACKET
        return None

    def close(self) -> None:
        """The Engine.IO session ended: nothing more happens."""
        self.state = _CLOSED
        self._deadline = None
        self._pending = None
        self._buffers = []
        self._held = []

    def next_deadline(self) -> float | None:
        """When ``handle_timeout`` must be called (None: no timer)."""
        return self._deadline if self.state is _IDLE else None

    def handle_timeout(self, now: float) -> ConnectTimedOut | None:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        self._deadline = None
        return ConnectTimedOut()

    def _connect_error(self, nsp: str, message: str) -> bytes:
        data: Any = {"message": message} if self.eio >= 4 else message
        prefix = b"44" if nsp == "/" else b"44" + nsp.encode() + b","
        return prefix + orjson.dumps(data)

    # -- receiving ------------------------------------------------------------------------------

    def receive_message(self, data: bytes, binary: bool, now: float) -> Event | None:
        """One Engine.IO message (text as UTF-8 bytes, or an attachment)."""
        if data[:1] == b"2" and not binary and self._pending is None:
            # The hot path, inline: an EVENT for "/" (``2[...]`` or ``2<ack id>[...]``).
            start = data.find(b"[", 1)
            if 1 <= start <= 17:
                head: bytes | None = data[1:start]
                if not head or head.isdigit():
                    try:
                        args = orjson.loads(data[start:])
                    except ValueError as exc:
                        return ProtocolError(str(exc))
                    limit = self._max_depth
                    # as deep as that takes that many brackets (the head has none)
                    if (
                        limit is not None
                        and data.count(b"[") + data.count(b"{") > limit
                        and _too_deep(args, limit)
                    ):
                        return self._too_deep_event(head or None)
                    if type(args) is not list or not args or type(args[0]) is not str:
                        return ProtocolError("event payload is not [name, ...]")
                    if self.state is not _CONNECTED:
                        return None
                    if not head:
                        head = None
                    elif head[:1] == b"0" and len(head) > 1:  # "007" is answered as "7"
                        head = str(int(head)).encode()
                    return EventReceived(args[0], args[1] if len(args) > 1 else None, head)
        try:
            return self._receive(data, binary, now)
        except (_BadPacket, ValueError) as exc:
            return ProtocolError(str(exc))

    def _too_deep_event(self, ack_id: bytes | None) -> EventRefused | ProtocolError:
        reason = f"JSON nested deeper than {self.limits.max_json_depth}"
        if ack_id is None:
            return ProtocolError(reason)
        return EventRefused(str(int(ack_id)).encode(), reason)

    def _loads(self, raw: bytes) -> Any:
        value = orjson.loads(raw)  # ValueError beyond 1024 levels
        limit = self.limits.max_json_depth
        if (
            limit is not None
            and raw.count(b"[") + raw.count(b"{") > limit
            and _too_deep(value, limit)
        ):
            raise _TooDeep(f"JSON nested deeper than {limit}")
        return value

    def _receive(self, data: bytes, binary: bool, now: float) -> Event | None:
        if self.state is _CLOSED:
            return None
        if binary:
            if self._pending is None:
                raise _BadPacket("unexpected binary data")
            self._buffers.append(data)
            if len(self._buffers) == self._need:
                return self._binary_complete()
            return None
        if self._pending is not None:
            raise _BadPacket("text while waiting for attachments")
        match = _HEADER.match(data)
        if match is None:
            raise _BadPacket("bad header")
        kind = data[0] - 0x30
        attachments, nsp_raw, ack_raw = match.group(2, 3, 4)
        nsp = "/" if nsp_raw is None else nsp_raw.split(b"?", 1)[0].decode("utf-8", "replace")
        ack_id = str(int(ack_raw)).encode() if ack_raw else None
        rest = data[match.end() :]
        if kind == EVENT:
            if attachments is not None:
                raise _BadPacket("attachments on a plain event")
            try:
                args = self._loads(rest)
            except _TooDeep:
                return self._too_deep_event(ack_id)
            return self._event(nsp, args, ack_id)
        if kind in (BINARY_EVENT, BINARY_ACK):
            limits = self.limits
            if not limits.binary_events:
                # EasyRTC never sends binary; held attachments would cost memory
                raise _BadPacket("binary events are refused")
            if attachments is None:
                raise _BadPacket("binary packet without attachment count")
            need = int(attachments)
            if need > limits.max_attachments:
                raise _BadPacket("too many attachments")
            value = self._loads(rest)
            if _too_deep(value, min(limits.max_json_depth or BINARY_DEPTH, BINARY_DEPTH)):
                raise _BadPacket("binary packet nested too deep")
            self._pending = (nsp, value)
            self._binary_kind, self._ack_id, self._need = kind, ack_id, need
            self._buffers = []
            return self._binary_complete() if need == 0 else None
        if kind == ACK:
            if attachments is not None:
                raise _BadPacket("attachments on a plain ack")
            self._loads(rest)  # checked; what the client answered is not read
            if ack_id is None or self.state is not _CONNECTED or nsp != "/":
                return None
            return AckReceived(int(ack_id))
        if kind == CONNECT:
            if rest:
                auth = self._loads(rest)
                if self.eio >= 4 and type(auth) is not dict:
                    raise _BadPacket("CONNECT payload is not an object")
            else:
                auth = None
            if nsp != "/":
                return AutoReply(self._connect_error(nsp, "Invalid namespace"))
            if self.state is _IDLE:
                self.state = _CONNECTING
                self._deadline = None
                return ConnectRequest(auth)
            return None
        if kind == DISCONNECT:
            if nsp == "/" and self.state in (_CONNECTING, _CONNECTED):
                self.state = _IDLE
                self._held = []
                self._want_close = False
                self._deadline = now + self.limits.connect_timeout
                return _DISCONNECTED
            return None
        raise _BadPacket("CONNECT_ERROR from a client")

    def _event(self, nsp: str, args: Any, ack_id: bytes | None) -> EventReceived | None:
        if type(args) is not list or not args or type(args[0]) is not str:
            raise _BadPacket("event payload is not [name, ...]")
        if self.state is not _CONNECTED or nsp != "/":
            return None
        return EventReceived(args[0], args[1] if len(args) > 1 else None, ack_id)

    def _binary_complete(self) -> EventReceived | None:
        assert self._pending is not None
        nsp, value = self._pending
        buffers = self._buffers
        self._pending = None
        self._buffers = []
        value = _fill_placeholders(value, buffers)
        if self._binary_kind == BINARY_EVENT:
            return self._event(nsp, value, self._ack_id)
        return None
