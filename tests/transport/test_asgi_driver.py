"""The ASGI driver's own duties: departures, read timeout, origins, limits (uvicorn, raw HTTP)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from easyrtc_server.transport.asgi_engineio import AsgiWebSocket, DirectWebSocket
from easyrtc_server.transport.engineio_protocol import (
    EngineSession,
    SessionLimits,
    TransportKind,
    ws_frame,
)
from easyrtc_server.transport.socketio import SocketLink

from .harness import TIMEOUT, Running, lean_server

PATH = "/socket.io/"


async def _polling_session(session: aiohttp.ClientSession, run: Running) -> str:
    params = {"EIO": "4", "transport": "polling"}
    async with session.get(run.url + PATH, params=params) as r:
        sid: str = json.loads((await r.text())[1:])["sid"]
    params["sid"] = sid
    async with session.post(run.url + PATH, params=params, data=b"40") as r:
        assert r.status == 200
    async with session.get(run.url + PATH, params=params) as r:
        assert (await r.text()).startswith("40")
    return sid


def _raw(run: Running, sid: str, method: str, length: int | None = None) -> bytes:
    lines = [f"{method} {PATH}?EIO=4&transport=polling&sid={sid} HTTP/1.1", "Host: x"]
    if length is not None:
        lines += ["Content-Type: text/plain", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_aborted_pending_get_closes_the_session_at_once() -> None:
    async with lean_server(driver="asgi") as run, aiohttp.ClientSession() as session:
        sid = await _polling_session(session, run)
        host, port = urlsplit(run.url).netloc.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(_raw(run, sid, "GET"))
        with pytest.raises(TimeoutError):  # held
            await asyncio.wait_for(reader.read(1), 0.3)
        closed_at = time.monotonic()
        writer.close()
        await run.server.wait(lambda: len(run.server.closed) == 1)
        assert time.monotonic() - closed_at < 1.0


async def test_slow_post_body_times_out() -> None:
    async with (
        lean_server(driver="asgi", read_timeout=0.5) as run,
        aiohttp.ClientSession() as session,
    ):
        sid = await _polling_session(session, run)
        host, port = urlsplit(run.url).netloc.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(_raw(run, sid, "POST", 1000) + b"4")
        status = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert status.split()[1] == b"408"
        writer.close()
        await run.server.wait(lambda: len(run.server.closed) == 1)


async def test_websocket_from_another_origin_is_refused() -> None:
    async with (
        lean_server(driver="asgi", cors_origins=["http://ok.example"]) as run,
        aiohttp.ClientSession() as session,
    ):
        url = run.url.replace("http", "ws") + PATH + "?EIO=4&transport=websocket"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url, headers={"Origin": "http://evil.example"})
        async with session.ws_connect(url, headers={"Origin": "http://ok.example"}) as ws:
            assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
        assert run.server.opening == 0


async def test_too_big_websocket_message_closes() -> None:
    async with (
        lean_server(driver="asgi", max_http_buffer_size=1000) as run,
        aiohttp.ClientSession() as session,
    ):
        url = run.url.replace("http", "ws") + PATH + "?EIO=4&transport=websocket"
        async with session.ws_connect(url) as ws:
            assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
            await ws.send_str("40")
            assert (await ws.receive_str(timeout=TIMEOUT)).startswith("40")
            await ws.send_str('42["echo","' + "x" * 2000 + '"]')
            message = await ws.receive(timeout=TIMEOUT)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await run.server.wait(lambda: len(run.server.closed) == 1)
        assert run.server.peers[0].received == []


# uvicorn's websocket implementations (the driver writes to websockets-sansio's directly when
# nothing is compressed), with and without permessage-deflate negotiated by the client
WS_IMPLEMENTATIONS = [
    pytest.param({"ws": "websockets-sansio"}, False, id="sansio"),
    pytest.param({"ws": "websockets-sansio"}, True, id="sansio-deflate"),
    pytest.param({"ws": "websockets"}, False, id="websockets"),
    pytest.param({"ws": "wsproto"}, False, id="wsproto"),
]


async def _connect(
    session: aiohttp.ClientSession, run: Running, deflate: bool
) -> aiohttp.ClientWebSocketResponse:
    url = run.url.replace("http", "ws") + PATH + "?EIO=4&transport=websocket"
    ws = await session.ws_connect(url, compress=15 if deflate else 0)
    assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
    await ws.send_str("40")
    assert (await ws.receive_str(timeout=TIMEOUT)).startswith("40")
    return ws


@pytest.mark.parametrize(("uvicorn_options", "deflate"), WS_IMPLEMENTATIONS)
async def test_idle_websocket_gets_pings_and_stays_open(
    uvicorn_options: dict[str, Any], deflate: bool
) -> None:
    async with (
        lean_server(
            driver="asgi", uvicorn_options=uvicorn_options, ping_interval=0.2, ping_timeout=0.4
        ) as run,
        aiohttp.ClientSession() as session,
    ):
        ws = await _connect(session, run, deflate)
        for _ in range(3):  # longer than ping_interval + ping_timeout
            assert await ws.receive_str(timeout=TIMEOUT) == "2"
            await ws.send_str("3")
        assert run.server.closed == []
        await ws.close()


@pytest.mark.parametrize(("uvicorn_options", "deflate"), WS_IMPLEMENTATIONS)
async def test_pushes_arrive_whole_and_in_order(
    uvicorn_options: dict[str, Any], deflate: bool
) -> None:
    async with (
        lean_server(driver="asgi", uvicorn_options=uvicorn_options) as run,
        aiohttp.ClientSession() as session,
    ):
        ws = await _connect(session, run, deflate)
        sock = run.server.peers[0].link
        assert isinstance(sock, SocketLink)
        conn = sock.engine_socket.connection
        assert isinstance(conn, AsgiWebSocket)
        direct = conn.direct
        assert (direct is not None) == (
            uvicorn_options["ws"] == "websockets-sansio" and not deflate
        )
        # the three websocket length encodings; all of one flood is queued in one pass
        for count, size in ((300, 10), (300, 200), (20, 70_000)):
            await ws.send_str(f'421["flood",{{"count":{count},"size":{size}}}]')
            seen = []
            for _ in range(count):
                text = await ws.receive_str(timeout=TIMEOUT)
                event, data = json.loads(text[2:])
                assert (event, len(data["chunk"])) == ("pushed", size)
                seen.append(data["i"])
            assert seen == list(range(count))
            assert await ws.receive_str(timeout=TIMEOUT) == "431[null]"
        await ws.close()
        await run.server.wait(lambda: len(run.server.closed) == 1)


async def test_slow_consumer_is_closed_when_written_directly() -> None:
    # each flood fits the send buffer; a client that stops reading fills uvicorn's transport
    # buffer, uvicorn holds writes back, and the packets then queued overflow the buffer
    async with lean_server(
        driver="asgi",
        uvicorn_options={"ws": "websockets-sansio", "ws_per_message_deflate": False},
        max_send_buffer=256 * 1024,
    ) as run:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", run.port))
        reader, writer = await asyncio.open_connection(sock=raw, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(_masked_frame("40"))
        server = run.server
        await server.wait(lambda: bool(server.peers))
        try:
            for n in range(1, 200):  # 25 MB if nobody stopped it
                # one flood at a time, each written out at the end of its pass
                writer.write(_masked_frame('42["flood",{"count":4,"size":32000}]'))
                await server.wait(lambda: bool(server.closed) or len(server.peers[0].received) == n)  # noqa: B023
                if server.closed:
                    break
        finally:
            writer.close()
        link = run.server.peers[0].link
        assert isinstance(link, SocketLink)
        conn = link.engine_socket.connection
        assert isinstance(conn, AsgiWebSocket) and conn.direct is not None
        assert link.engine_socket.close_reason == "slow consumer"


def _masked_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


class _FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False


class _FakeConn:
    expect_continuation_frame = False
    extensions: list[object] = []
    state = "open"


class _FakeUvicornWebSocket:
    """What `DirectWebSocket` uses of uvicorn's websockets-sansio protocol."""

    def __init__(self) -> None:
        self.conn = _FakeConn()
        self.transport = _FakeTransport()
        self.writable = asyncio.Event()
        self.disconnected = False
        self.close_sent = False


