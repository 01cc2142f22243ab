"""Packets that kill the Node reference server leave ours serving everyone else."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from support.client import TIMEOUT, Client
from support.ours import running_server
from support.polling import PollingClient
from support.rawsocket import connected_socket

AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}


async def test_payload_5000_levels_deep_closes_only_its_own_socket() -> None:
    async with running_server() as url, aiohttp.ClientSession() as session:
        bystander = Client()
        await bystander.connect(url)
        await bystander.login()
        ws = await connected_socket(session, url)
        await ws.send_str("421" + json.dumps(["easyrtcAuth", AUTH]))
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("431")
        deep = '{"d":' * 5000 + "1" + "}" * 5000
        await ws.send_str(
            '422["easyrtcCmd",{"msgType":"candidate","targetEasyrtcid":"'
            + bystander.easyrtcid
            + '","msgData":'
            + deep
            + "}]"
        )
        message = await ws.receive(timeout=TIMEOUT)
        while message.type == aiohttp.WSMsgType.TEXT:  # pings or a delta; then the close
            message = await ws.receive(timeout=TIMEOUT)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        # the server goes on serving, and the closed socket left no ghost
        rooms = (await bystander.cmd("getRoomList"))["msgData"]["roomList"]
        assert rooms["default"]["numberClients"] == 1
        await bystander.sio.disconnect()


async def test_null_and_absent_payloads_get_errors() -> None:
    async with running_server() as url, aiohttp.ClientSession() as session:
        ws = await connected_socket(session, url)
        await ws.send_str('421["easyrtcAuth",null]')
        reply = await ws.receive_str(timeout=TIMEOUT)
        assert reply.startswith("431")
        assert json.loads(reply[3:])[0]["msgData"]["errorCode"] == "LOGIN_BAD_AUTH"
        ws2 = await connected_socket(session, url)
        await ws2.send_str("421" + json.dumps(["easyrtcAuth", AUTH]))
        await ws2.receive_str(timeout=TIMEOUT)
        for packet in ('422["easyrtcCmd"]', '423["easyrtcMsg",null]'):
            await ws2.send_str(packet)
            reply = await ws2.receive_str(timeout=TIMEOUT)
            while not reply.startswith("43"):
                reply = await ws2.receive_str(timeout=TIMEOUT)
            assert json.loads(reply[3:])[0]["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE"
        await asyncio.gather(ws.close(), ws2.close())


# -- transport limits (issue 8): each attack against a live server; the bystander is unaffected --


async def _bystander(url: str) -> Client:
    client = Client()
    await client.connect(url)
    await client.login()
    return client


async def _still_serves(url: str, bystander: Client, members: int) -> None:
    """The bystander is answered, and a newcomer can log in."""
    rooms = (await bystander.cmd("getRoomList"))["msgData"]["roomList"]
    assert rooms["default"]["numberClients"] == members
    newcomer = Client()
    await newcomer.connect(url)
    await newcomer.login()
    await newcomer.sio.disconnect()


async def _logged_in_ws(
    session: aiohttp.ClientSession, url: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await connected_socket(session, url)
    await ws.send_str("421" + json.dumps(["easyrtcAuth", AUTH]))
    assert (await ws.receive_str(timeout=TIMEOUT)).startswith("431")
    return ws


async def _reply(ws: aiohttp.ClientWebSocketResponse, prefix: str) -> Any:
    while True:
        text = await ws.receive_str(timeout=TIMEOUT)
        if text.startswith(prefix):
            return json.loads(text[len(prefix) :])


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    message = await ws.receive(timeout=TIMEOUT)
    while message.type == aiohttp.WSMsgType.TEXT:
        message = await ws.receive(timeout=TIMEOUT)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_deep_json_gets_bad_structure_and_the_room_stays_usable() -> None:
    async with running_server() as url, aiohttp.ClientSession() as session:
        bystander = await _bystander(url)
        ws = await _logged_in_ws(session, url)
        deep = "[" * 70 + "]" * 70
        await ws.send_str(
            '427["easyrtcCmd",{"msgType":"setPresence","msgData":{"setPresence":'
            '{"show":"chat","status":"","type":' + deep + "}}}]"
        )
        [error] = await _reply(ws, "437")
        assert error["msgType"] == "error"
        assert error["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE"
        # the attacker stays connected, and nothing was stored: every reply still encodes
        await ws.send_str('428["easyrtcCmd",{"msgType":"getRoomList"}]')
        [rooms] = await _reply(ws, "438")
        assert rooms["msgData"]["roomList"]["default"]["numberClients"] == 2
        await _still_serves(url, bystander, 2)
        await ws.close()
        await bystander.sio.disconnect()


@pytest.mark.parametrize("binary_events", [False, True])
async def test_binary_event_600_deep_closes_without_error(
    binary_events: bool, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"binary_events_enable": binary_events}
    async with running_server(options) as url, aiohttp.ClientSession() as session:
        bystander = await _bystander(url)
        attacker = PollingClient(session, url, 4)
        await attacker.login()
        await bystander.next_cmd()  # the attacker's arrival
        deep = "[" * 600 + '{"_placeholder":true,"num":0}' + "]" * 600
        body = f'451-["easyrtcCmd",{deep}]'.encode()
        assert await attacker.post_body(body) == 200  # not a 500
        removed = (await bystander.next_cmd())["msgData"]["roomData"]["default"]
        assert attacker.easyrtcid in removed["clientListDelta"]["removeClient"]
        await _still_serves(url, bystander, 1)
        await bystander.sio.disconnect()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_binary_events_refused_by_default() -> None:
    async with running_server() as url, aiohttp.ClientSession() as session:
        bystander = await _bystander(url)
        ws = await _logged_in_ws(session, url)
        await ws.send_str('451-["easyrtcCmd",{"_placeholder":true,"num":0}]')
        await _closed(ws)
        await _still_serves(url, bystander, 1)
        await bystander.sio.disconnect()


async def test_pong_flood_of_a_client_that_never_polls_is_bounded() -> None:
    # Engine.IO 3: the client pings, each pong waits in the outbox for a GET that never comes
    async with running_server() as url, aiohttp.ClientSession() as session:
        bystander = await _bystander(url)
        attacker = PollingClient(session, url, 3)
        await attacker.login()
        await bystander.next_cmd()
        body = b"1:2" * 300_000  # 900 kB of pings: 300,000 pongs if nothing stopped it
        assert await attacker.post_body(body) == 200
        removed = (await bystander.next_cmd())["msgData"]["roomData"]["default"]
        assert attacker.easyrtcid in removed["clientListDelta"]["removeClient"]
        async with session.get(url + "/socket.io/", params=attacker.params()) as r:
            assert r.status == 400  # the session is gone
        await _still_serves(url, bystander, 1)
        await bystander.sio.disconnect()


# The per-socket message rate limit (limits.py) is off where a test floods on purpose: these
# check the transport's queues and fairness, not that limit.
NO_RATE_LIMIT = {"message_rate": 0}


async def test_polling_client_behind_latency_gets_3mb_of_small_messages() -> None:
    async with running_server(NO_RATE_LIMIT) as url, aiohttp.ClientSession() as session:
        sender = await _bystander(url)
        receiver = PollingClient(session, url, 4)
        await receiver.login()
        count, text = 3000, "x" * 1000
        acked = 0

        def ack(*_reply: Any) -> None:
            nonlocal acked
            acked += 1

        for i in range(count):  # the server relays only messages that ask for an ack
            await sender.sio.emit(
                "easyrtcMsg",
                {"msgType": "chat", "targetEasyrtcid": receiver.easyrtcid, "msgData": [i, text]},
                callback=ack,
            )
        got: list[int] = []
        async with asyncio.timeout(TIMEOUT):
            while len(got) < count:
                await asyncio.sleep(0.1)  # the client's network latency between polls
                for packet in await receiver.get():
                    if packet.startswith('42["easyrtcMsg"'):
                        got.append(json.loads(packet[2:])[1]["msgData"][0])
        assert got == list(range(count))
        await sender.sio.disconnect()


async def test_slow_post_body_is_timed_out(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        running_server({"http_read_timeout": 0.5}) as url,
        aiohttp.ClientSession() as session,
    ):
        bystander = await _bystander(url)
        attacker = PollingClient(session, url, 4)
        await attacker.login()
        await bystander.next_cmd()
        host, port = urlsplit(url).netloc.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        writer.write(attacker.raw_request("POST", content_length=1000) + b"4")
        status_line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert status_line.split()[1] == b"408"
        assert time.monotonic() - started < 3
        writer.close()
        removed = (await bystander.next_cmd())["msgData"]["roomData"]["default"]
        assert attacker.easyrtcid in removed["clientListDelta"]["removeClient"]
        await _still_serves(url, bystander, 1)
        await bystander.sio.disconnect()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_aborted_post_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async with running_server() as url, aiohttp.ClientSession() as session:
        attacker = PollingClient(session, url, 4)
        await attacker.login()
        host, port = urlsplit(url).netloc.split(":")
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(attacker.raw_request("POST", content_length=1000) + b"42")
        await writer.drain()
        writer.transport.abort()  # a connection reset
        async with session.get(url + "/socket.io/", params=attacker.params()) as r:
            while r.status == 200:  # until the server has noticed and ended the session
                await r.read()
                r = await session.get(url + "/socket.io/", params=attacker.params())
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_huge_post_of_tiny_packets_lets_others_in() -> None:
    async with running_server(NO_RATE_LIMIT) as url, aiohttp.ClientSession() as session:
        bystander = await _bystander(url)
        attacker = PollingClient(session, url, 4)
        await attacker.login()
        body = b"\x1e".join([b"6"] * 499_000)  # ~1 MB of noop packets
        post = asyncio.ensure_future(attacker.post_body(body))
        answered_meanwhile = 0
        while not post.done():
            await bystander.cmd("getRoomList")
            if not post.done():
                answered_meanwhile += 1
        assert await post == 200
        # without yielding, the whole POST is one stall in which nobody else is answered
        assert answered_meanwhile >= 5
        await bystander.sio.disconnect()


async def test_no_versions_in_the_server_header() -> None:
    async with running_server() as url, aiohttp.ClientSession() as session:
        for path in ("/socket.io/?EIO=4&transport=polling", "/demos/", "/nothing-here"):
            async with session.get(url + path) as r:
                server = r.headers.get("Server", "")
                assert "Python" not in server and "aiohttp" not in server, (path, server)


async def test_engineio_session_that_never_connects_is_closed_after_the_login_timeout() -> None:
    async with (
        running_server({"login_timeout": 0.5}) as url,
        aiohttp.ClientSession() as session,
    ):
        ws = await session.ws_connect(
            url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        )
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
        started = time.monotonic()
        message = await ws.receive(timeout=TIMEOUT)  # no "40": never connects, never logs in
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await ws.receive(timeout=TIMEOUT)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert time.monotonic() - started < 3
