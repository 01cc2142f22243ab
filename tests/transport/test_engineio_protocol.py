"""The sans-I/O Engine.IO session: bytes and an injected clock in, events and bytes out."""

from __future__ import annotations

import json

import pytest

from easyrtc_server.transport.engineio_protocol import (
    PACKET_OVERHEAD,
    WS_CLOSE_NORMAL,
    Closed,
    EngineSession,
    Message,
    SendResult,
    SessionLimits,
    SessionState,
    TransportKind,
    decode_payload_v3,
    encode_payload_v3,
    ws_frame,
)

LIMITS = SessionLimits(ping_interval=5.0, ping_timeout=10.0, max_payload=1000)
POLLING = TransportKind.POLLING
WEBSOCKET = TransportKind.WEBSOCKET


def session(eio: int = 4, kind: TransportKind = POLLING, **limits: float) -> EngineSession:
    fields = {
        "ping_interval": LIMITS.ping_interval,
        "ping_timeout": LIMITS.ping_timeout,
        "max_payload": LIMITS.max_payload,
        **limits,
    }
    return EngineSession("sid1", eio, kind, SessionLimits(**fields), now=100.0)  # type: ignore[arg-type]


def polled(s: EngineSession) -> list[bytes]:
    body = s.poll_body()
    if s.eio >= 4:
        return body.split(b"\x1e")
    return [p.encode() for p in _v3(body.decode())]


def _v3(body: str) -> list[str]:
    out, i = [], 0
    while i < len(body):
        colon = body.index(":", i)
        n = int(body[i:colon])
        out.append(body[colon + 1 : colon + 1 + n])
        i = colon + 1 + n
    return out


# -- opening --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eio", "kind"), [(4, POLLING), (3, POLLING), (4, WEBSOCKET)])
def test_open_packet_comes_first(eio: int, kind: TransportKind) -> None:
    s = session(eio, kind)
    first = polled(s)[0] if kind is POLLING else s.data_to_send()[2:]
    assert first[:1] == b"0"
    info = json.loads(first[1:])
    assert info["sid"] == "sid1"
    assert info["upgrades"] == (["websocket"] if kind is POLLING else [])
    assert (info["pingInterval"], info["pingTimeout"]) == (5000, 10000)
    assert ("maxPayload" in info) == (eio == 4)
    assert s.state is SessionState.OPEN


# -- heartbeats, on the injected clock ------------------------------------------------------------


def test_v4_pings_every_interval_and_closes_without_pong() -> None:
    s = session(4)
    polled(s)
    assert s.next_deadline() == 105.0
    assert s.handle_timeout(104.9) == []
    assert s.poll_should_wait()
    assert s.handle_timeout(105.0) == []
    assert polled(s) == [b"2"]
    assert s.next_deadline() == 115.0
    # the pong moves the next ping to pong time + interval
    assert s.receive_packet(b"3", False, 107.0) == []
    assert s.next_deadline() == 112.0
    s.handle_timeout(112.0)
    assert polled(s) == [b"2"]
    assert s.handle_timeout(121.9) == []
    assert s.handle_timeout(122.0) == [Closed("ping timeout")]
    assert s.state is SessionState.CLOSED
    assert s.next_deadline() is None


def test_v3_client_pings_get_pongs_and_silence_closes() -> None:
    s = session(3)
    polled(s)
    assert s.next_deadline() == 115.0
    s.receive_packet(b"2probe-ish", False, 110.0)
    assert polled(s) == [b"3probe-ish"]
    # the deadline is checked lazily: nothing due yet, it moves to last packet + 15 s
    assert s.handle_timeout(115.0) == []
    assert s.next_deadline() == 125.0
    assert s.handle_timeout(125.0) == [Closed("ping timeout")]


def test_pausing_client_is_dropped_only_at_the_heartbeat_timeout() -> None:
    s = session(4)
    polled(s)  # answered; the client does not come back for a while
    s.handle_timeout(105.0)  # ping queued, nobody polls
    assert s.handle_timeout(114.99) == []
    assert s.state is SessionState.OPEN
    assert s.handle_timeout(115.0) == [Closed("ping timeout")]


# -- messages -------------------------------------------------------------------------------------


