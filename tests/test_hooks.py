"""Server hooks and the push API change what real socket.io clients see."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import socketio

from easyrtc_server.hooks import AuthRequest, Hooks, JoinPhase
from easyrtc_server.options import Options
from easyrtc_server.protocol import control
from easyrtc_server.protocol.errors import EasyRtcError, ErrorCode
from easyrtc_server.protocol.model import Connection, Field, Peer
from easyrtc_server.server import EasyRtcServer
from easyrtc_server.transport import SharedEvent
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
        answers: list[Any] = []  # the stock server has no such message: no answer, no dialog
        await a.sio.emit("easyrtcMsg", {"msgType": "other"}, callback=answers.append)
        assert (await a.cmd("whoami"))["msgData"] == {"easyrtcid": a.easyrtcid}
        assert answers == []  # the command after it was answered: handled in order
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
        # a's socket delivers in order: once this marker arrives, any announcement would have too
        await server.send_message("marker", easyrtcid=a.easyrtcid)
        assert (await a.next_msg())["msgType"] == "marker"
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


# -- decisions answered while the socket closes, and the hooks' inputs -------------------------


class FakeLink:
    """A transport link that records what the server pushes to it."""

    remote_address = "127.0.0.1"
    transport = "websocket"
    close_reason = ""

    def __init__(self) -> None:
        self.pushed: list[dict[str, Any]] = []

    async def send(self, event: str, data: Any) -> None:
        self.pushed.append(data)

    async def send_shared(self, event: SharedEvent, value: Any) -> None:
        await self.send(event.event, event.data_for(value))

    async def close(self) -> None:
        pass


class Socket:
    """One socket opened on ``server`` through a FakeLink, with the acks it got."""

    def __init__(self, server: EasyRtcServer, peer: Peer, link: FakeLink) -> None:
        self.server, self.peer, self.link = server, peer, link
        self.acks: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, server: EasyRtcServer) -> Socket:
        link = FakeLink()
        peer = await server.open(link)
        assert peer is not None
        return cls(server, peer, link)

    async def _ack(self, body: Any) -> None:
        self.acks.append(body)

    async def send(self, event: str, data: Any) -> None:
        await self.server.receive(self.peer, event, data, self._ack)

    async def send_shared(self, event: SharedEvent, value: Any) -> None:
        await self.send(event.event, event.data_for(value))

    async def login(self, **msg_data: Any) -> dict[str, Any]:
        await self.send("easyrtcAuth", _login(**msg_data))
        assert self.acks[-1]["msgType"] == "token", self.acks[-1]
        return self.acks[-1]


class Gate(Hooks):
    """Stock hooks, except that ``event`` waits for ``release`` once it has been entered."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.armed = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.phases: list[JoinPhase] = []

    async def _wait(self, event: str) -> None:
        if self.armed and event == self.event and not self.entered.is_set():
            self.entered.set()
            await self.release.wait()

    async def authenticate(self, peer: Peer, request: AuthRequest) -> None:
        await self._wait("authenticate")

    async def room_create(self, peer: Peer, app_name: str, room_name: str) -> None:
        await self._wait("room_create")

    async def room_join(
        self, peer: Peer, app_name: str, room_name: str, parameter: Any, phase: JoinPhase
    ) -> None:
        self.phases.append(phase)
        await self._wait("room_join")

    async def authenticated(self, conn: Connection) -> None:
        await self._wait("authenticated")

    async def ice_servers(self, conn: Connection) -> list[dict[str, Any]]:
        await self._wait("ice_servers")
        return await super().ice_servers(conn)

    async def server_message(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any]:
        await self._wait("server_message")
        return {"msgType": "answer"}

    async def command(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any]:
        await self._wait("command")
        return {"msgType": "answer"}


ROOM_X = {"x": {"roomName": "x"}}

# (hook that waits, whether the socket logs in first, the event it sends while the hook waits)
HOOKED_EVENTS = [
    ("authenticate", False, ("easyrtcAuth", _login(roomJoin=ROOM_X))),
    ("room_create", False, ("easyrtcAuth", _login(roomJoin=ROOM_X))),
    ("room_join", False, ("easyrtcAuth", _login(roomJoin=ROOM_X))),
    ("authenticated", False, ("easyrtcAuth", _login(roomJoin=ROOM_X))),
    ("ice_servers", False, ("easyrtcAuth", _login(roomJoin=ROOM_X))),
    ("room_create", True, ("easyrtcCmd", {"msgType": "roomJoin", "msgData": {"roomJoin": ROOM_X}})),
    ("room_join", True, ("easyrtcCmd", {"msgType": "roomJoin", "msgData": {"roomJoin": ROOM_X}})),
    ("ice_servers", True, ("easyrtcCmd", {"msgType": "getIceConfig", "msgData": {}})),
    ("server_message", True, ("easyrtcMsg", {"msgType": "hello"})),
    ("command", True, ("easyrtcCmd", {"msgType": "custom"})),
]


