"""A room message's shared encoding (``Link.send_shared``) puts on the wire exactly what a push
per recipient (``Link.send``) puts there, for every flavour of socket: Engine.IO 3 and 4
(Socket.IO 4 and 5), websocket framed by us (aiohttp), websocket framed by the server (ASGI),
long-polling; frames of each header size; pushes held while the socket is opening."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from easyrtc_server.transport import Link, SharedEvent
from easyrtc_server.transport.engineio_protocol import (
    SplitPacket,
    decode_payload_v3,
    decode_payload_v4,
    ws_frame,
)
from easyrtc_server.transport.engineio_sessions import EngineSocket
from easyrtc_server.transport.socketio import LeanTransport
from easyrtc_server.transport.socketio_protocol import encode_event, split_event

KEY = "easyrtcid"
BODIES: list[dict[str, Any]] = [
    {
        "senderEasyrtcid": "Xy3",
        "msgType": "chat",
        "msgData": {"text": "hi"},
        "targetRoom": "default",
        "serverTime": 1733472000000,
    },
    {},  # no other key: no comma before the address
    {"msgType": 'é \u2028 😀 "quoted" \\ \x01', "serverTime": 1},  # escapes, non-ASCII
    {"msgType": "bench", "msgData": "x" * 200},  # frames with a 16-bit length
    {"msgType": "bench", "msgData": "y" * 70_000},  # frames with a 64-bit length
]
VALUES = ["id-1", "a" * 32, "b", "c.d_e-f"]  # easyrtcids of different lengths
AFTERS: list[dict[str, Any] | None] = [None, {"serverTime": 1733472000000}, {"a": [1], "b": "é"}]
"""Keys after the address: none (a room message), a member-list update's serverTime, more."""


@pytest.mark.parametrize("after", AFTERS)
@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_split_packet_is_the_packet_and_the_frame_of_each_recipient(
    body: dict[str, Any], after: dict[str, Any] | None
) -> None:
    parts = split_event("easyrtcMsg", body, KEY, after)
    if after is not None and not body.keys().isdisjoint(after):
        assert parts is None  # a key of both stays where it was: sent whole (below)
        return
    assert parts is not None
    head, tail = parts
    packet = SplitPacket(head, tail)
    for value in VALUES + VALUES:  # again: the framed heads kept per length
        whole = encode_event("easyrtcMsg", {**body, KEY: value, **(after or {})})
        middle = orjson.dumps(value)
        assert head + middle + tail == whole
        assert packet.packet(middle) == whole
        assert packet.frame(middle) == ws_frame(whole)


def test_data_holding_the_key_already_is_not_split() -> None:
    # {**data, key: value} keeps the key where it was: no shared head and tail fits that
    assert split_event("easyrtcMsg", {KEY: "old", "msgType": "x"}, KEY) is None
    assert split_event("easyrtcMsg", {"msgType": "x"}, KEY, {KEY: "old"}) is None
    assert split_event("easyrtcMsg", {"msgType": "x"}, KEY, {"msgType": "y"}) is None


