"""Engine.IO and Socket.IO details, driven with raw HTTP and websocket clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from easyrtc_server.transport.engineio import AiohttpWebSocket
from easyrtc_server.transport.socketio import SocketLink

from .harness import TIMEOUT, Running, lean_server

PATH = "/socket.io/"


def v3_payload(*packets: str) -> bytes:
    """Engine.IO 3 text payload; lengths in UTF-16 code units like JavaScript's."""
    return "".join(f"{len(p.encode('utf-16-le')) // 2}:{p}" for p in packets).encode()


def v3_packets(body: str) -> list[str]:
    units = body.encode("utf-16-le")
    out: list[str] = []
    i = 0
    while i < len(units):
        colon = i
        while units[colon : colon + 2] != b":\x00":
            colon += 2
        n = int(units[i:colon].decode("utf-16-le"))
        out.append(units[colon + 2 : colon + 2 + 2 * n].decode("utf-16-le"))
        i = colon + 2 + 2 * n
    return out


@asynccontextmanager
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session


async def handshake(session: aiohttp.ClientSession, run: Running, eio: int = 4) -> tuple[str, str]:
    """Open a long-polling session; the sid and the response body."""
    async with session.get(run.url + PATH, params={"EIO": str(eio), "transport": "polling"}) as r:
        assert r.status == 200
        body = await r.text()
    first = body if eio == 4 else v3_packets(body)[0]
    assert first[0] == "0"
    return json.loads(first[1:])["sid"], body


async def poll(session: aiohttp.ClientSession, run: Running, sid: str, eio: int = 4) -> list[str]:
    params = {"EIO": str(eio), "transport": "polling", "sid": sid}
    async with session.get(run.url + PATH, params=params) as r:
        assert r.status == 200, await r.text()
        body = await r.text()
    return body.split("\x1e") if eio == 4 else v3_packets(body)


async def post(
    session: aiohttp.ClientSession,
    run: Running,
    sid: str,
    body: bytes,
    eio: int = 4,
    content_type: str = "text/plain;charset=UTF-8",
) -> int:
    params = {"EIO": str(eio), "transport": "polling", "sid": sid}
    headers = {"Content-Type": content_type}
    async with session.post(run.url + PATH, params=params, data=body, headers=headers) as r:
        await r.read()
        return r.status


@asynccontextmanager
async def raw_ws(
    run: Running, eio: int = 4, sid: str | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    params = {"EIO": str(eio), "transport": "websocket"}
    if sid is not None:
        params["sid"] = sid
    async with http() as session, session.ws_connect(run.url + PATH, params=params) as ws:
        yield ws


async def recv(ws: aiohttp.ClientWebSocketResponse) -> str:
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return str(msg.data)


async def recv_skipping_pings(ws: aiohttp.ClientWebSocketResponse) -> str:
    while (data := await recv(ws)) == "2":
        pass
    return data


async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """Read until the server closes the websocket; the text messages seen on the way."""
    seen: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                seen.append(msg.data)
                continue
            assert msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.ERROR,
            ), msg
            return seen


