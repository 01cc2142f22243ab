"""The ASGI driver's own duties: departures, read timeout, origins, limits (uvicorn, raw HTTP)."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

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
