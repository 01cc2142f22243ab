"""Engine.IO sessions (protocol revisions 4 and 3) without I/O: bytes and a clock in, bytes out.

Split the way ``h11`` and ``websockets`` are: `EngineSession` knows the packets, the payload
encodings, the session state, heartbeats and the send queues, and nothing of sockets, HTTP or
asyncio. A driver (``engineio.py`` for aiohttp) moves the bytes and the time:

- a packet from the client goes to ``receive_packet(data, binary, now)``, a POST body to
  ``receive_payload(body, content_type)``, which decodes it packet by packet as each one is
  taken (and handed to ``receive_packet``); they return the events (`Message`, `Closed`) the
  driver acts on;
- ``send(packet)`` queues one packet; a websocket driver writes ``data_to_send()``, a polling
  driver answers a GET with ``poll_body()`` (``poll_should_wait()`` says whether to hold it);
- ``next_deadline()`` is when ``handle_timeout(now)`` must next be called (heartbeats).

Heartbeats: in revision 4 the server pings every ``ping_interval`` and closes a session that does
not pong within ``ping_timeout``; in revision 3 the client pings and the server closes a session
that sent nothing for ``ping_interval + ping_timeout``.

Send queues are bounded: a websocket's queue is handed to the driver every event-loop pass, a
long-polling session's outbox holds at most ``max_send_buffer`` bytes, counting ``PACKET_OVERHEAD``
bytes per packet (so that a flood of tiny packets is bounded in memory too). Beyond that the
session is closed as a ``"slow consumer"``, in the middle of a POST if its pings overflow it.
A poll takes everything queued, up to
``max_payload`` bytes (at least one packet) and, if set, ``max_poll_packets`` packets.
"""

from __future__ import annotations

import base64
import binascii
import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import orjson

__all__ = [
    "ENGINEIO_DEFAULTS",
    "PACKET_OVERHEAD",
    "READ_TIMEOUT",
    "UPGRADE_TIMEOUT",
    "Closed",
    "EngineSession",
    "Event",
    "Message",
    "SendResult",
    "SessionLimits",
    "SessionState",
    "SplitPacket",
    "TransportKind",
    "decode_binary_payload_v3",
    "decode_payload_v3",
    "decode_payload_v4",
    "encode_payload_v3",
    "iter_binary_payload_v3",
    "iter_payload_v3",
    "iter_payload_v4",
    "ws_frame",
    "ws_header",
]

PACKET_OVERHEAD: Final = 64
"""Bytes a queued packet costs beyond its length (the bytes object and its list slot)."""

RECORD_SEPARATOR: Final = b"\x1e"
WS_CLOSE_NORMAL: Final = b"\x88\x02\x03\xe8"
"""A websocket close frame with code 1000."""
_PROBE: Final = b"2probe"
_PING_FRAME: Final = b"\x81\x012"
"""The ping packet as a websocket text frame."""

_H16 = struct.Struct("!BBH").pack
_H64 = struct.Struct("!BBQ").pack
_SHORT_HEADERS: Final = tuple(bytes((0x81, n)) for n in range(126))


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, final websocket text frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return _SHORT_HEADERS[n] + payload
    if n < 65536:
        return _H16(0x81, 126, n) + payload
    return _H64(0x81, 127, n) + payload


def ws_header(n: int) -> bytes:
    """The header of an unmasked, final websocket text frame of ``n`` payload bytes."""
    if n < 126:
        return _SHORT_HEADERS[n]
    if n < 65536:
        return _H16(0x81, 126, n)
    return _H64(0x81, 127, n)


class SplitPacket:
    """One text packet pushed to many sessions, the same for all but a middle part (a room
    message, whose recipients each get their own easyrtcid): ``head + middle + tail``.

    The shared parts are encoded once, and so is each websocket frame header with the head
    (per payload length, which is the same for middles of one length): a recipient costs one
    concatenation rather than an encoding and a framing. ``packet`` gives the bytes a polling
    outbox or an unframed websocket queues, ``frame`` the websocket frame; both are
    byte-identical to ``head + middle + tail`` sent, or framed, on its own.
    """

    __slots__ = ("_framed_heads", "head", "tail")

    def __init__(self, head: bytes, tail: bytes) -> None:
        self.head = head
        self.tail = tail
        self._framed_heads: dict[int, bytes] = {}

    def packet(self, middle: bytes) -> bytes:
        return b"".join((self.head, middle, self.tail))

    def frame(self, middle: bytes) -> bytes:
        size = len(middle)
        framed_head = self._framed_heads.get(size)  # by the middle's length: one len() less
        if framed_head is None:
            header = ws_header(len(self.head) + size + len(self.tail))
            framed_head = self._framed_heads[size] = header + self.head
        return b"".join((framed_head, middle, self.tail))


