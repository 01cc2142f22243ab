"""Reading a client's websocket frames (RFC 6455), sans-I/O: bytes in, messages out.

The aiohttp driver reads its websockets' bytes straight from the asyncio transport and hands
them here, rather than through aiohttp's reader, its message queue and a task wake-up per read:
that path cost about a third of the server's CPU per relayed message. What it accepts and
refuses is aiohttp's (no extensions are negotiated): fragments are joined, a message of
``max_size`` bytes or more is refused from its header (before its payload is buffered),
control frames are at most 125 bytes and never fragmented, reserved bits and unknown opcodes
are protocol errors, and a close frame's code must be a valid one.
"""

from __future__ import annotations

from typing import Final

TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
FAILED: Final = -1
"""Not an opcode: the stream broke the protocol; the payload is the close code, 2 bytes."""
_CONTINUATION: Final = 0x0

PROTOCOL_ERROR: Final = 1002
INVALID_TEXT: Final = 1007
MESSAGE_TOO_BIG: Final = 1009

_CLOSE_CODES: Final = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)
"""Codes below 3000 a close frame may carry (the registered ones aiohttp accepts)."""
_OPCODES: Final = frozenset((_CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))


class FrameError(Exception):
    """The peer broke the protocol: close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask``, as big integers (linear, in C): the key is
    the mask times a "repunit" of 32-bit words (1 + 2**32 + 2**64 + ...), no repeated bytes."""
    n = len(payload)
    if not n:
        return payload
    words = (n + 3) >> 2
    key = int.from_bytes(mask, "little") * (
        _REPUNITS[words] if words < _CACHED_REPUNITS else _repunit(words)
    )
    return (int.from_bytes(payload, "little") ^ key).to_bytes(words << 2, "little")[:n]


def _repunit(words: int) -> int:
    return int.from_bytes(b"\x01\x00\x00\x00" * words, "little")


_CACHED_REPUNITS: Final = 256
_REPUNITS: Final = [_repunit(words) for words in range(_CACHED_REPUNITS)]
"""The repunits of payloads up to 1 KiB (130 KB of cache)."""


def control_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (a server's): for pongs and close frames."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def close_frame(code: int) -> bytes:
    """A close frame with ``code``."""
    return control_frame(CLOSE, code.to_bytes(2, "big"))


class FrameReader:
    """Splits a byte stream into whole messages: ``(opcode, payload)``, data messages (TEXT
    or BINARY, fragments joined) and control frames (CLOSE's payload as sent, see
    `close_code`). At the first violation of the protocol the messages before it come out, then
    ``(FAILED, code)``, the close code to answer with; the reader then reads nothing more."""

    __slots__ = ("_buf", "_need", "_opcode", "_partial", "failed", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        """A data message of this many bytes or more is refused (0: no limit)."""
        self._buf = bytearray()
        self._need = 0
        """Bytes ``_buf`` must hold before a frame can be read from it."""
        self._opcode = _CONTINUATION
        """The opcode of a fragmented message under way (0: none)."""
        self._partial = bytearray()
        self.failed = False

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The messages completed by ``data``, in order."""
        out: list[tuple[int, bytes]] = []
        if self.failed:
            return out
        try:
            self._read(data, out)
        except FrameError as exc:
            self.failed = True
            self._buf.clear()
            self._partial.clear()
            out.append((FAILED, exc.code.to_bytes(2, "big")))
        return out

    def _read(self, data: bytes, out: list[tuple[int, bytes]]) -> None:
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return
            data = bytes(buf)
            buf.clear()
        pos = 0
        end = len(data)
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            n = b1 & 0x7F
            head = pos + 2
            if n >= 126:
                if n == 126:
                    if end - head < 2:
                        self._keep(data, pos, 4)
                        return
                    n = (data[head] << 8) | data[head + 1]
                    head += 2
                else:
                    if end - head < 8:
                        self._keep(data, pos, 10)
                        return
                    n = int.from_bytes(data[head : head + 8], "big")
                    head += 8
            opcode = b0 & 0x0F
            if b0 & 0x70 or opcode not in _OPCODES:
                raise FrameError(PROTOCOL_ERROR, f"bad frame header {b0:#04x}")
            if opcode >= CLOSE:
                if not b0 & 0x80:
                    raise FrameError(PROTOCOL_ERROR, "fragmented control frame")
                if n > 125:
                    raise FrameError(PROTOCOL_ERROR, "control frame longer than 125 bytes")
            elif self.max_size and n >= self.max_size - len(self._partial):
                raise FrameError(
                    MESSAGE_TOO_BIG, f"message of {n + len(self._partial)} bytes or more"
                )
            masked = b1 & 0x80
            start = head + 4 if masked else head
            stop = start + n
            if stop > end:
                self._keep(data, pos, stop - pos)
                return
            payload = data[start:stop]
            if masked:
                payload = unmask(payload, data[head:start])
            pos = stop
            if opcode == _CONTINUATION:
                if not self._opcode:
                    raise FrameError(PROTOCOL_ERROR, "continuation of no message")
                self._partial += payload
                if b0 & 0x80:
                    out.append((self._opcode, bytes(self._partial)))
                    self._opcode = _CONTINUATION
                    self._partial.clear()
            elif opcode < CLOSE:  # TEXT or BINARY
                if self._opcode:
                    raise FrameError(PROTOCOL_ERROR, "a new message inside a fragmented one")
                if b0 & 0x80:
                    out.append((opcode, payload))
                else:
                    self._opcode = opcode
                    self._partial += payload
            else:
                if opcode == CLOSE:
                    close_code(payload)  # validated here
                out.append((opcode, payload))
        if pos < end:
            self._keep(data, pos, 2)

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        """Keep ``data[pos:]``, an incomplete frame that needs ``need`` bytes."""
        self._buf += memoryview(data)[pos:]
        self._need = need


def close_code(payload: bytes) -> int:
    """A close frame's code (0: none given); `FrameError` for a malformed one."""
    if not payload:
        return 0
    if len(payload) < 2:
        raise FrameError(PROTOCOL_ERROR, "close frame of one byte")
    code = (payload[0] << 8) | payload[1]
    if code < 3000 and code not in _CLOSE_CODES:
        raise FrameError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_TEXT, "close reason is not UTF-8") from None
    return code
