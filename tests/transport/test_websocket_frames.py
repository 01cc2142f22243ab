"""The websocket frame reader of the aiohttp driver, sans-I/O: bytes in, messages out."""

from __future__ import annotations

import os

import pytest

from easyrtc_server.transport.websocket_frames import (
    BINARY,
    CLOSE,
    FAILED,
    MESSAGE_TOO_BIG,
    PING,
    PONG,
    PROTOCOL_ERROR,
    TEXT,
    FrameReader,
    close_code,
    close_frame,
    control_frame,
    unmask,
)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked frame, as a browser sends it."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + mask + masked


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 125, 126, 1023, 1024, 1025, 4099, 70_000])
def test_unmask_is_the_xor_with_the_repeated_key(n: int) -> None:
    payload, mask = os.urandom(n), os.urandom(4)
    assert unmask(payload, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_messages_of_every_length_class_come_out_whole_and_in_order() -> None:
    texts = [b"4" + b"x" * n for n in (0, 124, 125, 200, 70_000)]
    stream = b"".join(client_frame(TEXT, t) for t in texts) + client_frame(BINARY, b"\x04bin")
    reader = FrameReader(1_000_000)
    assert reader.feed(stream) == [(TEXT, t) for t in texts] + [(BINARY, b"\x04bin")]


def test_a_stream_fed_byte_by_byte_gives_the_same_messages() -> None:
    stream = client_frame(TEXT, b"42[1]") + client_frame(TEXT, b"y" * 300) + client_frame(PING, b"")
    reader = FrameReader(1_000_000)
    out = []
    for i in range(len(stream)):
        out += reader.feed(stream[i : i + 1])
    assert out == [(TEXT, b"42[1]"), (TEXT, b"y" * 300), (PING, b"")]


def test_unmasked_frames_are_read_as_aiohttp_reads_them() -> None:
    assert FrameReader(100).feed(b"\x81\x02hi") == [(TEXT, b"hi")]


def test_fragments_are_joined_and_control_frames_may_come_between_them() -> None:
    stream = (
        client_frame(TEXT, b"42[", fin=False)
        + client_frame(PING, b"p")
        + client_frame(0, b'"a"', fin=False)
        + client_frame(0, b"]")
    )
    assert FrameReader(100).feed(stream) == [(PING, b"p"), (TEXT, b'42["a"]')]


@pytest.mark.parametrize(
    "stream",
    [
        client_frame(0, b"x"),  # a continuation of nothing
        client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"),  # a new message inside
        client_frame(TEXT, b"a", rsv=0x40),  # no extension was negotiated
        client_frame(0x3, b"a"),  # a reserved opcode
        client_frame(PING, b"p", fin=False),  # a fragmented control frame
        client_frame(PING, b"p" * 126),  # a control frame over 125 bytes
        client_frame(CLOSE, b"\x03"),  # a close frame of one byte
        client_frame(CLOSE, (1005).to_bytes(2, "big")),  # a code no frame may carry
    ],
)
def test_protocol_violations_end_the_stream_after_the_messages_before_them(
    stream: bytes,
) -> None:
    reader = FrameReader(100)
    good = client_frame(TEXT, b"40")
    assert reader.feed(good + stream + good) == [(TEXT, b"40"), failed(PROTOCOL_ERROR)]
    assert reader.feed(good) == []


def failed(code: int) -> tuple[int, bytes]:
    return (FAILED, code.to_bytes(2, "big"))


def test_a_message_too_big_is_refused_from_its_header_before_its_payload_arrives() -> None:
    assert FrameReader(1000).feed(client_frame(TEXT, b"x" * 1000)[:20]) == [failed(MESSAGE_TOO_BIG)]
    # a 2**63-byte claim
    assert FrameReader(1000).feed(b"\x81\xff\x7f" + b"\xff" * 7) == [failed(MESSAGE_TOO_BIG)]
    assert FrameReader(1000).feed(client_frame(TEXT, b"x" * 999)) == [(TEXT, b"x" * 999)]


def test_fragments_count_together_against_the_limit() -> None:
    reader = FrameReader(1000)
    assert reader.feed(client_frame(TEXT, b"x" * 600, fin=False)) == []
    assert reader.feed(client_frame(0, b"x" * 400)) == [failed(MESSAGE_TOO_BIG)]


def test_close_codes_and_server_frames() -> None:
    assert close_code(b"") == 0
    assert close_code((1001).to_bytes(2, "big") + b"bye") == 1001
    assert close_code((4000).to_bytes(2, "big")) == 4000
    assert close_frame(1009) == b"\x88\x02\x03\xf1"
    assert control_frame(PONG, b"hi") == b"\x8a\x02hi"
    reader = FrameReader(100)
    assert reader.feed(client_frame(CLOSE, (1000).to_bytes(2, "big"))) == [(CLOSE, b"\x03\xe8")]