async def test_packets_held_back_by_flow_control_go_out_before_newer_ones() -> None:
    owner = _FakeUvicornWebSocket()
    direct = DirectWebSocket(owner, "open")
    session = EngineSession("s", 4, TransportKind.WEBSOCKET, SessionLimits(), 0.0, framed=False)
    session.packets_to_send()  # the open packet
    writer = asyncio.ensure_future(direct.write([b"4old"]))
    await asyncio.sleep(0)  # the writer waits: uvicorn holds writes back
    assert owner.transport.written == []
    owner.writable.set()  # writes resume; the end-of-pass flush may run before the writer
    session.send(b"4new")
    assert direct.write_now(session) < 0  # it must not overtake the held packet
    await writer
    assert direct.write_now(session) == len(ws_frame(b"4new"))
    assert owner.transport.written == [ws_frame(b"4old"), ws_frame(b"4new")]


@pytest.mark.parametrize("driver", ["aiohttp", "asgi"])
@pytest.mark.parametrize(("code", "goodbye"), [(1000, True), (1001, True), (4000, False)])
async def test_websocket_close_codes_tell_a_goodbye_from_a_drop(
    driver: str, code: int, goodbye: bool
) -> None:
    """Closed by the client with 1000/1001 (a page that goes away): a goodbye, even without a
    Socket.IO DISCONNECT; another code: a drop (a resumable connection is held)."""
    async with lean_server(driver=driver) as run, aiohttp.ClientSession() as session:
        ws = await _connect(session, run, False)
        await ws.close(code=code)
        await run.server.wait(lambda: len(run.server.closed) == 1)
        [peer] = run.server.closed
        assert isinstance(peer.link, SocketLink)
        assert peer.link.goodbye is goodbye