async def ws_connect_v4(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """Open packet, CONNECT to "/"; the open packet's data."""
    opened = await recv(ws)
    assert opened[0] == "0"
    await ws.send_str("40")
    connected = await recv(ws)
    assert connected.startswith("40{")
    assert set(json.loads(connected[2:])) == {"sid"}
    return dict(json.loads(opened[1:]))


# -- handshakes and errors -------------------------------------------------------------------------


async def test_handshake_v4() -> None:
    async with lean_server() as run, http() as session:
        params = {"EIO": "4", "transport": "polling"}
        async with session.get(run.url + PATH, params=params) as r:
            assert r.headers["Content-Type"] == "text/plain; charset=UTF-8"
            body = await r.text()
        assert body[0] == "0"
        info = json.loads(body[1:])
        assert info.pop("sid")
        assert info == {
            "upgrades": ["websocket"],
            "pingInterval": 5000,
            "pingTimeout": 10000,
            "maxPayload": 1_000_000,
        }
        # the path without its trailing slash works too; sids differ
        async with session.get(run.url + "/socket.io", params=params) as r:
            other = json.loads((await r.text())[1:])["sid"]
        assert other != json.loads(body[1:])["sid"]
        assert len(other) >= 20


async def test_handshake_v3_connects_default_namespace() -> None:
    async with lean_server() as run, http() as session:
        async with session.get(run.url + PATH, params={"transport": "polling"}) as r:
            packets = v3_packets(await r.text())
        assert packets[0][0] == "0"
        info = json.loads(packets[0][1:])
        assert set(info) == {"sid", "upgrades", "pingInterval", "pingTimeout"}
        assert packets[1:] == ["40"]
        assert len(run.server.peers) == 1


async def test_websocket_handshake_v4() -> None:
    async with lean_server() as run, raw_ws(run) as ws:
        info = await ws_connect_v4(ws)
        assert info["upgrades"] == []
        await ws.send_str('421["echo",{"a":"ü"}]')
        assert await recv_skipping_pings(ws) == '431[{"a":"ü"}]'


@pytest.mark.parametrize(
    ("method", "params", "headers", "code"),
    [
        ("GET", {"EIO": "4", "transport": "carrier-pigeon"}, {}, 0),
        ("GET", {"EIO": "4"}, {}, 0),
        ("GET", {"EIO": "4", "transport": "polling", "sid": "nope"}, {}, 1),
        ("POST", {"EIO": "4", "transport": "polling", "sid": "nope"}, {}, 1),
        ("POST", {"EIO": "4", "transport": "polling"}, {}, 2),
        ("PUT", {"EIO": "4", "transport": "polling"}, {}, 2),
        ("GET", {"EIO": "4", "transport": "websocket"}, {}, 3),
        ("GET", {"EIO": "4", "transport": "polling", "j": "0"}, {}, 3),
        ("GET", {"EIO": "5", "transport": "polling"}, {}, 5),
        ("GET", {"EIO": "2", "transport": "polling"}, {}, 5),
    ],
)
async def test_errors(
    method: str, params: dict[str, str], headers: dict[str, str], code: int
) -> None:
    messages = {
        0: "Transport unknown",
        1: "Session ID unknown",
        2: "Bad handshake method",
        3: "Bad request",
        5: "Unsupported protocol version",
    }
    async with (
        lean_server() as run,
        http() as session,
        session.request(method, run.url + PATH, params=params, headers=headers) as r,
    ):
        assert r.status == 400
        assert r.headers["Content-Type"].startswith("application/json")
        assert await r.json() == {"code": code, "message": messages[code]}


async def test_eio3_can_be_refused() -> None:
    async with (
        lean_server(allow_eio3=False) as run,
        http() as session,
        session.get(run.url + PATH, params={"transport": "polling"}) as r,
    ):
        assert r.status == 400
        assert (await r.json())["code"] == 5


@pytest.mark.parametrize("driver", ["aiohttp", "asgi"])
async def test_a_draining_server_refuses_new_sessions_with_503_and_keeps_the_open_ones(
    driver: str,
) -> None:
    """While the server drains, a handshake (polling or websocket) is answered 503 at once, so a
    balancer or the client's retry picks another node; a session opened before goes on."""
    async with lean_server(driver=driver) as run, raw_ws(run) as ws, http() as session:
        await ws_connect_v4(ws)
        run.server.draining = True
        params = {"EIO": "4", "transport": "polling"}
        async with session.get(run.url + PATH, params=params) as r:
            assert r.status == 503
            assert await r.json() == {"code": 6, "message": "Server shutting down"}
        params["transport"] = "websocket"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(run.url + PATH, params=params)
        assert refused.value.status == 503
        assert len(run.server.peers) == 1
        await ws.send_str('421["echo",1]')
        assert await recv_skipping_pings(ws) == "431[1]"


# -- CORS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        ((), "http://elsewhere.example", None),
        (("http://ok.example",), "http://ok.example", "http://ok.example"),
        (("http://ok.example",), "http://elsewhere.example", None),
        # any origin: a literal "*", never with credentials (nor reflecting "null")
        (("*",), "http://elsewhere.example", "*"),
        (("*",), "null", "*"),
    ],
)
async def test_cors(origins: tuple[str, ...], origin: str, allowed: str | None) -> None:
    async with lean_server(cors_origins=origins) as run, http() as session:
        params = {"EIO": "4", "transport": "polling"}
        async with session.get(run.url + PATH, params=params, headers={"Origin": origin}) as r:
            assert r.status == 200
            assert r.headers.get("Access-Control-Allow-Origin") == allowed
            credentials = r.headers.get("Access-Control-Allow-Credentials")
            assert credentials == ("true" if allowed not in (None, "*") else None)
        preflight = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        async with session.options(run.url + PATH, params=params, headers=preflight) as r:
            assert r.status == 204
            if allowed:
                assert r.headers["Access-Control-Allow-Origin"] == allowed
                assert "POST" in r.headers["Access-Control-Allow-Methods"]
                assert r.headers["Access-Control-Allow-Headers"] == "content-type"
            else:
                assert "Access-Control-Allow-Origin" not in r.headers
        # errors carry the CORS headers too, so that a browser can read them
        params["sid"] = "nope"
        async with session.get(run.url + PATH, params=params, headers={"Origin": origin}) as r:
            assert r.status == 400
            assert r.headers.get("Access-Control-Allow-Origin") == allowed