@pytest.mark.parametrize(
    ("hook", "logged_in", "event"),
    HOOKED_EVENTS,
    ids=[f"{hook}-{event[1]['msgType']}" for hook, _, event in HOOKED_EVENTS],
)
async def test_socket_closed_while_a_hook_runs_changes_nothing(
    hook: str, logged_in: bool, event: tuple[str, dict[str, Any]]
) -> None:
    gate = Gate(hook)
    # each member-list change pushed at once: the close's own delta is out before the count
    server = EasyRtcServer(Options(room_update_tick=0), hooks=gate)
    witness = await Socket.open(server)
    await witness.login(roomJoin={"x": {"roomName": "x"}, "default": {"roomName": "default"}})
    if hook == "room_create":  # x must not exist yet for the hook to run
        await witness.send("easyrtcCmd", {"msgType": "roomLeave", "msgData": {"roomLeave": ROOM_X}})
    sock = await Socket.open(server)
    if logged_in:
        await sock.login()
    acks_before = len(sock.acks)

    gate.armed = True
    task = asyncio.create_task(sock.send(*event))
    await asyncio.wait_for(gate.entered.wait(), TIMEOUT)
    await server.close(sock.peer)
    pushed_at_close = len(witness.link.pushed)
    gate.release.set()
    await asyncio.wait_for(task, TIMEOUT)

    assert len(sock.acks) == acks_before  # no reply to a closed socket
    assert witness.link.pushed[pushed_at_close:] == []  # nobody hears of it afterwards
    assert sock.peer.easyrtcid not in server.core.peers
    assert sock.peer.connection is None
    assert all(sock.peer.easyrtcid not in app.connections for app in server.core.apps.values())
    assert server.occupants("default", "default") == [witness.peer.easyrtcid]
    room_x = server.core.apps["default"].rooms.get("x")
    if hook == "room_create":
        assert room_x is None  # never created
    else:
        assert room_x is not None and list(room_x.members) == [witness.peer.easyrtcid]


async def test_room_join_is_told_whether_it_runs_at_login_or_on_room_join() -> None:
    gate = Gate("none")
    server = EasyRtcServer(hooks=gate)
    sock = await Socket.open(server)
    await sock.login()
    await sock.send("easyrtcCmd", {"msgType": "roomJoin", "msgData": {"roomJoin": ROOM_X}})
    assert gate.phases == [JoinPhase.LOGIN, JoinPhase.ROOM_JOIN]


class Rewriter(Hooks):
    """Writes whatever the test asks into the login request."""

    def __init__(self, **changes: Any) -> None:
        self.changes = changes
        self.app_name_given: list[bool] = []

    async def authenticate(self, peer: Peer, request: AuthRequest) -> None:
        self.app_name_given.append(request.app_name_given)
        for name, value in self.changes.items():
            setattr(request, name, value)


async def test_authenticate_hook_knows_whether_the_application_was_named() -> None:
    hooks = Rewriter()
    server = EasyRtcServer(hooks=hooks)
    await (await Socket.open(server)).login()
    await (await Socket.open(server)).login(applicationName="default")
    assert hooks.app_name_given == [False, True]


@pytest.mark.parametrize(
    "changes",
    [
        {"username": "x" * 65},
        {"username": 7},
        {"app_name": "no spaces allowed"},
        {"app_name": None},
        {"rooms": {"bad room!": None}},
        {"rooms": {"ok": "not an object"}},
        {"rooms": ["default"]},
        {"rooms": {f"r{i}": None for i in range(51)}},
    ],
    ids=repr,
)
async def test_values_a_hook_writes_are_checked_like_a_clients(changes: dict[str, Any]) -> None:
    server = EasyRtcServer(hooks=Rewriter(**changes))
    sock = await Socket.open(server)
    await sock.send("easyrtcAuth", _login())
    assert sock.acks[-1]["msgData"]["errorCode"] == "LOGIN_BAD_AUTH"
    assert server.occupants("default", "default") == []
    assert list(server.core.apps) == ["default"]


async def test_values_a_hook_writes_are_used_when_proper() -> None:
    server = EasyRtcServer(hooks=Rewriter(username="carol", app_name="other", rooms={"r": None}))
    token = await (await Socket.open(server)).login(username="alice")
    data = token["msgData"]
    assert data["application"]["applicationName"] == "other"
    assert data["roomData"]["r"]["clientList"][data["easyrtcid"]]["username"] == "carol"


class MoreIce(Hooks):
    async def ice_servers(self, conn: Connection) -> list[dict[str, Any]]:
        servers = await super().ice_servers(conn)
        servers.append({"urls": "turn:extra.example.org"})
        servers[0]["urls"] = ["stun:changed.example.org"]
        return servers


async def test_ice_servers_hook_can_change_its_list_without_changing_the_default() -> None:
    server = EasyRtcServer(hooks=MoreIce())
    first = (await (await Socket.open(server)).login())["msgData"]["iceConfig"]["iceServers"]
    second = (await (await Socket.open(server)).login())["msgData"]["iceConfig"]["iceServers"]
    assert first == second
    assert len(second) == len(Options().app_ice_servers) + 1
    assert server.options.app_ice_servers == Options().app_ice_servers


def test_hooks_are_bound_to_their_server() -> None:
    hooks = Hooks()
    with pytest.raises(RuntimeError):
        _ = hooks.server
    server = EasyRtcServer(hooks=hooks)
    assert hooks.server is server
    with pytest.raises(RuntimeError):
        EasyRtcServer(hooks=hooks)


async def test_each_refusal_is_logged_once_with_client_text_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = EasyRtcServer(hooks=RoomRules())
    sock, other = await Socket.open(server), await Socket.open(server)
    await sock.login()
    await other.login()
    caplog.clear()
    with caplog.at_level("INFO", logger="easyrtc_server"):
        await sock.send("easyrtcCmd", {"msgType": "roomJoin", "msgData": {"roomJoin": ROOM_X}})
        # another client: one client's refusals are logged once per 10 s (logsafe.py)
        await other.send("easyrtcMsg", {"msgType": "evil\n" + "x" * 500, "targetRoom": "no where"})
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "MSG_REJECT_BAD_ROOM" in lines[0] and sock.peer.easyrtcid in lines[0]
    assert "MSG_REJECT_TARGET_ROOM" in lines[1]
    assert "\n" not in lines[1] and len(lines[1]) < 200
