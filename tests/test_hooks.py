"""Server hooks and the push API change what real socket.io clients see."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import socketio

from easyrtc_server import control
from easyrtc_server.errors import EasyRtcError, ErrorCode
from easyrtc_server.hooks import AuthRequest, Hooks, JoinPhase
from easyrtc_server.model import Connection, Field, Peer
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.client import TIMEOUT, Client
from support.ours import connected_clients, serving


@asynccontextmanager
async def clients(
    hooks: Hooks, count: int = 2, **options: Any
) -> AsyncIterator[tuple[EasyRtcServer, list[Client]]]:
    server = EasyRtcServer(Options.from_mapping(options), hooks=hooks)
    async with connected_clients(server, count) as made:
        yield server, made


def _login(**msg_data: Any) -> dict[str, Any]:
    return {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta", **msg_data}}


class OnlyAlice(Hooks):
    async def authenticate(self, peer: Peer, request: AuthRequest) -> None:
        if request.username != "alice":
            raise EasyRtcError(ErrorCode.LOGIN_BAD_AUTH)
        request.rooms = {"alice-room": None}


async def test_authenticate_hook_refuses_and_redirects_rooms() -> None:
    async with clients(OnlyAlice()) as (_, (alice, mallory)):
        refused = await mallory.call("easyrtcAuth", _login(username="mallory"))
        assert refused["msgData"]["errorCode"] == "LOGIN_BAD_AUTH"
        await asyncio.wait_for(mallory.disconnected.wait(), TIMEOUT)
        token = await alice.login(username="alice")
        assert list(token["msgData"]["roomData"]) == ["alice-room"]


class RoomRules(Hooks):
    async def room_create(self, peer: Peer, app_name: str, room_name: str) -> None:
        if not room_name.startswith("ok-"):
            raise EasyRtcError(ErrorCode.MSG_REJECT_BAD_ROOM)

    async def room_join(
        self, peer: Peer, app_name: str, room_name: str, parameter: Any, phase: JoinPhase
    ) -> None:
        if room_name == "ok-locked" and (parameter or {}).get("pin") != "1234":
            raise EasyRtcError(ErrorCode.MSG_REJECT_BAD_ROOM, "Wrong PIN.")


async def test_room_hooks_allow_deny_and_check_parameters() -> None:
    async with clients(RoomRules()) as (server, (a, b)):
        await a.login()
        await b.login()
        denied = await a.cmd("roomJoin", msgData={"roomJoin": {"lobby": {"roomName": "lobby"}}})
        assert denied["msgData"]["errorCode"] == "MSG_REJECT_BAD_ROOM"
        locked = {"ok-locked": {"roomName": "ok-locked", "roomParameter": {"pin": "0000"}}}
        wrong = await a.cmd("roomJoin", msgData={"roomJoin": locked})
        assert wrong["msgData"] == {"errorCode": "MSG_REJECT_BAD_ROOM", "errorText": "Wrong PIN."}
        assert "ok-locked" not in server.rooms("default")
        locked["ok-locked"]["roomParameter"] = {"pin": "1234"}
        joined = await a.cmd("roomJoin", msgData={"roomJoin": locked})
        assert joined["msgData"]["roomData"]["ok-locked"]["roomStatus"] == "join"
        refused_login = await b.call("easyrtcAuth", _login(roomJoin={"x": {"roomName": "x"}}))
        assert refused_login["msgData"]["errorCode"] == "MSG_REJECT_BAD_ROOM"


class EchoBot(Hooks):
    async def server_message(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["msgType"] == "echo":
            return {"msgType": "echoed", "msgData": msg.get("msgData")}
        return await super().server_message(conn, msg)

    async def command(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any] | None:
        if msg["msgType"] == "whoami":
            return {"msgType": "you", "msgData": {"easyrtcid": conn.easyrtcid}}
        return await super().command(conn, msg)


async def test_messages_and_commands_for_the_server() -> None:
    async with clients(EchoBot(), count=1) as (_, (a,)):
        await a.login()
        assert await a.call("easyrtcMsg", {"msgType": "echo", "msgData": [1, 2]}) == {
            "msgType": "echoed",
            "msgData": [1, 2],
        }
        unknown = await a.call("easyrtcMsg", {"msgType": "other"})
        assert unknown["msgData"]["errorCode"] == "MSG_REJECT_BAD_TYPE"
        assert (await a.cmd("whoami"))["msgData"] == {"easyrtcid": a.easyrtcid}
        assert (await a.cmd("dance"))["msgData"]["errorCode"] == "MSG_REJECT_BAD_TYPE"


class Broken(Hooks):
    async def authenticated(self, conn: Connection) -> None:
        if conn.username == "crash":
            raise RuntimeError("database down")

    async def ice_servers(self, conn: Connection) -> list[dict[str, Any]]:
        if conn.username == "noice":
            raise RuntimeError("TURN service down")
        return [{"urls": ["turn:turn.example.org"], "username": conn.easyrtcid}]


async def test_failing_hooks_refuse_cleanly_without_ghosts() -> None:
    async with clients(Broken(), count=3) as (server, (a, b, c)):
        await a.login(username="fine")
        assert (await a.cmd("getIceConfig", msgData={}))["msgData"]["iceConfig"]["iceServers"] == [
            {"urls": ["turn:turn.example.org"], "username": a.easyrtcid}
        ]
        crashed = await b.call("easyrtcAuth", _login(username="crash"))
        assert crashed["msgData"]["errorCode"] == "LOGIN_GEN_FAIL"
        no_ice = await c.call("easyrtcAuth", _login(username="noice"))
        assert no_ice["msgData"]["errorCode"] == "LOGIN_GEN_FAIL"
        await asyncio.wait_for(b.disconnected.wait(), TIMEOUT)
        assert server.occupants("default", "default") == [a.easyrtcid]
        assert a.cmds.empty()  # nobody was announced


class Recorder(Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.gone = asyncio.Event()

    async def authenticated(self, conn: Connection) -> None:
        conn.fields["tier"] = Field("gold", shared=True)

    async def room_left(self, conn: Connection, room_name: str) -> None:
        self.events.append(("left", room_name))

    async def disconnect(self, conn: Connection) -> None:
        self.events.append(("disconnect", conn.easyrtcid))
        self.gone.set()


async def test_fields_set_in_hooks_and_leave_disconnect_notifications() -> None:
    hooks = Recorder()
    async with clients(hooks, count=1) as (_, (a,)):
        token = await a.login()
        assert token["msgData"]["field"] == {"tier": {"fieldName": "tier", "fieldValue": "gold"}}
        await a.cmd("roomLeave", msgData={"roomLeave": {"default": {"roomName": "default"}}})
        await a.sio.disconnect()
        await asyncio.wait_for(hooks.gone.wait(), TIMEOUT)
    assert hooks.events == [("left", "default"), ("disconnect", a.easyrtcid)]


class NoStrangers(Hooks):
    async def connect(self, peer: Peer) -> None:
        if peer.remote_address == "127.0.0.1":
            raise EasyRtcError(ErrorCode.BANNED_IP_ADDR)


async def test_connect_hook_refuses_sockets() -> None:
    server = EasyRtcServer(hooks=NoStrangers())
    async with serving(server) as url:
        client = Client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(url)
        assert server.links == {}
        assert server.core.peers == {}


async def _next(client: Client, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while True:
        push = await client.next_cmd()
        if accept(push):
            return push


async def test_push_api_reaches_clients() -> None:
    async with clients(Hooks(), count=2) as (server, (a, b)):
        await a.login(easyrtcsid="s-1")
        await b.login()
        assert await server.send_message("notice", {"n": 1}, easyrtcid=a.easyrtcid) == 1
        direct = await a.next_msg()
        assert direct["msgType"] == "notice" and "senderEasyrtcid" not in direct
        assert await server.send_message("all", None, room="default") == 2
        assert (await b.next_msg())["targetRoom"] == "default"

        control.add_to_group(server.core.state, b.easyrtcid, "vip")
        assert await server.send_message("vip", 1, group="vip") == 1
        assert (await b.next_msg())["targetGroup"] == "vip"

        await server.set_room_field("default", "default", "topic", "WebRTC")
        field = await _next(a, lambda p: "field" in p["msgData"]["roomData"].get("default", {}))
        assert field["msgData"]["roomData"]["default"]["field"] == {
            "topic": {"fieldName": "topic", "fieldValue": "WebRTC"}
        }
        await server.set_session_field("default", "s-1", "cart", [1])
        session = await _next(a, lambda p: p["msgType"] == "sessionData")
        assert session["msgData"]["sessionData"]["field"]["cart"]["fieldValue"] == [1]
        await server.push_ice_config(a.easyrtcid)
        assert (await _next(a, lambda p: p["msgType"] == "iceConfig"))["msgData"]["iceConfig"]
        await server.send_error(a.easyrtcid, ErrorCode.SERVER_SHUTDOWN)
        error = await _next(a, lambda p: p["msgType"] == "error")
        assert error["msgData"]["errorCode"] == "SERVER_SHUTDOWN"
        assert await server.disconnect(b.easyrtcid)
        await asyncio.wait_for(b.disconnected.wait(), TIMEOUT)
        removed = await _next(a, lambda p: p["msgType"] == "roomData")
        assert (
            b.easyrtcid
            in removed["msgData"]["roomData"]["default"]["clientListDelta"]["removeClient"]
        )