@pytest.mark.parametrize(
    ("origins", "origin", "status"),
    [
        ((), "http://elsewhere.example", 101),
        (("*",), "http://elsewhere.example", 101),
        (("http://ok.example",), "http://ok.example", 101),
        (("http://ok.example",), None, 101),  # not a browser
        (("http://ok.example",), "SAME", 101),  # a page of this server
        (("http://ok.example",), "http://elsewhere.example", 403),
    ],
)
async def test_websocket_origin_checked_against_cors_origins(
    origins: tuple[str, ...], origin: str | None, status: int
) -> None:
    async with lean_server(cors_origins=origins) as run, http() as session:
        headers = {} if origin is None else {"Origin": run.url if origin == "SAME" else origin}
        url = run.url.replace("http", "ws") + PATH + "?EIO=4&transport=websocket"
        if status == 101:
            async with session.ws_connect(url, headers=headers) as ws:
                assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, headers=headers)
            assert refused.value.status == status
            assert run.server.opening == 0


# -- long-polling payloads -----------------------------------------------------------------------


async def test_v4_polling_batches() -> None:
    async with lean_server() as run, http() as session:
        sid, _ = await handshake(session, run)
        body = '40\x1e421["echo","a"]\x1e422["echo","😀"]\x1e42["push",3]'.encode()
        assert await post(session, run, sid, body) == 200
        packets = await poll(session, run, sid)
        assert packets[0].startswith("40{")
        assert packets[1:] == ['431["a"]', '432["😀"]', '42["pushed",3]']


async def test_v4_poll_drains_everything_queued() -> None:
    async with lean_server() as run, http() as session:
        sid, _ = await handshake(session, run)
        body = "\x1e".join(["40"] + [f'42{i}["echo",{i}]' for i in range(40)]).encode()
        assert await post(session, run, sid, body) == 200
        got = await poll(session, run, sid)
        assert got[1:] == [f"43{i}[{i}]" for i in range(40)]


@pytest.mark.parametrize("eio", [4, 3])
async def test_poll_caps_packets_when_asked(eio: int) -> None:
    async with lean_server(max_poll_packets=16) as run, http() as session:
        sid, _ = await handshake(session, run, eio)
        packets = [f'42{i}["echo",{i}]' for i in range(40)]
        body = "\x1e".join(["40", *packets]).encode() if eio == 4 else v3_payload(*packets)
        assert await post(session, run, sid, body) == 200
        got: list[str] = []
        while len(got) < 40 + (eio == 4):
            batch = await poll(session, run, sid, eio)
            assert len(batch) <= 16
            got += batch
        assert [p for p in got if p.startswith("43")] == [f"43{i}[{i}]" for i in range(40)]


async def test_poll_response_stops_at_the_byte_limit() -> None:
    async with lean_server(max_http_buffer_size=10_000) as run, http() as session:
        sid, _ = await handshake(session, run)
        assert await post(session, run, sid, b"40") == 200
        await poll(session, run, sid)
        await post(session, run, sid, b'42["flood",{"count":30,"size":1000}]')
        sizes: list[int] = []
        got = 0
        while got < 30:
            params = {"EIO": "4", "transport": "polling", "sid": sid}
            async with session.get(run.url + PATH, params=params) as r:
                body = await r.read()
            sizes.append(len(body))
            got += len(body.split(b"\x1e"))
        assert max(sizes) <= 10_000
        assert len(sizes) >= 3