def test_messages_and_control_packets() -> None:
    s = session(4)
    assert s.receive_packet(b"4hello", False, 101.0) == [Message(b"hello", False)]
    assert s.receive_packet(b"\x00\x01", True, 101.0) == [Message(b"\x00\x01", True)]
    assert s.receive_packet(b"bAAE=", False, 101.0) == [Message(b"\x00\x01", True)]
    assert s.receive_packet(b"6", False, 101.0) == []
    assert s.receive_packet(b"x", False, 101.0) == [Closed("parse error")]
    assert s.receive_packet(b"4late", False, 101.0) == []


def test_client_close_packet() -> None:
    s = session(4, WEBSOCKET)
    s.data_to_send()
    assert s.receive_packet(b"1", False, 101.0) == [Closed("transport close")]
    assert s.data_to_send() == b""


def test_v3_binary_frame_needs_message_type() -> None:
    s = session(3, WEBSOCKET)
    assert s.receive_binary_frame(b"\x04ab", 101.0) == [Message(b"ab", True)]
    assert s.receive_binary_frame(b"\x02ab", 101.0) == [Closed("parse error")]


def test_bad_payload_closes() -> None:
    s = session(3)
    with pytest.raises(ValueError):
        list(s.receive_payload(b"9:hello", "text/plain"))
    assert s.state is SessionState.CLOSED
    assert s.close_reason == "parse error"


