"""Connection limits against a real server: anonymous sockets time out, too many sockets are
refused, a flooding socket is throttled then closed; everyone else goes on as before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from easyrtc_server.limits import MSG_REJECT_RATE_LIMIT, Guard, TokenBucket
from easyrtc_server.options import Options
from easyrtc_server.protocol.core import Core
from easyrtc_server.server import EasyRtcServer
from easyrtc_server.transport import SharedEvent
from support.client import TIMEOUT, Client
from support.ours import running_server, serving

TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "polling"])
SERVERS = pytest.mark.parametrize(
    ("server_transport", "transport"),
    [("lean", "websocket"), ("lean", "polling"), ("python-socketio", "websocket")],
)


async def _connected(url: str, transport: str = "websocket") -> Client:
    client = Client(transport)
    await client.connect(url)
    return client


async def _error_push_then_closed(client: Client) -> str:
    """The code of the error pushed to ``client``, after which its socket is closed."""
    push = await client.next_cmd()
    assert push["msgType"] == "error", push
    await asyncio.wait_for(client.disconnected.wait(), TIMEOUT)
    return str(push["msgData"]["errorCode"])


def _room_size(reply: dict[str, Any], room: str = "default") -> int:
    return int(reply["msgData"]["roomList"][room]["numberClients"])


@SERVERS
async def test_a_socket_that_never_logs_in_gets_login_timeout_and_is_closed(
    server_transport: str, transport: str
) -> None:
    async with running_server({"login_timeout": 0.3}, transport=server_transport) as url:
        honest = await _connected(url, transport)
        await honest.login()
        idle = await _connected(url, transport)
        assert await _error_push_then_closed(idle) == "LOGIN_TIMEOUT"
        # the client that logged in at once outlived the deadline and still gets answers
        assert _room_size(await honest.cmd("getRoomList")) == 1
        await honest.sio.disconnect()


@SERVERS
async def test_connections_beyond_the_per_address_limit_are_refused(
    server_transport: str, transport: str
) -> None:
    options = {"max_connections_per_address": 2}
    async with running_server(options, transport=server_transport) as url:
        a, b = await _connected(url, transport), await _connected(url, transport)
        await a.login()
        await b.login()
        third = await _connected(url, transport)
        assert await _error_push_then_closed(third) == "LOGIN_NO_SOCKETS"
        assert _room_size(await a.cmd("getRoomList")) == 2  # the refused one left no trace
        await b.sio.disconnect()
        await asyncio.wait_for(b.disconnected.wait(), TIMEOUT)
        assert (await a.next_cmd())["msgType"] == "roomData"  # b's removal reached a
        again = await _connected(url, transport)  # the freed place can be taken
        await again.login()
        await asyncio.gather(a.sio.disconnect(), again.sio.disconnect())


async def test_connections_beyond_the_total_limit_are_refused() -> None:
    server = EasyRtcServer(Options(max_connections=1))
    async with serving(server) as url:
        first = await _connected(url)
        await first.login()
        second = await _connected(url)
        assert await _error_push_then_closed(second) == "LOGIN_NO_SOCKETS"
        assert len(server.guard.sockets) == 1 and server.guard.per_address == {"127.0.0.1": 1}
        await first.sio.disconnect()


async def test_a_draining_server_refuses_new_sockets_with_server_shutdown() -> None:
    server = EasyRtcServer(Options())
    async with serving(server) as url:
        server.guard.draining = True  # as shutdown.drain does
        late = await _connected(url)
        assert await _error_push_then_closed(late) == "SERVER_SHUTDOWN"


@TRANSPORTS
async def test_a_flooding_client_is_rate_limited_then_closed_and_its_room_mate_is_not(
    transport: str,
) -> None:
    options = {"message_burst": 5, "message_rate": 0.01, "message_refusals_before_close": 3}
    async with running_server(options) as url:
        victim, flooder = await _connected(url, transport), await _connected(url, transport)
        await victim.login()
        await flooder.login()  # 1 message of the burst of 5
        for _ in range(4):
            assert (await flooder.cmd("getRoomList"))["msgType"] == "roomList"
        refused = await flooder.cmd("getRoomList")
        assert refused["msgType"] == "error"
        assert refused["msgData"]["errorCode"] == MSG_REJECT_RATE_LIMIT
        assert "slow down" in refused["msgData"]["errorText"]
        await flooder.cmd("getRoomList")
        third = await flooder.cmd("getRoomList")  # refusal 3 of 3: answered, then closed
        assert third["msgData"]["errorCode"] == MSG_REJECT_RATE_LIMIT
        await asyncio.wait_for(flooder.disconnected.wait(), TIMEOUT)
        # the victim saw its room mate leave and is served as before
        delta = await victim.next_cmd()
        while "removeClient" not in str(delta):
            delta = await victim.next_cmd()
        assert _room_size(await victim.cmd("getRoomList")) == 1
        await victim.sio.disconnect()


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at 3


class _Link:
    remote_address = "192.0.2.1"
    transport = "websocket"
    close_reason = ""

    async def send(self, event: str, data: Any) -> None:
        pass

    async def send_shared(self, event: SharedEvent, value: Any) -> None:
        await self.send(event.event, event.data_for(value))

    async def close(self) -> None:
        pass


async def test_refusals_are_counted_per_window_before_closing() -> None:
    now = [0.0]
    options = Options(message_burst=1, message_rate=1, message_refusals_before_close=3)
    core = Core(options)
    guard = Guard(options, core.now, clock=lambda: now[0])
    peer = core.open("192.0.2.1")
    assert guard.admit(peer, _Link()) is None
    assert guard.check(peer, "easyrtcCmd", True) is None
    for step in range(2):  # two refusals, then 11 s of quiet: the window starts again
        now[0] += 0.1 * step
        out = guard.check(peer, "easyrtcCmd", True)
        assert out is not None and not out.close
    now[0] += 11.0
    assert guard.check(peer, "easyrtcCmd", True) is None  # refilled
    outs = [guard.check(peer, "easyrtcCmd", False) for _ in range(3)]
    assert [o is not None and o.close for o in outs] == [False, False, True]
    assert all(o is not None and not o.sends for o in outs)  # no ack asked, none sent
    guard.closed(peer)
    assert guard.sockets == {} and guard.per_address == {}


async def test_a_limit_of_zero_turns_it_off() -> None:
    options = Options(
        message_rate=0, max_connections=0, max_connections_per_address=0, login_timeout=0
    )
    core = Core(options)
    guard = Guard(options, core.now)
    for _ in range(50):
        peer = core.open("192.0.2.1")
        assert guard.admit(peer, _Link()) is None
        assert guard.sockets[peer.easyrtcid].timer is None
        assert all(guard.check(peer, "easyrtcCmd", True) is None for _ in range(1000))