async def test_v3_polling_counts_utf16_units() -> None:
    async with lean_server() as run, http() as session:
        sid, _ = await handshake(session, run, eio=3)
        text = "😀 é 𝄞 x"
        body = v3_payload(f'421["echo","{text}"]', "2probe", f'422["echo","{text * 50}"]')
        assert await post(session, run, sid, body, eio=3) == 200
        packets = await poll(session, run, sid, eio=3)
        assert packets == [f'431["{text}"]', "3probe", f'432["{text * 50}"]']


async def test_v3_binary_payloads() -> None:
    async with lean_server(binary_events=True) as run, http() as session:
        sid, _ = await handshake(session, run, eio=3)
        header = b'451-["bin",{"_placeholder":true,"num":0}]'
        data = b"\x04\x00\xffbytes"

        def length(n: int) -> bytes:
            return bytes(int(d) for d in str(n)) + b"\xff"

        body = b"\x00" + length(len(header)) + header + b"\x01" + length(len(data)) + data
        assert (
            await post(session, run, sid, body, eio=3, content_type="application/octet-stream")
            == 200
        )
        [peer] = run.server.peers
        await run.server.wait(lambda: len(peer.received) == 1)
        assert peer.received == [("bin", b"\x00\xffbytes")]
        # the base64 form: "b4" + base64 of the data
        b64 = "b4" + base64.b64encode(b"\x01\x02").decode()
        body = v3_payload('451-["bin",{"_placeholder":true,"num":0}]', b64)
        assert await post(session, run, sid, body, eio=3) == 200
        await run.server.wait(lambda: len(peer.received) == 2)
        assert peer.received[1] == ("bin", b"\x01\x02")


async def test_v4_polling_base64_binary() -> None:
    async with lean_server(binary_events=True) as run, http() as session:
        sid, _ = await handshake(session, run)
        body = b'40\x1e451-1["bin",{"_placeholder":true,"num":0}]\x1ebAQID'
        assert await post(session, run, sid, body) == 200
        packets = await poll(session, run, sid)
        assert packets[1] == '431[{"type":"bytes","len":3,"text":"\\u0001\\u0002\\u0003"}]'


async def test_post_too_large_closes_session() -> None:
    async with lean_server(max_http_buffer_size=1000) as run, http() as session:
        sid, _ = await handshake(session, run)
        assert await post(session, run, sid, b"40") == 200
        assert await post(session, run, sid, b"4" + b"x" * 2000) == 413
        await run.server.wait(lambda: len(run.server.closed) == 1)
        assert sid not in run.transport.engine.sockets


async def test_overlapping_polls_close_session() -> None:
    async with lean_server() as run, http() as session:
        sid, _ = await handshake(session, run)
        assert await post(session, run, sid, b"40") == 200
        assert (await poll(session, run, sid))[0].startswith("40{")
        params = {"EIO": "4", "transport": "polling", "sid": sid}

        async def get() -> tuple[int, str]:
            async with session.get(run.url + PATH, params=params) as r:
                return r.status, await r.text()

        # one of them parks, the other one overlaps it: both end, the session with them
        results = await asyncio.wait_for(asyncio.gather(get(), get()), TIMEOUT)
        assert sorted(results) == [(200, "1"), (400, '{"code":3,"message":"Bad request"}')]
        await run.server.wait(lambda: len(run.server.closed) == 1)


# -- upgrade -------------------------------------------------------------------------------------


@pytest.mark.parametrize("eio", [4, 3])
async def test_upgrade_steps(eio: int) -> None:
    async with lean_server() as run, http() as session:
        sid, _ = await handshake(session, run, eio=eio)
        if eio == 4:
            assert await post(session, run, sid, b"40") == 200
            assert (await poll(session, run, sid))[0].startswith("40{")
        parked = asyncio.ensure_future(poll(session, run, sid, eio=eio))
        async with raw_ws(run, eio=eio, sid=sid) as ws:
            await ws.send_str("2probe")
            assert await recv(ws) == "3probe"
            assert await asyncio.wait_for(parked, TIMEOUT) == ["6"]  # the pending GET ends
            await ws.send_str("5")
            await ws.send_str('427["echo","via ws"]')
            assert await recv(ws) == '437["via ws"]'
            # long-polling is over for this session
            assert (
                await post(session, run, sid, b"6" if eio == 4 else v3_payload("6"), eio=eio) == 400
            )
        await run.server.wait(lambda: len(run.server.closed) == 1)


