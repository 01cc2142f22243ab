"""The sans-I/O Socket.IO session: Engine.IO messages and an injected clock in, events out."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from easyrtc_server.transport.socketio_protocol import (
    AckReceived,
    AutoReply,
    ConnectRequest,
    ConnectTimedOut,
    Disconnected,
    EventReceived,
    EventRefused,
    NamespaceState,
    ProtocolError,
    SocketIOLimits,
    SocketSession,
    encode_ack,
    encode_event,
    encode_event_asking,
)

NOW = 100.0


def session(eio: int = 4, **limits: object) -> SocketSession:
    s = SocketSession(eio, SocketIOLimits(**limits))  # type: ignore[arg-type]
    s.open(NOW)
    return s


def connected(eio: int = 4, **limits: object) -> SocketSession:
    s = session(eio, **limits)
    if eio >= 4:
        assert s.receive_message(b"0", False, NOW) == ConnectRequest(None)
    s.accept("sid1")
    assert s.state is NamespaceState.CONNECTED
    return s


# -- connecting -----------------------------------------------------------------------------------


def test_protocol_5_waits_for_connect_and_answers_with_the_sid() -> None:
    s = SocketSession(4, SocketIOLimits(connect_timeout=45.0))
    assert s.open(NOW) is None
    assert s.next_deadline() == NOW + 45.0
    assert s.receive_message(b'0{"token":"x"}', False, NOW + 1) == ConnectRequest({"token": "x"})
    assert s.next_deadline() is None  # the server decides now, no timer runs
    assert s.accept("abc") == [b'40{"sid":"abc"}']
    assert s.state is NamespaceState.CONNECTED


def test_protocol_4_connects_at_once_and_answers_without_payload() -> None:
    s = SocketSession(3, SocketIOLimits())
    assert s.open(NOW) == ConnectRequest(None)
    assert s.next_deadline() is None
    assert s.accept("abc") == [b"40"]


def test_pushes_while_connecting_follow_the_connect_packet_in_order() -> None:
    s = session()
    s.receive_message(b"0", False, NOW)
    s.hold(encode_event("a", 1))
    s.hold(encode_event("b", 2))
    assert s.accept("abc") == [b'40{"sid":"abc"}', b'42["a",1]', b'42["b",2]']
    s.hold(b"42[]")  # once connected, nothing is held
    assert s.accept("abc") == []


def test_a_second_connect_while_connecting_or_connected_is_ignored() -> None:
    s = session()
    assert s.receive_message(b"0", False, NOW) == ConnectRequest(None)
    assert s.receive_message(b"0", False, NOW) is None
    s.accept("abc")
    assert s.receive_message(b"0", False, NOW) is None


@pytest.mark.parametrize(
    ("eio", "packet"),
    [(4, b'44{"message":"refused"}'), (3, b'44"refused"')],
)
def test_refused_connect_gets_connect_error_and_may_try_again(eio: int, packet: bytes) -> None:
    s = SocketSession(eio, SocketIOLimits(connect_timeout=10.0))
    s.open(NOW)
    if eio >= 4:
        s.receive_message(b"0", False, NOW)
    s.hold(b'42["dropped",1]')
    assert s.refuse(NOW + 5) == packet
    assert s.state is NamespaceState.IDLE
    assert s.next_deadline() == NOW + 15
    assert s.receive_message(b"0", False, NOW + 6) == ConnectRequest(None)
    assert s.accept("x")[1:] == []  # the held push of the refused attempt is gone


@pytest.mark.parametrize(
    ("eio", "reply"),
    [
        (4, b'44/admin,{"message":"Invalid namespace"}'),
        (3, b'44/admin,"Invalid namespace"'),
    ],
)
def test_connect_to_another_namespace_is_answered_invalid(eio: int, reply: bytes) -> None:
    s = session(eio)
    assert s.receive_message(b"0/admin,", False, NOW) == AutoReply(reply)
    assert s.receive_message(b"0/admin?x=1", False, NOW) == AutoReply(reply)


def test_protocol_5_connect_payload_must_be_an_object() -> None:
    assert isinstance(session().receive_message(b"0[1]", False, NOW), ProtocolError)
    # protocol 4 sends a query string in the namespace, never a payload: not checked
    assert session(3).receive_message(b"0[1]", False, NOW) is None


def test_no_connect_within_the_timeout() -> None:
    s = SocketSession(4, SocketIOLimits(connect_timeout=45.0))
    s.open(NOW)
    assert s.handle_timeout(NOW + 44.9) is None
    assert s.handle_timeout(NOW + 45.0) == ConnectTimedOut()
    assert s.handle_timeout(NOW + 46.0) is None  # once


# -- disconnecting --------------------------------------------------------------------------------


def test_client_disconnect_starts_the_connect_timer_again() -> None:
    s = connected(connect_timeout=30.0)
    assert s.receive_message(b"1", False, NOW + 10) == Disconnected()
    assert s.state is NamespaceState.IDLE
    assert s.next_deadline() == NOW + 40
    assert s.receive_message(b'2["ev",1]', False, NOW + 11) is None  # not connected
    assert s.receive_message(b"1", False, NOW + 12) is None  # already out
    assert s.receive_message(b"1/admin,", False, NOW + 12) is None
    assert s.receive_message(b"0", False, NOW + 13) == ConnectRequest(None)


def test_server_disconnect_sends_disconnect_and_ends_the_session() -> None:
    s = connected()
    assert s.disconnect() == b"41"
    assert s.state is NamespaceState.CLOSED
    assert s.disconnect() is None
    assert s.receive_message(b'2["ev",1]', False, NOW) is None
    assert s.receive_message(b"0", False, NOW) is None
    assert s.next_deadline() is None


def test_server_disconnect_while_connecting_follows_the_connect_packet() -> None:
    s = session()
    s.receive_message(b"0", False, NOW)
    s.hold(b'42["bye",1]')
    assert s.disconnect() is None
    assert s.accept("abc") == [b'40{"sid":"abc"}', b'42["bye",1]', b"41"]
    assert s.state is NamespaceState.CLOSED


def test_engine_close_ends_everything() -> None:
    s = session()
    s.close()
    assert s.state is NamespaceState.CLOSED
    assert s.next_deadline() is None
    assert s.receive_message(b"0", False, NOW) is None


# -- events and acks ------------------------------------------------------------------------------


def test_events_with_and_without_ack_id() -> None:
    s = connected()
    assert s.receive_message(b'2["ev",{"a":1}]', False, NOW) == EventReceived("ev", {"a": 1}, None)
    assert s.receive_message(b'212["ev",1,2]', False, NOW) == EventReceived("ev", 1, b"12")
    assert s.receive_message(b'20["ev"]', False, NOW) == EventReceived("ev", None, b"0")
    # leading zeros are dropped from the id the ack answers
    assert s.receive_message(b'2007["ev"]', False, NOW) == EventReceived("ev", None, b"7")
    # the long way: an explicit "/" namespace
    assert s.receive_message(b'2/,5["ev",2]', False, NOW) == EventReceived("ev", 2, b"5")


def test_events_before_connect_or_to_another_namespace_are_dropped() -> None:
    s = session()
    assert s.receive_message(b'2["ev",1]', False, NOW) is None
    s = connected()
    assert s.receive_message(b'2/admin,["ev",1]', False, NOW) is None


@pytest.mark.parametrize(
    "data",
    [
        b"2[1]",
        b"2[]",
        b'2{"a":1}',
        b'2["ev"',
        b"21[",
        b"3",
        b"4",  # a CONNECT_ERROR from a client
        b"7",
        b"",
        b'22-["ev"]',  # attachments on a plain event
        b"31-[]",
        b'3/,1["x"',
    ],
)
def test_garbage_is_a_protocol_error(data: bytes) -> None:
    assert isinstance(connected().receive_message(data, False, NOW), ProtocolError)


def test_acks_from_the_client_are_checked_and_reported_by_id() -> None:
    s = connected()
    assert s.receive_message(b"31[1]", False, NOW) == AckReceived(1)
    assert s.receive_message(b"3007[]", False, NOW) == AckReceived(7)
    assert s.receive_message(b"3[1]", False, NOW) is None  # no id: nothing to confirm
    assert s.receive_message(b"3/other,1[1]", False, NOW) is None  # another namespace
    assert isinstance(s.receive_message(b"31[1", False, NOW), ProtocolError)
    assert session().receive_message(b"31[1]", False, NOW) is None  # not connected


def test_an_event_asking_for_an_ack_carries_its_id() -> None:
    assert encode_event_asking("easyrtcMsg", {"a": 1}, 12) == b'4212["easyrtcMsg",{"a":1}]'


def test_encoded_packets() -> None:
    assert encode_event("ev", {"a": [1]}) == b'42["ev",{"a":[1]}]'
    assert encode_ack(b"7", {"msgType": "ack"}) == b'437[{"msgType":"ack"}]'
    assert encode_ack(b"7", "x") == b'437["x"]'
    with pytest.raises(TypeError):
        encode_ack(b"7", object())


def test_values_orjson_cannot_write_are_encoded_all_the_same() -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    assert encode_event("ev", deep) == b'42["ev",' + b"[" * 300 + b"1" + b"]" * 301


# -- bounds ---------------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * (depth - 1) + b"1" + b"]" * (depth - 1)


def test_too_deep_with_an_ack_is_refused_and_without_one_an_error() -> None:
    s = connected(max_json_depth=8)
    ok = b'2["ev",' + nested(8) + b"]"  # 8 levels with the outer list
    assert isinstance(s.receive_message(ok, False, NOW), EventReceived)
    deep = b'2["ev",' + nested(9) + b"]"
    assert s.receive_message(b"2005" + deep[1:], False, NOW) == EventRefused(
        b"5", "JSON nested deeper than 8"
    )
    assert s.receive_message(b"2/,5" + deep[1:], False, NOW) == EventRefused(
        b"5", "JSON nested deeper than 8"
    )
    assert s.receive_message(deep, False, NOW) == ProtocolError("JSON nested deeper than 8")
    # many brackets side by side are not deep
    wide = b'2["ev",[' + b",".join([b"[]"] * 20) + b"]]"
    assert isinstance(s.receive_message(wide, False, NOW), EventReceived)


def test_without_a_depth_limit_orjson_takes_up_to_1024_levels() -> None:
    s = connected(max_json_depth=None)
    assert isinstance(
        s.receive_message(b'2["ev",' + nested(1000) + b"]", False, NOW), EventReceived
    )
    assert isinstance(
        s.receive_message(b'2["ev",' + nested(1100) + b"]", False, NOW), ProtocolError
    )


def test_binary_events_are_refused_by_default() -> None:
    s = connected()
    result = s.receive_message(b'51-["ev",{"_placeholder":true,"num":0}]', False, NOW)
    assert result == ProtocolError("binary events are refused")


def test_binary_event_gets_its_attachments_in_place() -> None:
    s = connected(binary_events=True)
    head = b'52-3["ev",{"a":{"_placeholder":true,"num":1},"b":{"_placeholder":true,"num":0}}]'
    assert s.receive_message(head, False, NOW) is None
    assert s.receive_message(b"\x00first", True, NOW) is None
    assert s.receive_message(b"\x01second", True, NOW) == EventReceived(
        "ev", {"a": b"\x01second", "b": b"\x00first"}, b"3"
    )
    assert s.receive_message(b'50-["none"]', False, NOW) == EventReceived("none", None, None)
    # a binary ack is checked, filled and dropped
    assert s.receive_message(b'61-1[{"_placeholder":true,"num":0}]', False, NOW) is None
    assert s.receive_message(b"x", True, NOW) is None
    assert s.receive_message(b'2["after",1]', False, NOW) == EventReceived("after", 1, None)


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([(b'517-["ev"]', False)], "too many attachments"),
        ([(b'5["ev"]', False)], "binary packet without attachment count"),
        ([(b"x", True)], "unexpected binary data"),
        ([(b'51-["ev"]', False), (b'2["ev"]', False)], "text while waiting for attachments"),
        (
            [(b'51-["ev",{"_placeholder":true,"num":1}]', False), (b"x", True)],
            "bad placeholder",
        ),
        ([(b'51-["ev",' + nested(65) + b"]", False)], "binary packet nested too deep"),
    ],
)
def test_binary_bounds(messages: list[tuple[bytes, bool]], reason: str) -> None:
    s = connected(binary_events=True, max_json_depth=None)
    results = [s.receive_message(data, binary, NOW) for data, binary in messages]
    assert results[-1] == ProtocolError(reason)


@given(st.binary(max_size=64), st.booleans(), st.booleans())
def test_any_message_gives_an_event_or_nothing_never_an_exception(
    data: bytes, binary: bool, binary_events: bool
) -> None:
    s = connected(binary_events=binary_events)
    s.receive_message(b'51-["ev",{"_placeholder":true,"num":0}]', False, NOW)
    result = s.receive_message(data, binary, NOW)
    assert result is None or type(result) in (
        ConnectRequest,
        EventReceived,
        Disconnected,
        AutoReply,
        EventRefused,
        ProtocolError,
    )


JSON_INTEGERS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
"""What orjson reads back as an int: a client's larger numbers arrive as floats anyway."""


@given(st.text(max_size=20), st.recursive(JSON_INTEGERS | st.text(), st.lists, max_leaves=8))
def test_an_encoded_event_reads_back(name: str, data: object) -> None:
    packet = encode_event(name, data)
    assert packet[:1] == b"4"
    assert connected().receive_message(packet[1:], False, NOW) == EventReceived(name, data, None)


def test_packets_are_json_a_client_can_read() -> None:
    s = session()
    s.receive_message(b"0", False, NOW)
    (packet,) = s.accept("abc")
    assert orjson.loads(packet[2:]) == {"sid": "abc"}
