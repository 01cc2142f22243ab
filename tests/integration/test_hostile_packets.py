"""Packets that kill the Node reference server leave ours serving everyone else."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from support.client import TIMEOUT, Client
from support.ours import running_server

AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}


async def _raw_socket(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(
        url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    )
    assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
    await ws.send_str("40")
    assert (await ws.receive_str(timeout=TIMEOUT)).startswith("40")
    return ws


async def test_payload_5000_levels_deep_closes_only_its_own_socket() -> None:
    async with running_server() as url, aiohttp.ClientSession() as session:
        bystander = Client()
        await bystander.connect(url)
        await bystander.login()
        ws = await _raw_socket(session, url)
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
        ws = await _raw_socket(session, url)
        await ws.send_str('421["easyrtcAuth",null]')
        reply = await ws.receive_str(timeout=TIMEOUT)
        assert reply.startswith("431")
        assert json.loads(reply[3:])[0]["msgData"]["errorCode"] == "LOGIN_BAD_AUTH"
        ws2 = await _raw_socket(session, url)
        await ws2.send_str("421" + json.dumps(["easyrtcAuth", AUTH]))
        await ws2.receive_str(timeout=TIMEOUT)
        for packet in ('422["easyrtcCmd"]', '423["easyrtcMsg",null]'):
            await ws2.send_str(packet)
            reply = await ws2.receive_str(timeout=TIMEOUT)
            while not reply.startswith("43"):
                reply = await ws2.receive_str(timeout=TIMEOUT)
            assert json.loads(reply[3:])[0]["msgData"]["errorCode"] == "MSG_REJECT_BAD_STRUCTURE"
        await asyncio.gather(ws.close(), ws2.close())
