"""Churn soak: clients come and go for a long time; the server must give everything back.

Starts the server (``--serve`` mode of this file: the ordinary application plus a
``/soak/state`` route reporting its counts) as a separate process, then runs ``--clients``
workers for ``--duration`` seconds. Each worker loops: connect (websocket, Engine.IO 4), log in
to one of a few client-created applications with a few rooms, then a handful of random actions
(join and leave rooms, set presence, relay to its room and to a peer, ask for the room list),
then drop: half of the time cleanly, half by aborting the TCP connection. Every minute it prints
the server's RSS and counts. At the end it checks that every client-created application, room,
session and socket is gone, and (for runs of 6 minutes or more) that RSS grew less than 10%
between minute 5 and the end.

    .venv/bin/python bench/soak.py --duration 1800            # the 30-minute run
    .venv/bin/python bench/soak.py --duration 60 --json out.json

Exit status 0 when every check passed. Keep ``--clients``/``--pause`` moderate: the load is
meant to churn state, not to measure throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from liveserver import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]
APPS = ("soakA", "soakB", "soakC")
ROOMS = tuple(f"r{i}" for i in range(12))
GROWTH_LIMIT = 0.10
TIMEOUT = 10.0


# -- the server side ----------------------------------------------------------------------------


def serve(port: int) -> None:
    """Run the server with a state route (in the server process)."""
    from aiohttp import web

    from easyrtc_server.app import create_app
    from easyrtc_server.options import Options
    from easyrtc_server.server import EasyRtcServer

    server = EasyRtcServer(Options(demos_enable=False, log_level="warning"))
    app = create_app(server=server)

    async def state(_request: web.Request) -> web.Response:
        return web.json_response(server_state(server))

    app.router.add_get("/soak/state", state)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def server_state(server: Any) -> dict[str, Any]:
    core = server.core
    apps = {
        name: {
            "rooms": {r: len(room.members) for r, room in app.rooms.items()},
            "connections": len(app.connections),
            "sessions": len(app.sessions),
            "groups": len(app.groups),
        }
        for name, app in core.apps.items()
    }
    return {
        "apps": apps,
        "peers": len(core.peers),
        "links": len(server.links),
        "guarded": len(server.guard.sockets),
        "addresses": len(server.guard.per_address),
        "rss_kb": rss_kb(os.getpid()),
        "cpu_s": round(sum(os.times()[:2]), 2),
    }


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def leftovers(state: dict[str, Any]) -> list[str]:
    """What is still held once every client is gone (the default app's default room stays)."""
    problems = []
    for name, app in state["apps"].items():
        if name != "default":
            problems.append(f"application {name} still exists")
            continue
        if set(app["rooms"]) != {"default"} or any(app["rooms"].values()):
            problems.append(f"rooms left in default: {app['rooms']}")
        for key in ("connections", "sessions", "groups"):
            if app[key]:
                problems.append(f"{app[key]} {key} left in default")
    for key in ("peers", "links", "guarded", "addresses"):
        if state[key]:
            problems.append(f"{state[key]} {key} left")
    return problems


# -- the clients ------------------------------------------------------------------------------


class SoakClient:
    """A minimal Engine.IO 4 / Socket.IO 5 websocket client speaking EasyRTC (cheap on CPU)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.pushes = 0
        self.reader: asyncio.Task[None] | None = None
        self.easyrtcid = ""
        self.peers: list[str] = []

    async def connect(self) -> None:
        self.ws = ws = await self.session.ws_connect(
            self.url, timeout=aiohttp.ClientWSTimeout(ws_close=2)
        )
        opening = await ws.receive_str(timeout=TIMEOUT)
        assert opening.startswith("0{"), opening
        await ws.send_str("40")
        connected = await ws.receive_str(timeout=TIMEOUT)
        assert connected.startswith("40"), connected
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data: str = message.data
            if data == "2":
                await self.ws.send_str("3")
            elif data.startswith("43"):
                start = data.index("[")
                future = self.acks.pop(int(data[2:start]), None)
                if future is not None and not future.done():
                    future.set_result(orjson.loads(data[start:])[0])
            elif data.startswith("42"):
                self.pushes += 1
        for future in self.acks.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    async def call(self, event: str, body: Any) -> Any:
        assert self.ws is not None
        ack_id = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[ack_id] = future
        await self.ws.send_str(f"42{ack_id}" + orjson.dumps([event, body]).decode())
        return await asyncio.wait_for(future, TIMEOUT)

    async def login(self, app: str, rooms: list[str]) -> None:
        token = await self.call(
            "easyrtcAuth",
            {
                "msgType": "authenticate",
                "msgData": {
                    "apiVersion": "1.1.1-beta",
                    "applicationName": app,
                    "roomJoin": {room: {"roomName": room} for room in rooms},
                    "setPresence": {"show": "chat", "status": "soaking"},
                    "username": f"u{random.randrange(10**6)}",
                },
            },
        )
        assert token["msgType"] == "token", token
        self.easyrtcid = token["msgData"]["easyrtcid"]
        for room in token["msgData"].get("roomData", {}).values():
            self.peers.extend(p for p in room.get("clientList", {}) if p != self.easyrtcid)

    async def close(self, kill: bool) -> None:
        ws = self.ws
        if ws is None:
            return
        if kill:
            transport = ws._conn.transport if ws._conn is not None else None
            if transport is not None:
                transport.abort()
        else:
            with contextlib.suppress(Exception):
                await ws.send_str("41")
            await ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


async def action(client: SoakClient, rooms: set[str]) -> None:
    """One random thing a real client does."""
    roll = random.random()
    if roll < 0.2:
        room = random.choice(ROOMS)
        reply = await client.call(
            "easyrtcCmd",
            {"msgType": "roomJoin", "msgData": {"roomJoin": {room: {"roomName": room}}}},
        )
        if reply["msgType"] == "roomData":
            rooms.add(room)
    elif roll < 0.35 and rooms:
        room = random.choice(sorted(rooms))
        await client.call(
            "easyrtcCmd",
            {"msgType": "roomLeave", "msgData": {"roomLeave": {room: {"roomName": room}}}},
        )
        rooms.discard(room)
    elif roll < 0.5:
        show = random.choice(("away", "chat", "dnd", "xa"))
        await client.call(
            "easyrtcCmd",
            {
                "msgType": "setPresence",
                "msgData": {"setPresence": {"show": show, "status": "x" * random.randrange(50)}},
            },
        )
    elif roll < 0.7 and rooms:
        room = random.choice(sorted(rooms))
        await client.call(
            "easyrtcMsg",
            {
                "msgType": "chat",
                "targetRoom": room,
                "msgData": {"text": "hello " * random.randrange(1, 20)},
            },
        )
    elif roll < 0.85 and client.peers:
        peer = random.choice(client.peers)
        body = {
            "msgType": "candidate",
            "targetEasyrtcid": peer,
            "msgData": {
                "type": "candidate",
                "candidate": "candidate:1 1 udp 1 192.0.2.1 5000 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
            },
        }
        await client.call("easyrtcCmd", body)
    else:
        await client.call("easyrtcCmd", {"msgType": "getRoomList", "msgData": {}})


async def worker(url: str, stop_at: float, pause: float, counts: dict[str, int]) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < stop_at:
            client = SoakClient(session, url)
            kill = random.random() < 0.5
            try:
                await client.connect()
                rooms = set(random.sample(ROOMS, random.randrange(0, 3)))
                await client.login(random.choice(APPS), sorted(rooms))
                counts["logins"] += 1
                for _ in range(random.randrange(1, 8)):
                    await action(client, rooms)
                    counts["actions"] += 1
                    await asyncio.sleep(random.uniform(0, 2 * pause))
            except (
                TimeoutError,
                ConnectionError,
                aiohttp.ClientError,
                AssertionError,
                KeyError,
            ) as exc:
                counts["client_errors"] += 1
                if counts["client_errors"] <= 5:
                    print(f"client error: {exc!r}", file=sys.stderr)
            finally:
                await client.close(kill)
                counts["killed" if kill else "closed"] += 1


async def fetch_state(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + "/soak/state") as response:
        return await response.json()  # type: ignore[no-any-return]


async def soak(url: str, duration: float, clients: int, pause: float) -> dict[str, Any]:
    counts: dict[str, int] = {
        "logins": 0,
        "actions": 0,
        "client_errors": 0,
        "closed": 0,
        "killed": 0,
    }
    start = time.monotonic()
    stop_at = start + duration
    samples: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        first = await fetch_state(session, url)
        samples.append(
            {"minute": 0, "rss_kb": first["rss_kb"], **{k: first[k] for k in ("peers", "links")}}
        )
        print(f"minute 0: RSS {first['rss_kb']} KB", flush=True)
        workers = [asyncio.create_task(worker(url, stop_at, pause, counts)) for _ in range(clients)]
        minute = 0
        while time.monotonic() < stop_at:
            next_minute = start + 60 * (minute + 1)
            await asyncio.sleep(max(0.0, min(next_minute, stop_at) - time.monotonic()))
            if time.monotonic() >= next_minute - 0.01:
                minute += 1
                state = await fetch_state(session, url)
                sample = {
                    "minute": minute,
                    "rss_kb": state["rss_kb"],
                    "peers": state["peers"],
                    "links": state["links"],
                    **counts,
                }
                samples.append(sample)
                print(
                    f"minute {minute}: RSS {state['rss_kb']} KB,"
                    f" {state['peers']} sockets, {counts}",
                    flush=True,
                )
        await asyncio.gather(*workers)
        # killed sockets are noticed at once (reset) or after the heartbeat timeout at worst
        deadline = time.monotonic() + 20
        state = await fetch_state(session, url)
        while leftovers(state) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            state = await fetch_state(session, url)
    problems = leftovers(state)
    elapsed = time.monotonic() - start
    cpu = {
        "server_cpu_pct": round(100 * (state["cpu_s"] - first["cpu_s"]) / elapsed, 1),
        "clients_cpu_pct": round(100 * time.process_time() / elapsed, 1),
    }
    end_rss = state["rss_kb"]
    base = next((s["rss_kb"] for s in samples if s["minute"] == 5), None)
    growth = (end_rss - base) / base if base else None
    if growth is not None and growth >= GROWTH_LIMIT:
        problems.append(
            f"RSS grew {growth:.1%} between minute 5 and the end (limit {GROWTH_LIMIT:.0%})"
        )
    return {
        "duration_s": round(time.monotonic() - start, 1),
        "clients": clients,
        "counts": counts,
        **cpu,
        "samples": samples,
        "rss_start_kb": samples[0]["rss_kb"],
        "rss_minute5_kb": base,
        "rss_end_kb": end_rss,
        "growth_after_minute5": None if growth is None else round(growth, 4),
        "final_state": state,
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of churn")
    parser.add_argument("--clients", type=int, default=12, help="concurrent workers")
    parser.add_argument("--pause", type=float, default=0.25, help="mean seconds between actions")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        asyncio.run(wait_listening(port, proc))
        result = asyncio.run(
            soak(f"http://127.0.0.1:{port}", args.duration, args.clients, args.pause)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result["server_exit_code"] = proc.returncode
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("samples", "final_state")}, indent=1
        )
    )
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
