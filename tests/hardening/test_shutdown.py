"""SIGTERM drains the server: peers hear of every leaving client, hooks run, the process exits 0
within its drain time; a second signal ends it at once."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from easyrtc_server.app import create_app
from easyrtc_server.hooks import Hooks
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.client import TIMEOUT, Client
from support.ports import free_port

from .serverprocess import exit_code, server_process, until_listening

DRAIN = 5.0
AIOHTTP_SHUTDOWN_TIMEOUT = 1.0
"""What the command line gives aiohttp's own shutdown to wait for a request still running."""


async def _logged_in(url: str, count: int, transport: str = "websocket") -> list[Client]:
    clients = [Client(transport) for _ in range(count)]
    for client in clients:
        await client.connect(url)
        await client.login()
    return clients


async def _pushes_until_closed(client: Client) -> list[dict[str, Any]]:
    await asyncio.wait_for(client.disconnected.wait(), TIMEOUT)
    pushes = []
    while not client.cmds.empty():
        pushes.append(client.cmds.get_nowait())
    return pushes


def _removed(pushes: list[dict[str, Any]]) -> set[str]:
    gone: set[str] = set()
    for push in pushes:
        if push["msgType"] == "roomData":
            for room in push["msgData"]["roomData"].values():
                gone.update(room.get("clientListDelta", {}).get("removeClient", {}))
    return gone


def _errors(pushes: list[dict[str, Any]]) -> list[str]:
    return [p["msgData"]["errorCode"] for p in pushes if p["msgType"] == "error"]


async def test_sigterm_tells_every_peer_and_exits_0() -> None:
    env = {"EASYRTC_SHUTDOWN_DRAIN_TIME": str(DRAIN)}
    with server_process(env=env) as (proc, url):
        await until_listening(proc, url)
        a, b, c = await _logged_in(url, 3)
        polling = (await _logged_in(url, 1, "polling"))[0]
        for client in (a, b, c):  # drain the joins, so that only what the shutdown sends is left
            while not client.cmds.empty():
                client.cmds.get_nowait()
        proc.send_signal(signal.SIGTERM)
        pushes = {x.easyrtcid: await _pushes_until_closed(x) for x in (a, b, c, polling)}
        assert await exit_code(proc, DRAIN + 5) == 0
    ids = [a.easyrtcid, b.easyrtcid, c.easyrtcid, polling.easyrtcid]
    for i, easyrtcid in enumerate(ids):
        # everyone closed after another client heard that one leave, and was told why it goes
        assert _removed(pushes[easyrtcid]) >= set(ids[:i])
        assert _errors(pushes[easyrtcid]) == ["SERVER_SHUTDOWN"]


async def test_a_second_signal_exits_at_once() -> None:
    script = Path(__file__).with_name("slow_hooks_server.py")
    with server_process(command=(sys.executable, str(script))) as (proc, url):
        await until_listening(proc, url)
        (client,) = await _logged_in(url, 1)
        proc.send_signal(signal.SIGTERM)
        push = await client.next_cmd()  # the drain began: its disconnect hook now hangs
        while push["msgType"] != "error":
            push = await client.next_cmd()
        assert push["msgData"]["errorCode"] == "SERVER_SHUTDOWN"
        proc.send_signal(signal.SIGTERM)
        assert await exit_code(proc, 5) == 128 + signal.SIGTERM


class Recording(Hooks):
    def __init__(self) -> None:
        self.disconnected: list[str] = []

    async def disconnect(self, conn: Any) -> None:
        self.disconnected.append(conn.easyrtcid)


async def test_shutdown_of_the_application_runs_every_disconnect_hook() -> None:
    hooks = Recording()
    server = EasyRtcServer(Options(shutdown_drain_time=DRAIN), hooks=hooks)
    runner = web.AppRunner(create_app(server=server), handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    clients = await _logged_in(f"http://127.0.0.1:{port}", 3)
    assert not server.draining
    await runner.cleanup()
    assert server.draining
    assert sorted(hooks.disconnected) == sorted(c.easyrtcid for c in clients)
    for client in clients:
        await asyncio.wait_for(client.disconnected.wait(), TIMEOUT)
    assert server.links == {} and server.core.peers == {} and server.guard.sockets == {}


async def _polling_request(
    url: str, request: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A new long-polling session, then the start of ``request`` (method, then what follows
    the sid) on the same connection: one the server reads, written by the time this returns."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    path = "/socket.io/?EIO=4&transport=polling"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    sid = json.loads((await reader.readexactly(length))[1:])["sid"]
    method, rest = request.split(" ", 1)
    writer.write(f"{method} {path}&sid={sid} HTTP/1.1\r\nHost: x\r\n{rest}".encode())
    await writer.drain()
    return reader, writer


async def _post_in_flight(url: str) -> asyncio.StreamWriter:
    """A long-polling session with a POST whose body has only begun to arrive."""
    _, writer = await _polling_request(
        url, "POST Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n4"
    )
    return writer


async def test_requests_still_running_at_sigterm_leave_no_traceback() -> None:
    """Clients whose requests are still running when the server stops (uploads under way)
    and that give up around the moment aiohttp's own shutdown stops waiting for them: aiohttp
    logs an ``InvalidStateError`` traceback for each request that ends just then (its race in
    ``RequestHandler.shutdown``), unless the server has let them end before. 1,500 of them, in
    a random order over 60 ms around that moment, to hit it every time (before the fix, every
    run logged hundreds); about 3 s."""
    with server_process() as (proc, url):
        await until_listening(proc, url)
        assert proc.stdout is not None
        output = asyncio.create_task(asyncio.to_thread(proc.stdout.read))
        posts: list[asyncio.StreamWriter] = []
        for _ in range(15):  # 100 at a time
            posts += await asyncio.gather(*(_post_in_flight(url) for _ in range(100)))
        reader, poll = await _polling_request(url, "GET \r\n")  # a poll waiting
        proc.send_signal(signal.SIGTERM)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert answer.startswith(b"HTTP/1.1 200 ")
        # the sessions are closed now (no drain: no client logged in), this one last, after the
        # close handlers of the others; aiohttp's own shutdown came right after this answer,
        # unless the server lets the running requests end first
        loop = asyncio.get_running_loop()
        give_up = loop.time() + AIOHTTP_SHUTDOWN_TIMEOUT - 0.015
        for i, post in enumerate(random.sample(posts, len(posts))):
            loop.call_at(give_up + i * 0.06 / len(posts), post.transport.abort)
        assert await exit_code(proc, DRAIN + 10) == 0
        log = (await output).decode(errors="replace")
        for writer in (*posts, poll):
            writer.transport.abort()
    assert "Unhandled exception" not in log
    assert "Task was destroyed but it is pending" not in log
    assert "Traceback" not in log