class Frames:
    """An aiohttp-like websocket: takes frames; records the raw bytes written."""

    framed = True

    def __init__(self) -> None:
        self.written = bytearray()

    def flush(self, sock: EngineSocket) -> None:
        self.written += sock.proto.data_to_send()

    def close(self, sock: EngineSocket, graceful: bool) -> None:
        pass

    async def send_probe_reply(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


class Packets(Frames):
    """An ASGI-like websocket: takes packets (the ASGI server frames them)."""

    framed = False

    def __init__(self) -> None:
        super().__init__()
        self.packets: list[bytes] = []

    def flush(self, sock: EngineSocket) -> None:
        self.packets += sock.proto.packets_to_send()


class Seam:
    """A seam server that accepts every socket; ``greet`` runs while a socket opens."""

    draining = False

    def __init__(self) -> None:
        self.links: list[Link] = []
        self.greet: Callable[[Link], Awaitable[None]] | None = None

    async def open(self, link: Link) -> Any:
        self.links.append(link)
        if self.greet is not None:
            await self.greet(link)
        return object()

    async def receive(self, peer: Any, event: str, data: Any, ack: Any) -> None:
        pass

    async def close(self, peer: Any) -> None:
        pass

    def refused(self, reason: str) -> Any:
        return None


class Client:
    """One session of a flavour and what reached its wire."""

    def __init__(self, sock: EngineSocket, conn: Frames | Packets | None, link: Link) -> None:
        self.sock, self.conn, self.link = sock, conn, link

    def wire(self) -> list[bytes]:
        """Everything sent since the last call: the websocket's bytes, each packet an ASGI
        server would frame, or a poll's body."""
        self.sock.flush()
        conn = self.conn
        if isinstance(conn, Packets):
            out, conn.packets = conn.packets, []
            return out
        if isinstance(conn, Frames):
            out_bytes, conn.written = bytes(conn.written), bytearray()
            return [out_bytes]
        return [self.sock.proto.poll_body()]

    def packets(self) -> list[bytes]:
        """``wire`` as packets (frames and payloads taken apart), to set aside the CONNECT."""
        conn = self.conn
        if isinstance(conn, Packets):
            return self.wire()
        (data,) = self.wire()
        if conn is None:
            decode = decode_payload_v4 if self.sock.eio >= 4 else decode_payload_v3
            return [packet for packet, _ in decode(data)]
        frames = []
        while data:
            frame_len = _frame_length(data)
            frames.append(data[:frame_len])
            data = data[frame_len:]
        return frames


def _frame_length(data: bytes) -> int:
    n = data[1]
    if n < 126:
        return 2 + n
    if n == 126:
        return 4 + int.from_bytes(data[2:4], "big")
    return 10 + int.from_bytes(data[2:10], "big")


FLAVOURS = [(eio, kind) for eio in (3, 4) for kind in ("websocket", "asgi-websocket", "polling")]


@asynccontextmanager
async def transport() -> AsyncIterator[tuple[LeanTransport, Seam]]:
    seam = Seam()
    lean = LeanTransport(seam, max_http_buffer_size=10_000_000)
    try:
        yield lean, seam
    finally:
        await lean.shutdown()


async def _client(lean: LeanTransport, seam: Seam, eio: int, kind: str) -> Client:
    conn: Frames | Packets | None = {"websocket": Frames, "asgi-websocket": Packets}.get(
        kind, lambda: None
    )()
    sock = lean.engine.open_session(eio, "127.0.0.1", conn)
    await sock.open()
    if eio >= 4:
        await lean.on_message(sock, b"0", False)  # the client's CONNECT
    await asyncio.sleep(0)
    link = seam.links[-1]
    return Client(sock, conn, link)


@pytest.mark.parametrize(("eio", "kind"), FLAVOURS)
async def test_a_shared_push_is_on_the_wire_what_a_push_per_recipient_is(
    eio: int, kind: str
) -> None:
    async with transport() as (lean, seam):
        one_by_one = [await _client(lean, seam, eio, kind) for _ in VALUES]
        shared = [await _client(lean, seam, eio, kind) for _ in VALUES]
        for client in one_by_one + shared:
            client.wire()  # the open and CONNECT packets (each with its own sid)
        for body, after in itertools.product(BODIES, AFTERS):
            event = SharedEvent("easyrtcMsg", body, KEY, after)
            for value, single, many in zip(VALUES, one_by_one, shared, strict=True):
                await single.link.send("easyrtcMsg", {**body, KEY: value, **(after or {})})
                await many.link.send_shared(event, value)
            for single, many in zip(one_by_one, shared, strict=True):
                expected = single.wire()
                assert expected != [b""] and expected != []
                assert many.wire() == expected
        # several in one pass, as a burst of room messages queues them
        events = [SharedEvent("easyrtcMsg", body, KEY) for body in BODIES[:3]]
        for value, single, many in zip(VALUES, one_by_one, shared, strict=True):
            for body, event in zip(BODIES[:3], events, strict=True):
                await single.link.send("easyrtcMsg", {**body, KEY: value})
                await many.link.send_shared(event, value)
        for single, many in zip(one_by_one, shared, strict=True):
            assert many.wire() == single.wire()


@pytest.mark.parametrize(("eio", "kind"), FLAVOURS)
async def test_a_shared_push_while_the_socket_opens_follows_the_connect_as_a_push_does(
    eio: int, kind: str
) -> None:
    body = BODIES[0]
    event = SharedEvent("easyrtcMsg", body, KEY)
    async with transport() as (lean, seam):

        async def push_one(link: Link) -> None:
            await link.send("easyrtcMsg", {**body, KEY: "id-1"})

        async def push_shared(link: Link) -> None:
            await link.send_shared(event, "id-1")

        seam.greet = push_one
        single = await _client(lean, seam, eio, kind)
        seam.greet = push_shared
        many = await _client(lean, seam, eio, kind)
        expected = single.packets()
        got = many.packets()
        assert len(expected) >= 2  # (the open packet,) the CONNECT, then the push
        assert got[-1] == expected[-1]
        assert len(got) == len(expected)


@pytest.mark.parametrize(("eio", "kind"), FLAVOURS)
async def test_data_holding_the_key_is_sent_whole_and_the_same(eio: int, kind: str) -> None:
    body = {KEY: "first", "msgType": "x"}
    event = SharedEvent("easyrtcMsg", body, KEY)
    async with transport() as (lean, seam):
        single = await _client(lean, seam, eio, kind)
        many = await _client(lean, seam, eio, kind)
        single.wire(), many.wire()
        await single.link.send("easyrtcMsg", {**body, KEY: "id-1"})
        await many.link.send_shared(event, "id-1")
        assert many.wire() == single.wire()