async def test_upgrade_timeout_keeps_polling() -> None:
    async with lean_server(upgrade_timeout=0.2) as run, http() as session:
        sid, _ = await handshake(session, run)
        async with raw_ws(run, sid=sid) as ws:
            assert await until_closed(ws) == []
        assert await post(session, run, sid, b'40\x1e421["echo",1]') == 200
        packets = await poll(session, run, sid)
        assert packets[1:] == ["431[1]"]


# -- Socket.IO packets ---------------------------------------------------------------------------


async def test_other_namespace_refused_v4() -> None:
    async with lean_server() as run, raw_ws(run) as ws:
        await recv(ws)
        await ws.send_str("40/admin,")
        assert await recv(ws) == '44/admin,{"message":"Invalid namespace"}'
        await ws.send_str('42/admin,["echo",1]')  # ignored
        assert not run.server.peers
        await ws.send_str("40")
        assert (await recv(ws)).startswith("40{")
        assert len(run.server.peers) == 1


async def test_other_namespace_refused_v3() -> None:
    async with lean_server() as run, raw_ws(run, eio=3) as ws:
        await recv(ws)
        assert await recv(ws) == "40"
        await ws.send_str("40/admin?x=1")
        assert await recv(ws) == '44/admin,"Invalid namespace"'


async def test_refused_connection_raw() -> None:
    async with lean_server(refuse=True, connect_timeout=0.3) as run:
        async with raw_ws(run) as ws:
            await recv(ws)
            await ws.send_str("40")
            assert await recv(ws) == '44{"message":"refused"}'
            assert await until_closed(ws) == []  # no CONNECT follows: closed after a while
        async with raw_ws(run, eio=3) as ws:
            await recv(ws)
            assert await recv(ws) == '44"refused"'
        assert not run.server.peers and not run.server.closed


async def test_connect_timeout() -> None:
    async with lean_server(connect_timeout=0.2) as run, raw_ws(run) as ws:
        await recv(ws)
        assert await until_closed(ws) == []
        assert not run.server.peers


async def test_client_namespace_disconnect_then_reconnect() -> None:
    async with lean_server() as run, raw_ws(run) as ws:
        await ws_connect_v4(ws)
        await ws.send_str("41")
        await run.server.wait(lambda: len(run.server.closed) == 1)
        await ws.send_str("40")
        assert (await recv_skipping_pings(ws)).startswith("40{")
        await ws.send_str('421["echo",2]')
        assert await recv_skipping_pings(ws) == "431[2]"
        assert len(run.server.peers) == 2
    await run.server.wait(lambda: len(run.server.closed) == 2)


@pytest.mark.parametrize(
    ("depth", "limit", "ack"),
    [(1100, None, "1"), (100_000, None, "1"), (1100, 64, "1"), (60, 50, "")],
)
async def test_deep_json_closes_socket(depth: int, limit: int | None, ack: str) -> None:
    # beyond what orjson reads, or too deep and no acknowledgement to carry an error: closed
    async with lean_server(max_json_depth=limit) as run:
        async with raw_ws(run) as ws:
            await ws_connect_v4(ws)
            await ws.send_str(f'42{ack}["echo",' + "[" * depth + "]" * depth + "]")
            assert await until_closed(ws) == []
        await run.server.wait(lambda: len(run.server.closed) == 1)
        assert run.server.peers[0].received == []
        # the server goes on; data nested within the limit passes
        async with raw_ws(run) as ws:
            await ws_connect_v4(ws)
            nested = "[" * 40 + "]" * 40
            await ws.send_str(f'421["echo",{nested}]')
            assert await recv_skipping_pings(ws) == f"431[{nested}]"


