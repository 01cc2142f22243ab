"""SIGTERM drains the server: peers hear of every leaving client, hooks run, the process exits 0
within its drain time; a second signal ends it at once."""

from __future__ import annotations

import asyncio
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
