"""Real Node socket.io clients (4.x on Engine.IO 4, 2.4 on Engine.IO 3) against LeanTransport."""

from __future__ import annotations

from typing import Any

import pytest

from easyrtc_server.transport.asgi_engineio import AsgiWebSocket
from easyrtc_server.transport.socketio import SocketLink

from .harness import lean_server, node_client

VERSIONS = ["4", "2"]
MODES: dict[str, dict[str, Any]] = {
    "upgrade": {},
    "websocket": {"transports": ["websocket"]},
    "polling": {"transports": ["polling"]},
}
PAYLOADS: list[Any] = [
    "hello",
    {"emoji": "😀 ünïcödé ✓", "n": [1, 2.5, None, True], "nested": {"a": {"b": ["c"]}}},
    None,
    "x" * 70_000,  # a 64-bit websocket length, a long polling payload
    ["𝄞" * 1000, "€"],
]


@pytest.mark.parametrize("driver", ["aiohttp", "asgi", "asgi-direct"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("version", VERSIONS)
async def test_acks_push_and_client_disconnect(version: str, mode: str, driver: str) -> None:
    async with (
        lean_server(driver=driver) as run,
        node_client(version, run.url, MODES[mode]) as client,
    ):
        connected = await client.expect("connect")
        assert connected["id"]
        if mode == "upgrade":
            assert (await client.expect("upgrade"))["name"] == "websocket"
        for data in PAYLOADS:
            assert await client.call("echo", data) == data
        # many in flight at once: batched on long-polling, handled in order
        ids = [await client.emit("echo", i, ack=True) for i in range(30)]
        for n, i in zip(ids, range(30), strict=True):
            assert (await client.expect("ack", id=n))["data"] == i
        [peer] = run.server.peers
        assert [d for e, d in peer.received if e == "echo"][-30:] == list(range(30))
        # server push, and a push encoded once for several sockets
        await client.emit("push", {"k": "v"})
        assert await client.expect("message", event="pushed") == {
            "ev": "message",
            "event": "pushed",
            "data": {"k": "v"},
        }
        await client.emit("bcast", [1, "two"])
        assert (await client.expect("message", event="bcast"))["data"] == [1, "two"]
        expected = "polling" if mode == "polling" else "websocket"
        assert await client.transport() == expected
        if driver == "asgi-direct" and expected == "websocket":  # upgraded ones too
            assert isinstance(peer.link, SocketLink)
            conn = peer.link.engine_socket.connection
            assert isinstance(conn, AsgiWebSocket) and conn.direct is not None

        await client.send({"cmd": "disconnect"})
        await client.expect("disconnect")
        await run.server.wait(lambda: len(run.server.closed) == 1)
        assert run.server.closed == [peer]
    assert peer.closes == 1


@pytest.mark.parametrize("driver", ["aiohttp", "asgi", "asgi-direct"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("version", VERSIONS)
async def test_server_close_seen_by_client(version: str, mode: str, driver: str) -> None:
    async with (
        lean_server(driver=driver) as run,
        node_client(version, run.url, MODES[mode]) as client,
    ):
        await client.expect("connect")
        if mode == "upgrade":
            await client.expect("upgrade")
        await client.emit("close", None)
        assert (await client.expect("disconnect"))["reason"] == "io server disconnect"
        await run.server.wait(lambda: len(run.server.closed) == 1)
        assert all(sock.closed for sock in run.transport.engine.sockets.values())
    assert run.server.peers[0].closes == 1


@pytest.mark.parametrize("base64", [False, True])
@pytest.mark.parametrize("mode", ["websocket", "polling"])
@pytest.mark.parametrize("version", VERSIONS)
async def test_binary_attachments(version: str, mode: str, base64: bool) -> None:
    options = dict(MODES[mode], forceBase64=base64)
    async with (
        lean_server(binary_events=True) as run,
        node_client(version, run.url, options) as client,
    ):
        await client.expect("connect")
        reply = await client.call("bin", "binary ✓ data", binary=True)
        assert reply == {
            "type": "bytes",
            "len": len("binary ✓ data".encode()),
            "text": "binary ✓ data",
        }
        assert await client.call("echo", "after") == "after"


@pytest.mark.parametrize("mode", ["websocket", "polling"])
@pytest.mark.parametrize("version", VERSIONS)
async def test_oversized_message_closes_socket(version: str, mode: str) -> None:
    async with (
        lean_server(max_http_buffer_size=10_000) as run,
        node_client(version, run.url, MODES[mode]) as client,
    ):
        await client.expect("connect")
        assert await client.call("echo", "y" * 9_000) == "y" * 9_000
        await client.emit("echo", "z" * 20_000, ack=True)
        assert (await client.expect("disconnect"))["reason"] in (
            "transport close",
            "transport error",
        )
        await run.server.wait(lambda: len(run.server.closed) == 1)
        assert not run.transport.engine.sockets


@pytest.mark.parametrize("version", VERSIONS)
async def test_other_namespace_is_refused(version: str) -> None:
    async with (
        lean_server() as run,
        node_client(version, run.url + "/admin", MODES["websocket"]) as client,
    ):
        error = (
            await client.expect("connect_error") if version == "4" else await client.expect("error")
        )
        assert "Invalid namespace" in error["message"]
        # protocol 4 (socket.io-client 2) joins "/" implicitly, as with the reference server
        assert len(run.server.peers) == (0 if version == "4" else 1)
        assert all(not peer.received for peer in run.server.peers)


@pytest.mark.parametrize("version", VERSIONS)
async def test_many_clients_broadcast(version: str) -> None:
    # small heartbeats: the killed long-polling client is noticed by its missing heartbeat
    async with lean_server(ping_interval=0.5, ping_timeout=2.0) as run:
        async with (
            node_client(version, run.url, MODES["websocket"]) as a,
            node_client(version, run.url, MODES["polling"]) as b,
        ):
            await a.expect("connect")
            await b.expect("connect")
            await a.emit("bcast", {"from": "a"})
            assert (await a.expect("message", event="bcast"))["data"] == {"from": "a"}
            assert (await b.expect("message", event="bcast"))["data"] == {"from": "a"}
            await run.server.wait(lambda: len(run.server.peers) == 2)
        await run.server.wait(lambda: len(run.server.closed) == 2)


@pytest.mark.parametrize("version", VERSIONS)
async def test_refused_connection(version: str) -> None:
    async with (
        lean_server(refuse=True) as run,
        node_client(version, run.url, MODES["websocket"]) as client,
    ):
        error = await client.expect("connect_error" if version == "4" else "error")
        assert error["message"] == "refused"
        assert run.server.opening == 1
        assert not client.events("connect")
    assert not run.server.closed


@pytest.mark.parametrize("mode", ["websocket", "polling"])
@pytest.mark.parametrize("version", VERSIONS)
async def test_push_during_open_follows_connect(version: str, mode: str) -> None:
    async with lean_server(greet=True) as run, node_client(version, run.url, MODES[mode]) as c:
        await c.expect("connect")
        assert (await c.expect("message"))["data"] == "welcome"
        assert [e["ev"] for e in c.seen if e["ev"] in ("connect", "message")] == [
            "connect",
            "message",
        ]


@pytest.mark.parametrize("driver", ["aiohttp", "asgi"])
@pytest.mark.parametrize("version", VERSIONS)
async def test_messages_both_ways_survive_the_upgrade(version: str, driver: str) -> None:
    """A client that sends and is pushed messages without pause from its first moment, while its
    transport upgrades from polling to websocket, loses, repeats and reorders none of them (a
    relayed message late or lost around the upgrade would leave, e.g., a data channel half open)."""
    count, rounds, mid_stream = 120, 4, 0
    for _ in range(rounds):
        burst = {"event": "push", "count": count, "every": 3}
        async with (
            lean_server(driver=driver, stream=(count, 0.003)) as run,
            node_client(version, run.url, {"burst": burst}) as client,
        ):
            await client.expect("upgrade", seconds=30)
            await client.expect("burst_done", seconds=30)
            for i in range(count):
                await client.expect("message", seconds=30, event="streamed", data={"s": i})
                await client.expect("message", seconds=30, event="pushed", data={"i": i})
            [peer] = run.server.peers
            assert [d for e, d in peer.received if e == "push"] == [{"i": i} for i in range(count)]
            messages = [e for e in client.seen if e["ev"] in ("message", "upgrade")]
            assert [e["data"] for e in messages if e.get("event") == "streamed"] == [
                {"s": i} for i in range(count)
            ]
            assert [e["data"] for e in messages if e.get("event") == "pushed"] == [
                {"i": i} for i in range(count)
            ]
            # did messages flow (sent since "connect" until "burst_done", or pushed) across it?
            kinds = [e["ev"] for e in client.seen if e["ev"] != "ack"]
            upgraded = kinds.index("upgrade")
            sending = kinds.index("connect") < upgraded < kinds.index("burst_done")
            pushed = "message" in kinds[:upgraded] and "message" in kinds[upgraded:]
            mid_stream += sending or pushed
    if version == "2":
        # 2.x upgrades after "connect", mid-stream; 4.x mostly before it, with the server's
        # first pushes queued during the probe (test_engineio_sessions pins that window)
        assert mid_stream, "the upgrade never happened while messages flowed"
