"""One client's data can never stop other clients' replies (the room-lockout attack)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from easyrtc_server.hooks import Hooks
from easyrtc_server.options import Options
from easyrtc_server.protocol.model import Connection
from easyrtc_server.server import EasyRtcServer
from support.client import TIMEOUT, Client
from support.ours import running_server, serving
from support.rawsocket import connected_socket

AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
DEEP_TYPE = "[" * 1000 + "1" + "]" * 1000  # about 2 KB: orjson and json both fail to encode it
# The transport answers JSON deeper than max_json_depth (64) itself (MSG_REJECT_BAD_STRUCTURE,
# tests/integration/test_hostile_packets.py); with orjson's own limit the core's checks are tested.
CORE_CHECKS = {"max_json_depth": 0}


async def _raw_login(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await connected_socket(session, url)
    await ws.send_str("421" + json.dumps(["easyrtcAuth", AUTH]))
    reply = await ws.receive_str(timeout=TIMEOUT)
    assert reply.startswith("431") and '"token"' in reply, reply
    return ws


async def _ack(ws: aiohttp.ClientWebSocketResponse, ack_id: int) -> Any:
    prefix = f"43{ack_id}"
    while True:
        text = await ws.receive_str(timeout=TIMEOUT)
        if text.startswith(prefix):
            return json.loads(text[len(prefix) :])[0]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_deeply_nested_presence_cannot_lock_a_room(transport: str) -> None:
    async with running_server(CORE_CHECKS) as url, aiohttp.ClientSession() as session:
        attacker = await _raw_login(session, url)
        await attacker.send_str(
            '422["easyrtcCmd",{"msgType":"setPresence","msgData":{"setPresence":'
            '{"show":"chat","type":' + DEEP_TYPE + "}}}]"
        )
        refused = await _ack(attacker, 2)
        assert refused["msgData"]["errorCode"] == "MSG_REJECT_BAD_SIZE"
        # a victim still logs in to the attacker's room and joins rooms with it
        victim = Client(transport)
        await victim.connect(url)
        token = await victim.login()
        assert len(token["msgData"]["roomData"]["default"]["clientList"]) == 2
        joined = await victim.cmd(
            "roomJoin", msgData={"roomJoin": {"default": {"roomName": "default"}}}
        )
        assert joined["msgType"] == "roomData"
        await victim.sio.disconnect()
        await attacker.close()


async def test_login_with_deeply_nested_presence_is_refused_and_others_unaffected() -> None:
    async with running_server(CORE_CHECKS) as url, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        )
        await ws.receive_str(timeout=TIMEOUT)
        await ws.send_str("40")
        await ws.receive_str(timeout=TIMEOUT)
        await ws.send_str(
            '421["easyrtcAuth",{"msgType":"authenticate","msgData":{"apiVersion":"1.1.1-beta",'
            '"setPresence":{"show":"chat","type":' + DEEP_TYPE + "}}}]"
        )
        refused = await _ack(ws, 1)
        assert refused["msgData"]["errorCode"] == "MSG_REJECT_BAD_SIZE"
        victim = Client()
        await victim.connect(url)
        token = await victim.login()
        assert list(token["msgData"]["roomData"]["default"]["clientList"]) == [victim.easyrtcid]
        await victim.sio.disconnect()
        await ws.close()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


class _StoresUnencodableData(Hooks):
    """Server code that stores a value no encoder can write (what bounds cannot prevent)."""

    async def authenticated(self, conn: Connection) -> None:
        if conn.username == "bad":
            conn.presence["type"] = _nested(1000)


async def test_a_reply_that_cannot_be_encoded_becomes_an_error_reply() -> None:
    server = EasyRtcServer(Options(), hooks=_StoresUnencodableData())
    async with serving(server) as url:
        bad = Client()
        await bad.connect(url)
        reply = await bad.call(
            "easyrtcAuth",
            {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta", "username": "bad"}},
        )
        assert reply["msgData"]["errorCode"] == "MSG_REJECT_GEN_FAIL"
        # every later reply holding that member list is answered too, never left hanging
        victim = Client()
        await victim.connect(url)
        reply = await asyncio.wait_for(
            victim.call("easyrtcAuth", {"msgType": "authenticate", "msgData": AUTH["msgData"]}),
            TIMEOUT,
        )
        assert reply["msgType"] == "error"
        assert reply["msgData"]["errorCode"] == "MSG_REJECT_GEN_FAIL"
        await asyncio.gather(bad.sio.disconnect(), victim.sio.disconnect())