@pytest.mark.parametrize("polling", [False, True])
async def test_deep_json_with_ack_gets_easyrtc_error(polling: bool) -> None:
    async with lean_server() as run:
        deep = "[" * 65 + "]" * 65
        if polling:
            async with http() as session:
                sid, _ = await handshake(session, run)
                assert await post(session, run, sid, b"40") == 200
                await poll(session, run, sid)
                packet = f'427["echo",{deep}]\x1e428["echo",1]'
                assert await post(session, run, sid, packet.encode()) == 200
                replies = await poll(session, run, sid)
                still_open = not run.server.closed
        else:
            async with raw_ws(run) as ws:
                await ws_connect_v4(ws)
                await ws.send_str(f'427["echo",{deep}]')
                await ws.send_str('428["echo",1]')
                replies = [await recv_skipping_pings(ws), await recv_skipping_pings(ws)]
                still_open = not run.server.closed
        assert replies[0].startswith("437[")
        [error] = json.loads(replies[0][3:])
        assert error["msgType"] == "error"
        assert error["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE"
        assert replies[1] == "438[1]"  # the socket goes on
        assert run.server.peers[0].received == [("echo", 1)]
        assert still_open


async def test_deep_json_within_orjson_limits_passes_when_unlimited() -> None:
    async with lean_server(max_json_depth=None) as run, raw_ws(run) as ws:
        await ws_connect_v4(ws)
        for depth in (200, 600):  # orjson reads it; writing falls back to the standard library
            nested = "[" * depth + "]" * depth
            await ws.send_str(f'421["echo",{nested}]')
            assert await recv_skipping_pings(ws) == f"431[{nested}]"


@pytest.mark.parametrize(
    "packet",
    [
        "42not json",
        '42{"a":1}',
        "42[]",
        "42[1,2]",
        "4",
        "47",
        "44{}",
        '43x["a"]',
        '451-["echo",1]',  # attachments announced, text arrives instead
        '4599-["echo",1]',
        "9",
        "",
    ],
)
async def test_garbage_closes_socket(packet: str) -> None:
    async with lean_server() as run:
        async with raw_ws(run) as ws:
            await ws_connect_v4(ws)
            await ws.send_str(packet)
            if packet.startswith("451-"):
                await ws.send_str('421["echo",1]')
            assert "431[1]" not in await until_closed(ws)
        await run.server.wait(lambda: len(run.server.closed) == 1)


async def test_binary_frames_v4_and_v3() -> None:
    async with lean_server(binary_events=True) as run:
        async with raw_ws(run) as ws:
            await ws_connect_v4(ws)
            await ws.send_str('451-2["bin",{"_placeholder":true,"num":0}]')
            await ws.send_bytes(b"\x00raw")
            assert json.loads((await recv_skipping_pings(ws))[3:]) == [
                {"type": "bytes", "len": 4, "text": "\x00raw"}
            ]
        async with raw_ws(run, eio=3) as ws:
            await recv(ws)
            assert await recv(ws) == "40"
            await ws.send_str(
                '452-3["bin",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
            )
            await ws.send_bytes(b"\x04first")
            await ws.send_bytes(b"\x04second")
            assert json.loads((await recv(ws))[3:])[0]["text"] == "first"


async def test_server_errors_are_contained_and_acks_sent_once() -> None:
    async with lean_server() as run, raw_ws(run) as ws:
        await ws_connect_v4(ws)
        await ws.send_str('421["boom",1]')
        await ws.send_str('422["ack2",1]')
        await ws.send_str('423["echo",3]')
        assert await recv_skipping_pings(ws) == "432[1]"
        assert await recv_skipping_pings(ws) == "433[3]"


async def test_a_message_whose_handling_waits_keeps_its_place() -> None:
    # messages after one whose handler suspends wait for it: answered in the order sent
    async with lean_server() as run, raw_ws(run) as ws:
        await ws_connect_v4(ws)
        events = ["slow", "echo", "echo", "slow", "slow", "echo"]
        for i, event in enumerate(events):
            await ws.send_str(f'42{i}["{event}",{i}]')
        acks = [await recv_skipping_pings(ws) for _ in events]
        assert acks == [f"43{i}[{'null' if e == 'slow' else i}]" for i, e in enumerate(events)]


async def test_websocket_pings_are_answered_and_close_codes_tell_the_reason() -> None:
    async with lean_server() as run, http() as session:
        params = {"EIO": "4", "transport": "websocket"}
        url = run.url + PATH
        async with session.ws_connect(url, params=params, autoping=False) as ws:
            await ws_connect_v4(ws)
            await ws.ping(b"are you there")
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"are you there")
            await ws.close(code=1001)
            assert ws.close_code == 1000  # the server's answer to a close frame
        async with session.ws_connect(url, params=params) as ws:
            await ws_connect_v4(ws)
            await ws.close(code=4000)
        await run.server.wait(lambda: len(run.server.closed) == 2)
    reasons = [peer.link.engine_socket.close_reason for peer in run.server.closed]
    assert reasons == ["client close", "transport close"]