class SessionState(enum.Enum):
    """Where a session is."""

    OPEN = "open"
    UPGRADING = "upgrading"
    """Polling, and a websocket probe answered: polls are answered at once, with a noop."""
    CLOSED = "closed"
    """Over; a polling session may still hand out its last packets and the close packet."""


class TransportKind(enum.Enum):
    POLLING = "polling"
    WEBSOCKET = "websocket"


@dataclass(frozen=True, slots=True)
class Message:
    """A message packet's data (text as UTF-8 bytes, or binary)."""

    data: bytes
    binary: bool


@dataclass(frozen=True, slots=True)
class Closed:
    """The session ended on the protocol's decision (client close, timeout, bad packet, ...)."""

    reason: str


Event = Message | Closed


class SendResult(enum.IntEnum):
    """What the driver must do after `EngineSession.send`."""

    NOTHING = 0
    WAKE = 1
    """Data is waiting: flush the websocket, or answer a held poll."""
    OVERFLOW = 2
    """The queue overflowed and the session closed itself as a slow consumer."""


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Timers (seconds) and sizes (bytes) of every session of one server."""

    ping_interval: float = 5.0
    ping_timeout: float = 10.0
    max_payload: int = 1_000_000
    """Largest message or POST body accepted; also the most a poll response carries."""
    max_send_buffer: int = 4 * 1024 * 1024
    """Most a polling outbox holds (with `PACKET_OVERHEAD` per packet)."""
    max_poll_packets: int = 0
    """Most packets in one poll response; 0 for no cap (python-engineio's client takes 16)."""


ENGINEIO_DEFAULTS: Final = SessionLimits()
"""The Engine.IO defaults, written once: the drivers' and the server options' defaults."""
UPGRADE_TIMEOUT: Final = 3.0
"""Default seconds a websocket upgrade probe may take."""
READ_TIMEOUT: Final = 10.0
"""Default seconds a long-polling POST body may take to arrive."""


# Module constants for the hot paths: in Python 3.11 an enum member looked up on its class
# costs some 70 ns, and a relayed message went through a dozen such lookups.
_OPEN: Final = SessionState.OPEN
_UPGRADING: Final = SessionState.UPGRADING
_CLOSED: Final = SessionState.CLOSED
_NOTHING: Final = SendResult.NOTHING
_WAKE: Final = SendResult.WAKE
_OVERFLOW: Final = SendResult.OVERFLOW
_POLLING: Final = TransportKind.POLLING
_WEBSOCKET: Final = TransportKind.WEBSOCKET


class EngineSession:
    """The state of one Engine.IO session; see the module documentation for the driver's part."""

    __slots__ = (
        "_check_at",
        "_close_queued",
        "_frames",
        "_outbox",
        "_outbox_cost",
        "_ping_due",
        "_pong_deadline",
        "close_reason",
        "eio",
        "finished",
        "framed",
        "last_seen",
        "limits",
        "sid",
        "state",
        "transport",
    )

    def __init__(
        self,
        sid: str,
        eio: int,
        transport: TransportKind,
        limits: SessionLimits,
        now: float,
        *,
        framed: bool = True,
    ) -> None:
        self.sid = sid
        self.framed = framed
        """Websocket output as raw frames (`data_to_send`); else as packets (`packets_to_send`),
        for drivers whose server frames messages itself (ASGI), queued like a polling outbox."""
        self.eio = eio
        self.transport = transport
        self.limits = limits
        self.state = _OPEN
        self.close_reason = ""
        self.finished = False
        """Polling: the close packet was handed out; nothing more will come of this session."""
        self.last_seen = now
        """When the client last sent a packet (revision 3 heartbeats; set by the driver)."""
        self._frames: list[bytes] = []
        self._outbox: list[bytes] = []
        self._outbox_cost = 0
        self._close_queued = False
        self._ping_due: float | None = None
        self._pong_deadline: float | None = None
        self._check_at: float | None = None
        if eio >= 4:
            self._ping_due = now + limits.ping_interval
        else:
            self._check_at = now + limits.ping_interval + limits.ping_timeout
        self.send(self._open_packet())

    def __repr__(self) -> str:
        return f"<EngineSession {self.sid} EIO{self.eio} {self.transport.value} {self.state.value}>"

    def _open_packet(self) -> bytes:
        limits = self.limits
        info: dict[str, object] = {
            "sid": self.sid,
            "upgrades": ["websocket"] if self.transport is _POLLING else [],
            "pingInterval": round(limits.ping_interval * 1000),
            "pingTimeout": round(limits.ping_timeout * 1000),
        }
        if self.eio >= 4:
            info["maxPayload"] = limits.max_payload
        return b"0" + orjson.dumps(info)

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED

    # -- sending -------------------------------------------------------------------------------

    def send(self, packet: bytes) -> SendResult:
        """Queue one text packet (type digit first); dropped once the session is closed."""
        if self.state is _CLOSED:
            return _NOTHING
        if self.transport is _WEBSOCKET and self.framed:
            frames = self._frames
            frames.append(ws_frame(packet))
            return _WAKE if len(frames) == 1 else _NOTHING
        self._outbox.append(packet)
        self._outbox_cost += len(packet) + PACKET_OVERHEAD
        if self._outbox_cost > self.limits.max_send_buffer:
            self.close("slow consumer", graceful=False)
            return _OVERFLOW
        return _WAKE

    def send_frame(self, frame: bytes) -> SendResult:
        """Queue a websocket frame built once for many sessions (websocket only)."""
        if self.state is _CLOSED:
            return _NOTHING
        frames = self._frames
        frames.append(frame)
        return _WAKE if len(frames) == 1 else _NOTHING

    def data_to_send(self) -> bytes:
        """The websocket frames queued since the last call (empty once closed without grace)."""
        frames = self._frames
        if not frames:
            return b""
        self._frames = []
        if self.state is _CLOSED and not self._close_queued:
            return b""
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def packets_to_send(self) -> list[bytes]:
        """Unframed websocket: the packets queued since the last call (see ``framed``)."""
        packets = self._outbox
        if packets:
            self._outbox = []
            self._outbox_cost = 0
        return packets

    @property
    def close_pending(self) -> bool:
        """Closed gracefully: the driver closes the connection once the queue is sent."""
        return self._close_queued

    @property
    def queued_bytes(self) -> int:
        """What waits in this session's queue, with per-packet overhead for polling."""
        if self.transport is _WEBSOCKET and self.framed:
            return sum(map(len, self._frames))
        return self._outbox_cost

    def poll_should_wait(self) -> bool:
        """A GET now would be held until something is queued."""
        return not self._outbox and self.state is _OPEN

    def poll_body(self) -> bytes:
        """The response to a GET: everything queued up to ``max_payload`` bytes, the close
        packet once closed, or a noop (a poll released for an upgrade)."""
        outbox = self._outbox
        if outbox:
            limit = self.limits.max_payload
            most = self.limits.max_poll_packets or len(outbox)
            size = 0
            count = 0
            for packet in outbox:
                size += len(packet) + 1
                if (size > limit or count == most) and count:
                    break
                count += 1
            if count == len(outbox):
                packets = outbox
                self._outbox = []
                self._outbox_cost = 0
                if self._close_queued:
                    self.finished = True
            else:
                packets = outbox[:count]
                self._outbox = outbox[count:]
                self._outbox_cost -= sum(map(len, packets)) + PACKET_OVERHEAD * count
        elif self.state is _CLOSED:
            packets = [b"1"]
            self._close_queued = True
            self.finished = True
        else:
            packets = [b"6"]
        if self.eio >= 4:
            return RECORD_SEPARATOR.join(packets)
        return encode_payload_v3(packets)

    # -- closing -------------------------------------------------------------------------------

    def close(self, reason: str, *, graceful: bool = True) -> None:
        """End the session. ``graceful`` lets queued data, then a close frame/packet, go out."""
        if self.state is _CLOSED:
            return
        self.state = _CLOSED
        self.close_reason = reason
        self._ping_due = self._pong_deadline = self._check_at = None
        if self.transport is _WEBSOCKET:
            if graceful:
                self._close_queued = True
                if self.framed:
                    self._frames.append(WS_CLOSE_NORMAL)
            else:
                self._frames = []
                self._outbox = []
                self._outbox_cost = 0
        elif not graceful or not self._outbox:
            # polling: queued packets first, then (in a later response, so that the client
            # handles them before it sees the close) the close packet
            self._outbox.append(b"1")
            self._close_queued = True

    # -- heartbeats ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `handle_timeout` must next be called (None: never, the session is over)."""
        if self.eio >= 4:
            return self._pong_deadline if self._pong_deadline is not None else self._ping_due
        return self._check_at

    def handle_timeout(self, now: float) -> list[Event]:
        """Run the heartbeat due at ``now``: send a ping, or close a silent session."""
        if self.state is _CLOSED:
            return []
        limits = self.limits
        if self.eio >= 4:
            if self._pong_deadline is not None:
                if now >= self._pong_deadline:
                    return self._closed("ping timeout")
            elif self._ping_due is not None and now >= self._ping_due:
                self._ping_due = None
                self._pong_deadline = now + limits.ping_timeout
                if self.transport is _WEBSOCKET and self.framed:
                    self._frames.append(_PING_FRAME)  # framed once for every session
                elif self.send(b"2") is _OVERFLOW:
                    return [Closed(self.close_reason)]
            return []
        deadline = self.last_seen + limits.ping_interval + limits.ping_timeout
        if now >= deadline:
            return self._closed("ping timeout")
        self._check_at = deadline
        return []

    def _closed(self, reason: str) -> list[Event]:
        self.close(reason, graceful=False)
        return [Closed(reason)]

    # -- receiving -----------------------------------------------------------------------------

    def receive_packet(self, data: bytes, binary: bool, now: float) -> list[Event]:
        """One packet from the client (a websocket message, or one packet of a POST)."""
        if self.state is _CLOSED:
            return []
        if self.eio < 4:
            self.last_seen = now
        if binary:
            return [Message(data, True)]
        kind = data[:1]
        if kind == b"4":
            return [Message(data[1:], False)]
        if kind == b"3":
            if self.eio >= 4 and self._pong_deadline is not None:
                self._pong_deadline = None
                self._ping_due = now + self.limits.ping_interval
            return []
        if kind == b"2":
            if self.eio < 4 and self.send(b"3" + data[1:]) is _OVERFLOW:
                return [Closed(self.close_reason)]
            return []
        if kind == b"1":
            return self._closed("transport close")
        if kind in (b"6", b"5", b"0"):
            return []  # noop; stray upgrade or open packets are ignored, as the reference does
        if kind == b"b":
            # binary sent as base64 text by clients told to (forceBase64 / b64=1)
            try:
                if self.eio < 4 and data[1:2] != b"4":
                    raise ValueError("not a message")
                decoded = _b64(data[1:] if self.eio >= 4 else data[2:])
            except ValueError:
                return self._closed("parse error")
            return [Message(decoded, True)]
        return self._closed("parse error")

    def receive_binary_frame(self, data: bytes, now: float) -> list[Event]:
        """A binary websocket message (revision 3 prefixes the packet type byte)."""
        if self.eio < 4:
            if data[:1] != b"\x04":
                return self._closed("parse error")
            data = data[1:]
        return self.receive_packet(data, True, now)

    def receive_payload(self, body: bytes, content_type: str) -> Iterator[tuple[bytes, bool]]:
        """The packets of a POST body, decoded one at a time as the driver takes them.

        Lazy, so that a POST costs memory for what it queues, not for what it carries: the
        packets end as soon as the session closes (its outbox overflowing with the pongs of a
        flood of revision 3 pings, a close packet). A malformed packet closes the session
        (``"parse error"``) and raises ValueError; the packets before it were handled, as the
        reference does.
        """
        if self.eio >= 4:
            packets = iter_payload_v4(body)
        elif content_type == "application/octet-stream":
            packets = iter_binary_payload_v3(body)
        else:
            packets = iter_payload_v3(body)
        while self.state is not _CLOSED:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except ValueError:
                self.close("parse error", graceful=False)
                raise
            yield packet

    # -- upgrading to websocket ----------------------------------------------------------------

    def receive_probe(self, data: bytes) -> bytes | None:
        """A packet on the probing websocket of an upgrade.

        Returns the frame (unframed: the packet) to answer a ``2probe`` with; None when the
        packet completes the upgrade (``5``: the session is now on websocket; its outbox became
        frames) or refuses it (``transport`` still polling, ``state`` OPEN).
        """
        if self.state is _CLOSED:
            return None
        if data == _PROBE and self.transport is _POLLING:
            self.state = _UPGRADING
            return ws_frame(b"3probe") if self.framed else b"3probe"
        if data == b"5" and self.state is _UPGRADING:
            self.state = _OPEN
            self.transport = _WEBSOCKET
            if self.framed:
                self._frames = [ws_frame(packet) for packet in self._outbox]
                self._outbox = []
                self._outbox_cost = 0
            return None
        self.abort_upgrade()
        return None

    def abort_upgrade(self) -> None:
        if self.state is _UPGRADING:
            self.state = _OPEN


# -- payload codecs -------------------------------------------------------------------------------


def decode_payload_v4(body: bytes) -> list[tuple[bytes, bool]]:
    """Revision 4 long-polling body: packets separated by ``\\x1e``, ``b`` = base64 binary."""
    return list(iter_payload_v4(body))


def iter_payload_v4(body: bytes) -> Iterator[tuple[bytes, bool]]:
    """`decode_payload_v4` one packet at a time (ValueError when the next one is malformed)."""
    find = body.find
    i, n = 0, len(body)
    while True:
        j = find(RECORD_SEPARATOR, i)
        if j < 0:
            j = n
        if j == i:
            raise ValueError("empty packet")
        part = body[i:j]
        if part[:1] == b"b":
            yield _b64(part[1:]), True
        else:
            yield part, False
        if j == n:
            return
        i = j + 1


def _b64(data: bytes | str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64") from exc


def _utf16_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def encode_payload_v3(packets: list[bytes]) -> bytes:
    """Revision 3 long-polling body for text packets: ``<length>:<packet>`` repeated."""
    parts: list[str] = []
    for packet in packets:
        text = packet.decode("utf-8", "surrogatepass")
        parts.append(f"{_utf16_len(text)}:{text}")
    return "".join(parts).encode("utf-8", "surrogatepass")


def decode_payload_v3(body: bytes) -> list[tuple[bytes, bool]]:
    """Revision 3 text payload; lengths count UTF-16 code units, as JavaScript does."""
    return list(iter_payload_v3(body))


def iter_payload_v3(body: bytes) -> Iterator[tuple[bytes, bool]]:
    """`decode_payload_v3` one packet at a time (ValueError when the next one is malformed).

    An ASCII body is read in place (no decoded copy); others through their UTF-16 form.
    """
    if body.isascii():
        data, width = body, 1
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("payload is not UTF-8") from exc
        data, width = text.encode("utf-16-le", "surrogatepass"), 2
        del text

    def unit(j: int) -> int:
        return data[j] if width == 1 else data[2 * j] | data[2 * j + 1] << 8

    def chunk(a: int, b: int) -> bytes:
        if width == 1:
            return data[a:b]
        return (
            data[2 * a : 2 * b]
            .decode("utf-16-le", "surrogatepass")
            .encode("utf-8", "surrogatepass")
        )

    found = False
    size = len(data) // width
    i = 0
    while i < size:
        j, length = i, 0
        while True:
            if j >= size or j - i > 10:
                raise ValueError("bad length")
            code = unit(j)
            if code == 0x3A:  # ':'
                break
            if not 0x30 <= code <= 0x39:
                raise ValueError("bad length")
            length = length * 10 + code - 0x30
            j += 1
        start = j + 1
        if j == i or start + length > size:
            raise ValueError("bad length")
        packet = chunk(start, start + length)
        i = start + length
        if not packet:
            continue
        found = True
        if packet[:1] == b"b":
            if packet[1:2] != b"4":
                raise ValueError("bad binary packet")
            yield _b64(packet[2:]), True
        else:
            yield packet, False
    if not found:
        raise ValueError("empty payload")


def decode_binary_payload_v3(body: bytes) -> list[tuple[bytes, bool]]:
    """Revision 3 ``application/octet-stream`` payload (see `iter_binary_payload_v3`)."""
    return list(iter_binary_payload_v3(body))


def iter_binary_payload_v3(body: bytes) -> Iterator[tuple[bytes, bool]]:
    """Revision 3 ``application/octet-stream`` payload, one packet at a time.

    Each packet: ``0`` (string) or ``1`` (binary), its length as one byte per decimal digit, 255,
    then the packet (a string packet's UTF-8 bytes; a binary packet's type byte and data).
    """
    found = False
    i, n = 0, len(body)
    while i < n:
        kind = body[i]
        if kind not in (0, 1):
            raise ValueError("bad binary payload")
        i += 1
        length = 0
        digits = 0
        while True:
            if i >= n or digits > 10:
                raise ValueError("bad binary payload")
            d = body[i]
            i += 1
            if d == 255:
                break
            if d > 9:
                raise ValueError("bad binary payload")
            length = length * 10 + d
            digits += 1
        if digits == 0 or i + length > n or length == 0:
            raise ValueError("bad binary payload")
        packet = body[i : i + length]
        i += length
        found = True
        if kind == 0:
            yield packet, False
        else:
            if packet[0] != 4:
                raise ValueError("binary packet is not a message")
            yield packet[1:], True
    if not found:
        raise ValueError("empty payload")
