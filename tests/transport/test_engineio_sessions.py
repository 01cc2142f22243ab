"""The session layer both drivers share, driven directly: fake connections and body readers,
no HTTP server. What a driver hands it (bodies, messages, a websocket) and what it hands back
(replies, packets to write, closes) is the whole contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from easyrtc_server.transport.engineio_sessions import (
    ClientGone,
    EngineIOServer,
    EngineSocket,
    HttpReply,
)

TIMEOUT = 5.0


class Handler:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.closed: list[str] = []
        self.closed_event = asyncio.Event()

    async def on_open(self, sock: EngineSocket) -> None:
        pass

    async def on_message(self, sock: EngineSocket, data: bytes, binary: bool) -> None:
        self.messages.append(data)
        sock.send_packet(b"4echo:" + data)

    async def on_close(self, sock: EngineSocket, reason: str) -> None:
        self.closed.append(reason)
        self.closed_event.set()


class PacketConnection:
    """A websocket that takes packets (as the ASGI driver's does) and records them."""

    framed = False

    def __init__(self, incoming: list[bytes]) -> None:
        self.incoming = list(incoming)
        self.written: list[bytes] = []
        self.probe_replies: list[bytes] = []
        self.closed: bool | None = None
        self.aborted = False

    def flush(self, sock: EngineSocket) -> None:
        self.written += sock.proto.packets_to_send()

    def close(self, sock: EngineSocket, graceful: bool) -> None:
        self.closed = graceful

    async def send_probe_reply(self, data: bytes) -> None:
        self.probe_replies.append(data)

    def abort(self) -> None:
        self.aborted = True

    async def next_text(self) -> bytes | None:
        return self.incoming.pop(0) if self.incoming else None


@asynccontextmanager
async def engine(**options: Any) -> AsyncIterator[tuple[EngineIOServer, Handler]]:
    handler = Handler()
    server = EngineIOServer(handler, **options)
    try:
        yield server, handler
    finally:
        await server.shutdown()


def body_of(data: bytes) -> Callable[[int], Awaitable[bytes | None]]:
    async def read(limit: int) -> bytes | None:
        return data if len(data) <= limit else None

    return read


async def never() -> None:
    await asyncio.Event().wait()


async def test_a_post_is_handled_and_its_answer_polled() -> None:
    async with engine() as (server, handler):
        sock = server.open_session(4, "127.0.0.1")
        await sock.open()
        assert (await sock.take_poll(never)).body.startswith(b"0{")
        reply = await sock.take_post(body_of(b"4hello\x1e4world"), "text/plain")
        assert reply.status == 200
        assert handler.messages == [b"hello", b"world"]
        polled = await sock.take_poll(never)
        assert polled == HttpReply(200, b"4echo:hello\x1e4echo:world", "text/plain; charset=UTF-8")
        assert server.bytes_received == len(b"4hello\x1e4world")
        assert server.bytes_sent > len(polled.body)  # the open packet too


async def test_a_post_that_breaks_off_ends_the_session() -> None:
    async with engine() as (server, handler):
        sock = server.open_session(4, None)

        async def broken(limit: int) -> bytes | None:
            raise ClientGone("reset")

        assert (await sock.take_post(broken, "text/plain")).status == 400
        await asyncio.wait_for(handler.closed_event.wait(), TIMEOUT)
        assert handler.closed == ["transport close"]
        assert sock.sid not in server.sockets


async def test_a_post_too_large_or_too_slow_ends_the_session() -> None:
    async with engine(max_http_buffer_size=10, read_timeout=0.05) as (server, handler):
        big = server.open_session(4, None)
        assert (await big.take_post(body_of(b"4" + b"x" * 20), "text/plain")).status == 413
        slow = server.open_session(4, None)

        async def hangs(limit: int) -> bytes | None:
            await never()
            return None

        assert (await slow.take_post(hangs, "text/plain")).status == 408
        async with asyncio.timeout(TIMEOUT):
            while len(handler.closed) < 2:
                handler.closed_event.clear()
                await handler.closed_event.wait()
        assert sorted(handler.closed) == ["payload too large", "read timeout"]


async def test_a_held_poll_whose_client_leaves_ends_the_session() -> None:
    async with engine() as (server, _):
        sock = server.open_session(4, None)
        await sock.take_poll(never)  # the open packet
        left = asyncio.Event()
        poll = asyncio.ensure_future(sock.take_poll(left.wait))
        await asyncio.sleep(0)
        assert not poll.done()  # held: nothing queued
        left.set()
        assert (await asyncio.wait_for(poll, TIMEOUT)).status == 400
        assert sock.closed and sock.close_reason == "transport close"


async def test_a_second_concurrent_poll_is_a_transport_error() -> None:
    async with engine() as (server, _):
        sock = server.open_session(4, None)
        await sock.take_poll(never)
        first = asyncio.ensure_future(sock.take_poll(never))
        await asyncio.sleep(0)
        second = await sock.take_poll(never)
        assert second.status == 400 and b"Bad request" in second.body
        assert (await asyncio.wait_for(first, TIMEOUT)).body == b"1"  # the close packet
        assert sock.close_reason == "transport error"


async def test_an_upgrade_moves_the_outbox_to_the_new_connection() -> None:
    async with engine() as (server, _):
        sock = server.open_session(4, None)
        await sock.take_poll(never)
        sock.send_packet(b"4queued")
        probe = PacketConnection([b"2probe", b"5"])
        assert await sock.upgrade(probe, probe.next_text)
        assert probe.probe_replies == [b"3probe"]
        assert sock.on_websocket and sock.connection is probe
        assert probe.written == [b"4queued"]  # what the outbox held, as packets
        await sock.receive_text(b"4hi")
        await asyncio.sleep(0)  # the end of the pass: the flush
        assert probe.written[-1] == b"4echo:hi"
        sock.close("bye")
        assert probe.closed is True  # graceful
        assert sock.sid not in server.sockets


async def test_an_upgrade_that_does_not_complete_is_aborted_and_polling_goes_on() -> None:
    async with engine() as (server, _):
        sock = server.open_session(4, None)
        probe = PacketConnection([b"2probe", b"4not-an-upgrade"])
        assert not await sock.upgrade(probe, probe.next_text)
        assert probe.aborted and not sock.on_websocket and not sock.probing
        assert not sock.closed
        assert (await sock.take_poll(never)).body.startswith(b"0{")


class FrameConnection(PacketConnection):
    """A websocket that takes frames (as the aiohttp driver's does); records their packets."""

    framed = True

    def flush(self, sock: EngineSocket) -> None:
        data = sock.proto.data_to_send()
        while data:  # short unmasked text frames: 0x81, the length, the packet
            assert data[0] == 0x81 and data[1] < 126
            self.written.append(data[2 : 2 + data[1]])
            data = data[2 + data[1] :]


class ScriptedConnection:
    """A probe websocket whose messages the test hands over one at a time (``feed``)."""

    def __init__(self, conn: PacketConnection) -> None:
        self.conn = conn
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()

    def feed(self, data: bytes | None) -> None:
        self.incoming.put_nowait(data)

    async def next_text(self) -> bytes | None:
        return await self.incoming.get()


def packets_of(body: bytes) -> list[bytes]:
    return [p for p in body.split(b"\x1e") if p != b"6"]  # noops carry nothing


@pytest.mark.parametrize("connection", [PacketConnection, FrameConnection])
async def test_pushes_and_posts_during_an_upgrade_arrive_once_each_in_order(
    connection: type[PacketConnection],
) -> None:
    """What a client sees through an upgrade (polls until it pauses, then the websocket) is
    every push once, in order: pushed while its poll is held, between the probe and the
    upgrade packet (no poll taking them), and answers to a POST still being handled when the
    upgrade packet comes."""
    async with engine() as (server, handler):
        sock = server.open_session(4, None)
        assert (await sock.take_poll(never)).body.startswith(b"0{")
        seen: list[bytes] = []
        pushes = [f"4p{i}".encode() for i in range(8)]

        held = asyncio.ensure_future(sock.take_poll(never))
        await asyncio.sleep(0)
        sock.send_packet(pushes[0])  # answers the held poll
        seen += packets_of((await asyncio.wait_for(held, TIMEOUT)).body)

        held = asyncio.ensure_future(sock.take_poll(never))
        await asyncio.sleep(0)
        probe = connection([])
        script = ScriptedConnection(probe)
        upgrading = asyncio.ensure_future(sock.upgrade(probe, script.next_text))
        script.feed(b"2probe")
        seen += packets_of((await asyncio.wait_for(held, TIMEOUT)).body)  # released: a noop
        assert probe.probe_replies
        # the client pauses polling: nothing takes these until the upgrade packet
        sock.send_packet(pushes[1])
        sock.send_packet(pushes[2])
        # its last POST, still being handled when the upgrade packet arrives
        release = asyncio.Event()
        on_message = handler.on_message

        async def slow(s: EngineSocket, data: bytes, binary: bool) -> None:
            await release.wait()
            s.send_packet(pushes[3])
            await on_message(s, data, binary)

        handler.on_message = slow  # type: ignore[method-assign]
        post = asyncio.ensure_future(sock.take_post(body_of(b"4x"), "text/plain"))
        await asyncio.sleep(0)
        script.feed(b"5")
        for _ in range(3):
            await asyncio.sleep(0)
        sock.send_packet(pushes[4])
        assert not sock.on_websocket  # the upgrade waits for the POST
        release.set()
        assert (await asyncio.wait_for(post, TIMEOUT)).status == 200
        assert await asyncio.wait_for(upgrading, TIMEOUT)
        handler.on_message = on_message  # type: ignore[method-assign]
        sock.send_packet(pushes[5])
        await sock.receive_text(b"4y")
        await asyncio.sleep(0)  # the end of the pass: the flush
        seen += probe.written
        assert seen == [*pushes[:3], pushes[4], pushes[3], b"4echo:x", pushes[5], b"4echo:y"]
        assert sock.on_websocket and not sock.probing


async def test_an_answered_probe_waits_for_the_upgrade_packet_past_the_upgrade_timeout() -> None:
    """Once told ``3probe`` the client pauses polling until it sends ``5``; aborting the probe
    then (as a timer set at the websocket's opening did, under load) left a real
    socket.io-client 4 neither polling nor posting until its ping timeout: messages to and from
    it were late by seconds (a data channel half open) or lost with the session."""
    async with engine(upgrade_timeout=0.05) as (server, handler):
        sock = server.open_session(4, None)
        await sock.take_poll(never)
        probe = PacketConnection([])
        script = ScriptedConnection(probe)
        upgrading = asyncio.ensure_future(sock.upgrade(probe, script.next_text))
        script.feed(b"2probe")
        await asyncio.sleep(0.2)  # the client is slow to send "5": past the upgrade timeout
        assert not probe.aborted and sock.probing
        sock.send_packet(b"4meanwhile")
        script.feed(b"5")
        assert await asyncio.wait_for(upgrading, TIMEOUT)
        assert probe.written == [b"4meanwhile"]
        assert not sock.closed and handler.closed == []


async def test_a_probe_that_never_completes_ends_with_the_session_heartbeat() -> None:
    async with engine(ping_interval=0.05, ping_timeout=0.05, upgrade_timeout=0.05) as (
        server,
        handler,
    ):
        sock = server.open_session(4, None)
        await sock.take_poll(never)
        probe = PacketConnection([])
        script = ScriptedConnection(probe)
        upgrading = asyncio.ensure_future(sock.upgrade(probe, script.next_text))
        script.feed(b"2probe")  # and then nothing: no "5", no pong
        await asyncio.wait_for(handler.closed_event.wait(), TIMEOUT)
        assert handler.closed == ["ping timeout"]
        assert probe.aborted
        script.feed(None)  # the aborted connection's reader ends
        assert not await asyncio.wait_for(upgrading, TIMEOUT)