async def test_fragmented_messages_are_joined_and_broken_frames_close_with_1002() -> None:
    async with lean_server() as run:
        reader, writer = await _raw_websocket(run)
        writer.write(_masked_frame("40"))
        writer.write(_masked_frame('421["echo",', fin=False))
        writer.write(_masked_frame("1]", opcode=0))
        async with asyncio.timeout(TIMEOUT):
            await reader.readuntil(b"431[1]")  # the two fragments, one message
            writer.write(_masked_frame("1", opcode=0))  # a continuation of nothing
            rest = await reader.read()  # until the server closes the connection
        assert rest.endswith(b"\x88\x02\x03\xea")  # a close frame: 1002, protocol error
        writer.close()
        await run.server.wait(lambda: len(run.server.closed) == 1)
    assert run.server.closed[0].link.engine_socket.close_reason == "transport error"


async def _raw_websocket(run: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket opened by hand (``Engine.IO`` 4), past the server's 101 and open packet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_acks_carry_the_event_ack_id_as_a_number() -> None:
    """The plain ack (encoded once) and any other reply go back under the event's ack id,
    written as a number ("007" as 7), as socket.io's own server writes it."""
    async with lean_server() as run, raw_ws(run) as ws:
        await ws_connect_v4(ws)
        await ws.send_str('427["echo",{"msgType":"ack"}]')
        assert await recv_skipping_pings(ws) == '437[{"msgType":"ack"}]'
        await ws.send_str('42007["echo",{"msgType":"ack"}]')
        assert await recv_skipping_pings(ws) == '437[{"msgType":"ack"}]'
        await ws.send_str('420["echo",{"msgType":"ack","msgData":null}]')
        assert await recv_skipping_pings(ws) == '430[{"msgType":"ack","msgData":null}]'
        await ws.send_str('429007199254740993["echo",["ack"]]')
        assert await recv_skipping_pings(ws) == '439007199254740993[["ack"]]'


class _FailingWrites:
    """A connection whose writes fail (a bug or a broken transport), otherwise open."""

    def write(self, data: bytes) -> None:
        raise OSError("write failed on purpose")

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


async def test_a_failing_write_does_not_hold_back_other_sockets() -> None:
    """The frames of one pass of the loop go out together; a socket whose write fails costs
    only itself: the next socket still gets its frame, and the failed one later frames."""
    async with lean_server() as run, raw_ws(run) as broken, raw_ws(run) as ws:
        await ws_connect_v4(broken)
        await ws_connect_v4(ws)
        await run.server.wait(lambda: len(run.server.open_peers) == 2)
        link = run.server.peers[0].link
        assert isinstance(link, SocketLink)
        conn = link.engine_socket.connection
        assert isinstance(conn, AiohttpWebSocket)
        real = conn.transport
        conn.transport = _FailingWrites()  # type: ignore[assignment]
        try:
            await ws.send_str('42["bcast","one"]')  # to the broken socket first, then to ws
            assert await recv_skipping_pings(ws) == '42["bcast","one"]'
        finally:
            conn.transport = real
        await ws.send_str('42["bcast","two"]')
        assert await recv_skipping_pings(ws) == '42["bcast","two"]'
        assert await recv_skipping_pings(broken) == '42["bcast","two"]'


# -- heartbeats ------------------------------------------------------------------------------------


async def test_v4_ping_timeout() -> None:
    async with lean_server(ping_interval=0.2, ping_timeout=0.3) as run:
        async with raw_ws(run) as ws:
            await ws_connect_v4(ws)
            assert await until_closed(ws) == ["2"]  # one ping, never answered
        await run.server.wait(lambda: len(run.server.closed) == 1)
        assert not run.transport.engine.sockets


async def test_v4_pongs_keep_socket_open() -> None:
    async with lean_server(ping_interval=0.1, ping_timeout=1.0) as run, raw_ws(run) as ws:
        await ws_connect_v4(ws)
        for _ in range(5):
            assert await recv(ws) == "2"
            await ws.send_str("3")
        await ws.send_str('421["echo","alive"]')
        assert await recv_skipping_pings(ws) == '431["alive"]'
        assert not run.server.closed


async def test_v3_silent_client_times_out() -> None:
    async with lean_server(ping_interval=0.2, ping_timeout=0.2) as run:
        async with raw_ws(run, eio=3) as ws:
            await recv(ws)
            assert await recv(ws) == "40"
            assert await until_closed(ws) == []
        await run.server.wait(lambda: len(run.server.closed) == 1)


async def test_v3_client_pings_get_pongs() -> None:
    async with lean_server(ping_interval=0.5, ping_timeout=0.5) as run, raw_ws(run, eio=3) as ws:
        await recv(ws)
        assert await recv(ws) == "40"
        for _ in range(4):  # well past ping_interval + ping_timeout in all
            await ws.send_str("2")
            assert await recv(ws) == "3"
            await asyncio.sleep(0.3)  # the client's own ping interval: time is what is tested
        assert not run.server.closed


# -- limits --------------------------------------------------------------------------------------


async def test_websocket_message_too_big() -> None:
    async with lean_server(max_http_buffer_size=1000) as run:
        async with raw_ws(run) as ws:
            await ws_connect_v4(ws)
            await ws.send_str('42["echo","' + "x" * 2000 + '"]')
            await until_closed(ws)
            assert ws.close_code == 1009
        await run.server.wait(lambda: len(run.server.closed) == 1)


def _masked_frame(text: str, *, fin: bool = True, opcode: int = 1) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + mask + masked


async def test_slow_consumer_is_closed() -> None:
    async with lean_server(max_send_buffer=256 * 1024) as run:
        # a websocket client that stops reading: a raw socket with a tiny read buffer
        reader, writer = await asyncio.open_connection("127.0.0.1", run.port, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(_masked_frame("40"))
        writer.write(_masked_frame('42["flood",{"count":3000,"size":32000}]'))
        await writer.drain()
        try:
            await run.server.wait(lambda: len(run.server.closed) == 1)
        finally:
            writer.close()
        link = run.server.peers[0].link
        assert isinstance(link, SocketLink)
        assert link.engine_socket.close_reason == "slow consumer"


BULK_TIMEOUT = 120.0
"""Seconds for a bulk transfer to arrive: a bound on a hang, not a speed test."""


async def test_one_large_frame_is_not_a_backlog() -> None:
    # one frame bigger than the limit, to a client that has not read it yet: delivered, not closed
    async with lean_server(max_send_buffer=64 * 1024) as run:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel takes little
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
        writer.write(_masked_frame('42["flood",{"count":1,"size":20000000}]'))
        await writer.drain()
        await run.server.wait(lambda: bool(run.server.peers and run.server.peers[0].received))
        received = 0
        try:
            # a bound on a hang: 20 MB through a 4 KB receive buffer on a loaded machine
            async with asyncio.timeout(BULK_TIMEOUT):
                while received < 20_000_000:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    received += len(chunk)
        finally:
            writer.close()
        assert received > 20_000_000
        assert run.server.closed == []


async def test_slow_polling_consumer_is_closed() -> None:
    async with lean_server(max_send_buffer=64 * 1024) as run, http() as session:
        sid, _ = await handshake(session, run)
        body = b'40\x1e42["flood",{"count":100,"size":1000}]'
        assert await post(session, run, sid, body) == 200  # and never polls
        await run.server.wait(lambda: len(run.server.closed) == 1)
        link = run.server.peers[0].link
        assert isinstance(link, SocketLink)
        assert link.engine_socket.close_reason == "slow consumer"
        assert sid not in run.transport.engine.sockets


async def test_shutdown_closes_everything() -> None:
    async with lean_server() as run, http() as session, raw_ws(run) as ws:
        await ws_connect_v4(ws)
        sid, _ = await handshake(session, run)
        assert await post(session, run, sid, b"40") == 200
        await poll(session, run, sid)
        parked = asyncio.ensure_future(poll(session, run, sid))
        await run.server.wait(lambda: len(run.server.peers) == 2)
        await run.transport.shutdown()
        assert await until_closed(ws) == []
        assert await asyncio.wait_for(parked, TIMEOUT) == ["1"]
        assert len(run.server.closed) == 2