@pytest.mark.parametrize(
    ("eio", "body", "content_type"),
    [
        (4, b"4a\x1e4b\x1e\x1e4c", "text/plain"),
        (3, b"2:4a2:4b9:4c", "text/plain"),
        (3, b"\x00\x02\xff4a\x00\x02\xff4b\x07", "application/octet-stream"),
    ],
)
def test_packets_before_a_malformed_one_are_handled(
    eio: int, body: bytes, content_type: str
) -> None:
    """As the reference: the payload is read packet by packet, and the bad one closes."""
    s = session(eio)
    packets = s.receive_payload(body, content_type)
    assert next(packets) == (b"4a", False)
    assert next(packets) == (b"4b", False)
    assert s.state is SessionState.OPEN
    with pytest.raises(ValueError):
        next(packets)
    assert (s.state, s.close_reason) == (SessionState.CLOSED, "parse error")


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream"])
def test_a_post_of_pings_stops_at_the_outbox_bound(content_type: str) -> None:
    """A 1 MB POST of revision 3 pings: each pong is counted as it is queued, and the packets
    end at the pong that overflows the outbox, not after decoding the whole body."""
    bound = 10 * (1 + PACKET_OVERHEAD)
    s = session(3, max_send_buffer=bound, max_payload=1_000_000)
    polled(s)  # the open packet
    ping = b"1:2" if content_type == "text/plain" else b"\x00\x01\xff2"
    body = ping * (1_000_000 // len(ping))
    taken = 0
    for data, binary in s.receive_payload(body, content_type):
        taken += 1
        events = s.receive_packet(data, binary, 101.0)
        if taken <= 10:
            assert events == []
            assert s.queued_bytes == taken * (1 + PACKET_OVERHEAD)  # the bound holds at each
        else:
            assert events == [Closed("slow consumer")]
    assert taken == 11  # the overflowing pong closed the session; nothing more was decoded
    assert s.state is SessionState.CLOSED


def test_payload_decoding_is_lazy() -> None:
    """Packets are decoded as they are taken: a malformed tail is not seen before then."""
    s = session(4)
    packets = s.receive_payload(b"4a\x1e" + b"bnot base64!" * 1000, "text/plain")
    assert next(packets) == (b"4a", False)
    assert s.state is SessionState.OPEN


# -- sending --------------------------------------------------------------------------------------


def test_websocket_frames_are_batched_until_taken() -> None:
    s = session(4, WEBSOCKET)
    s.data_to_send()
    assert s.send(b"4a") is SendResult.WAKE
    assert s.send(b"4b") is SendResult.NOTHING
    assert s.data_to_send() == ws_frame(b"4a") + ws_frame(b"4b")
    assert s.data_to_send() == b""


def test_graceful_websocket_close_flushes_then_close_frame() -> None:
    s = session(4, WEBSOCKET)
    s.data_to_send()
    s.send(b"4bye")
    s.close("server close")
    assert s.data_to_send() == ws_frame(b"4bye") + WS_CLOSE_NORMAL
    assert s.send(b"4more") is SendResult.NOTHING


def test_abrupt_websocket_close_drops_queued_frames() -> None:
    s = session(4, WEBSOCKET)
    s.send(b"4x")
    s.close("slow consumer", graceful=False)
    assert s.data_to_send() == b""


def test_poll_drains_everything_up_to_max_payload() -> None:
    s = session(4, max_payload=1000)
    polled(s)
    for _ in range(30):
        s.send(b"4" + b"x" * 99)  # 100 bytes + separator each
    first = polled(s)
    assert len(first) == 9
    assert len(polled(s)) == 9
    assert len(polled(s)) == 9
    assert len(polled(s)) == 3
    assert s.poll_should_wait()
    s.send(b"4" + b"y" * 5000)  # bigger than the limit: still goes, alone
    assert polled(s) == [b"4" + b"y" * 5000]


def test_poll_packet_cap() -> None:
    s = session(3, max_poll_packets=16)
    polled(s)
    for i in range(40):
        s.send(b"4%d" % i)
    assert [len(polled(s)) for _ in range(3)] == [16, 16, 8]


def test_polling_outbox_counts_packet_overhead() -> None:
    # a client that never polls and floods pings: its tiny pongs are bounded by count too
    s = session(3, max_send_buffer=100 * (1 + PACKET_OVERHEAD))
    polled(s)
    for _ in range(100):
        assert s.receive_packet(b"2", False, 101.0) == []
    assert s.receive_packet(b"2", False, 101.0) == [Closed("slow consumer")]
    assert s.state is SessionState.CLOSED


def test_graceful_polling_close_sends_queued_then_close_packet() -> None:
    s = session(4)
    polled(s)
    s.send(b"4last")
    s.close("server close")
    assert not s.poll_should_wait()
    assert polled(s) == [b"4last"]
    assert not s.finished
    assert polled(s) == [b"1"]
    assert s.finished


def test_abrupt_polling_close_sends_close_packet_at_once() -> None:
    s = session(4)
    polled(s)
    s.send(b"4last")
    s.close("ping timeout", graceful=False)
    assert polled(s) == [b"4last", b"1"]
    assert s.finished


# -- upgrade --------------------------------------------------------------------------------------


def test_upgrade_moves_the_outbox_to_frames() -> None:
    s = session(4)
    polled(s)
    assert s.receive_probe(b"2probe") == ws_frame(b"3probe")
    assert s.state is SessionState.UPGRADING
    assert not s.poll_should_wait()
    assert polled(s) == [b"6"]  # a held GET is released with a noop
    s.send(b"4queued")
    assert s.receive_probe(b"5") is None
    assert (s.state, s.transport) == (SessionState.OPEN, WEBSOCKET)
    assert s.data_to_send() == ws_frame(b"4queued")


def test_failed_upgrade_returns_to_polling() -> None:
    s = session(4)
    s.receive_probe(b"2probe")
    assert s.receive_probe(b"4nonsense") is None
    assert (s.state, s.transport) == (SessionState.OPEN, POLLING)


# -- codecs ---------------------------------------------------------------------------------------


def test_v3_payload_roundtrip_counts_utf16() -> None:
    packets = [b"4\xf0\x9f\x98\x80", b"4abc"]
    body = encode_payload_v3(packets)
    assert body.startswith(b"3:")
    assert decode_payload_v3(body) == [(p, False) for p in packets]


@pytest.mark.parametrize(
    ("body", "packets"),
    [
        (b"3:4\xc3\xa9b6:b4AAE=", [(b"4\xc3\xa9b", False), (b"\x00\x01", True)]),
        (b"2:4a0:2:4b", [(b"4a", False), (b"4b", False)]),
        (b"4:4\xf0\x9f\x98\x80x", [(b"4\xf0\x9f\x98\x80x", False)]),
    ],
)
def test_v3_payload_decoding(body: bytes, packets: list[tuple[bytes, bool]]) -> None:
    assert decode_payload_v3(body) == packets
