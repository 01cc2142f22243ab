"""Fuzz a live server with generated messages from several clients; count what it could not take.

Starts ``easyrtc-server`` as a separate process (log to a file, rate limit off so that the
messages reach the handlers), then ``--clients`` raw websocket clients push ``--messages``
messages in all: mutated valid EasyRTC messages (logins, signals to real peers, room joins,
presence, fields, …), random JSON under EasyRTC and other event names, values nested deep or
strings huge, malformed Socket.IO and Engine.IO frames, and binary frames. A client whose socket
the server closes reconnects. At the end it reports:

- uncaught exceptions: ERROR/CRITICAL records and tracebacks in the server's log (must be 0);
- whether the server still answers a fresh login (must be yes);
- the server's RSS before and after, and what the clients saw (replies, closes).

    .venv/bin/python bench/fuzz.py --messages 1000000          # the full run
    .venv/bin/python bench/fuzz.py --messages 20000 --json out.json

Exit status 0 when there was no uncaught exception and the fresh login worked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from liveserver import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("easyrtc-server")
TIMEOUT = 10.0
WINDOW = 64
"""Messages a client sends before it waits for a round trip (keeps it from being a slow reader)."""

MSG_TYPES = (
    "candidate", "offer", "answer", "reject", "hangup", "getIceConfig", "getRoomList",
    "roomJoin", "roomLeave", "setPresence", "setRoomApiField", "setUserCfg", "stillAlive",
    "authenticate", "token", "error", "chat", "__proto__", "constructor", "",
)  # fmt: skip
EVENTS = ("easyrtcCmd", "easyrtcMsg", "message", "disconnect", "", "connect")
"""Event names for random payloads; ``easyrtcAuth`` is drawn rarely (a failed login closes)."""


# -- the generator ----------------------------------------------------------------------------


class Generator:
    """Messages that are almost right, or not at all, from one seeded ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.peers: list[str] = []

    def text(self, longest: int = 40) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return "".join(
                rng.choice("abcdefghijklmnopqrstuvwxyz_.-") for _ in range(rng.randrange(longest))
            )
        if roll < 0.8:
            return "".join(chr(rng.randrange(0x20, 0x2FF)) for _ in range(rng.randrange(longest)))
        if roll < 0.95:
            return rng.choice(("\n", "\x00", "\ud7ff", "%s%d", "../", "{}", "\\", "\u2028", "'\""))
        return "".join(chr(rng.randrange(0x10FFFF) % 0xD800) for _ in range(rng.randrange(longest)))

    def json_value(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.random()
        if depth > 4 or roll < 0.45:
            return rng.choice(
                (
                    None, True, False, 0, -1, 2**53, 2**64, -(2**63), 1.5, -0.0, 1e308,
                    self.text(), self.text(), "", [], {},
                )
            )  # fmt: skip
        if roll < 0.7:
            return [self.json_value(depth + 1) for _ in range(rng.randrange(5))]
        return {self.text(12): self.json_value(depth + 1) for _ in range(rng.randrange(5))}

    def deep(self) -> Any:
        """A value nested ``depth`` levels, as a marker that ``_dumps`` expands (the encoders
        themselves refuse such depths)."""
        depth = self.rng.choice((10, 60, 200, 1000, 1030, 3000))
        return f"__deep_{depth}_{self.rng.choice('ao')}__"

    def huge(self) -> Any:
        size = self.rng.choice((10_000, 100_000, 400_000, 999_000, 1_100_000))
        if self.rng.random() < 0.5:
            return "x" * size
        return [self.text(8) for _ in range(size // 200)]

    def peer(self) -> str:
        if self.peers and self.rng.random() < 0.8:
            return self.rng.choice(self.peers)
        return self.text(20)

    def valid(self) -> tuple[str, Any]:
        """A message a real client could send."""
        rng = self.rng
        room = rng.choice(("default", "lobby", "r1", "r2", self.text(8)))
        kind = rng.randrange(1, 12)
        if rng.random() < 0.01:  # a login: closes the socket when it fails, so it is rare
            kind = 0
        if kind == 0:
            return "easyrtcAuth", {
                "msgType": "authenticate",
                "msgData": {
                    "apiVersion": "1.1.1-beta",
                    "applicationName": rng.choice(("default", "fuzzapp", self.text(10))),
                    "roomJoin": {room: {"roomName": room}},
                    "setPresence": {"show": "chat", "status": "fuzz"},
                    "username": self.text(10),
                    "credential": {"token": self.text()},
                },
            }
        if kind < 4:
            signal = rng.choice(("candidate", "offer", "answer", "reject", "hangup"))
            return "easyrtcCmd", {
                "msgType": signal,
                "targetEasyrtcid": self.peer(),
                "msgData": {"type": signal, "sdp": "v=0\r\n" + self.text(), "candidate": "c"},
            }
        if kind == 4:
            return "easyrtcCmd", {
                "msgType": "roomJoin",
                "msgData": {
                    "roomJoin": {room: {"roomName": room, "roomParameter": self.json_value()}}
                },
            }
        if kind == 5:
            return "easyrtcCmd", {
                "msgType": "roomLeave",
                "msgData": {"roomLeave": {room: {"roomName": room}}},
            }
        if kind == 6:
            return "easyrtcCmd", {
                "msgType": "setPresence",
                "msgData": {
                    "setPresence": {
                        "show": rng.choice(("away", "chat", "dnd", "xa")),
                        "status": self.text(),
                    }
                },
            }
        if kind == 7:
            return "easyrtcCmd", {
                "msgType": "setRoomApiField",
                "msgData": {
                    "setRoomApiField": {
                        "roomName": room,
                        "field": {
                            self.text(8): {"fieldName": "f", "fieldValue": self.json_value()}
                        },
                    }
                },
            }
        if kind == 8:
            return "easyrtcCmd", {
                "msgType": rng.choice(("getRoomList", "getIceConfig", "stillAlive")),
                "msgData": {},
            }
        if kind == 9:
            return "easyrtcCmd", {
                "msgType": "setUserCfg",
                "msgData": {
                    "setUserCfg": {
                        "p2pList": {self.peer(): {"connectTime": 1, "isInitiator": True}},
                        "userSettings": self.json_value(),
                    }
                },
            }
        target = rng.choice(("targetEasyrtcid", "targetRoom", "targetGroup"))
        return "easyrtcMsg", {
            "msgType": self.text(12) or "chat",
            target: self.peer() if target == "targetEasyrtcid" else room,
            "msgData": self.json_value(),
        }

    def mutate(self, value: Any) -> Any:
        """``value`` with one random node replaced, removed, or grown."""
        rng = self.rng
        if isinstance(value, dict) and value and rng.random() < 0.75:
            key = rng.choice(list(value))
            roll = rng.random()
            copy = dict(value)
            if roll < 0.2:
                del copy[key]
            elif roll < 0.3:
                copy[self.text(10)] = self.json_value()
            else:
                copy[key] = self.mutate(copy[key])
            return copy
        if isinstance(value, list) and value and rng.random() < 0.75:
            copy_list = list(value)
            i = rng.randrange(len(copy_list))
            copy_list[i] = self.mutate(copy_list[i])
            return copy_list
        roll = rng.random()
        if roll < 0.01:
            return self.deep()
        if roll < 0.02:
            return self.huge()
        if roll < 0.2:
            return rng.choice((self.text(), self.peer()))
        return self.json_value()

    def frame(self, ack_id: int | None) -> str | bytes:
        """One websocket frame (text, or bytes for a binary frame)."""
        rng = self.rng
        roll = rng.random()
        ack = "" if ack_id is None else str(ack_id)
        # most frames keep the socket open; the ones that close it are rarer (reconnects cost)
        if roll < 0.81:
            if roll < 0.8:
                event, body = self.valid()
                for _ in range(rng.randrange(4)):
                    body = self.mutate(body)
                if rng.random() < 0.1:
                    event = rng.choice(EVENTS) if rng.random() < 0.5 else self.text(10)
            else:
                event, body = "easyrtcAuth", self.json_value()
            return "42" + ack + _dumps([event, body])
        if roll < 0.97:
            event = rng.choice(EVENTS)
            args = [self.json_value() for _ in range(rng.randrange(3))]
            if rng.random() < 0.05:
                args.append(self.deep())
            return "42" + ack + _dumps([event, *args])
        if roll < 0.98:
            return self.bad_packet()
        if roll < 0.983:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        return rng.choice(
            ("2", "3", "3probe", "5", "6", "2probe", "4", "40", "41/x,", "0", "")
        ) + self.text(6)

    def bad_packet(self) -> str:
        """A Socket.IO packet with something wrong in it."""
        rng = self.rng
        kind = rng.randrange(8)
        if kind == 0:
            return "4" + rng.choice("0123456789") + self.text()
        if kind == 1:
            return "43" + str(rng.randrange(10**12)) + _dumps([self.json_value()])
        if kind == 2:
            return (
                "45"
                + str(rng.randrange(-2, 20))
                + "-"
                + _dumps(["easyrtcCmd", {"_placeholder": True, "num": rng.randrange(-1, 20)}])
            )
        if kind == 3:
            return "42" + "/" + self.text(10) + "," + _dumps(["easyrtcCmd", {}])
        if kind == 4:
            return (
                "42"
                + str(rng.randrange(10**20))
                + _dumps(["easyrtcCmd", {"msgType": "getRoomList"}])
            )
        if kind == 5:
            valid = "42" + _dumps(list(self.valid()))
            cut = rng.randrange(len(valid))
            return valid[:cut] + self.text(4) + valid[cut + 1 :]
        if kind == 6:
            return "42" + '["easyrtcCmd",' + "[" * rng.choice((100, 1100, 5000)) + "]"
        return "40" + rng.choice(("", "/", "/nsp,", "{", '{"token":1}', '/x,{"a":[')) + self.text(4)


_DEEP = re.compile(r'"__deep_(\d+)_([ao])__"')


def _dumps(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits: the json module writes them
        text = json.dumps(value, ensure_ascii=False)
    return _DEEP.sub(_nested, text)


def _nested(marker: re.Match[str]) -> str:
    depth = int(marker.group(1))
    if marker.group(2) == "a":
        return "[" * depth + "1" + "]" * depth
    return '{"d":' * depth + "1" + "}" * depth


# -- the clients --------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.acks = 0
        self.error_replies = 0
        self.closed_by_server = 0
        self.connects = 0
        self.logins = 0
        self.connect_failures = 0
        self.ends: dict[str, int] = {}
        """Why sessions ended early, by exception name."""


async def fuzz_client(
    url: str, gen: Generator, quota: int, stats: Stats, shared_peers: list[str]
) -> None:
    ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session:
        left = quota
        while left > 0:
            try:
                ws = await session.ws_connect(
                    ws_url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=2)
                )
            except (aiohttp.ClientError, OSError):
                stats.connect_failures += 1
                await asyncio.sleep(0.05)
                continue
            stats.connects += 1
            sent = await _session(ws, gen, min(left, 20_000), stats, shared_peers)
            left -= sent
            with contextlib.suppress(Exception):
                await ws.close()


async def _session(
    ws: aiohttp.ClientWebSocketResponse, gen: Generator, quota: int, stats: Stats, peers: list[str]
) -> int:
    """Log in (usually), then send up to ``quota`` fuzz frames; return how many were sent."""
    pending: dict[int, asyncio.Future[Any]] = {}
    reader = asyncio.create_task(_read(ws, pending, stats))
    sent = 0
    try:
        await ws.send_str("40")
        if gen.rng.random() < 0.85:
            token = await _call(
                ws,
                pending,
                1,
                "easyrtcAuth",
                {
                    "msgType": "authenticate",
                    "msgData": {
                        "apiVersion": "1.1.1-beta",
                        "roomJoin": {
                            "default": {"roomName": "default"},
                            "lobby": {"roomName": "lobby"},
                        },
                    },
                },
            )
            if isinstance(token, dict) and token.get("msgType") == "token":
                stats.logins += 1
                peers.append(token["msgData"]["easyrtcid"])
                del peers[:-50]
                gen.peers = peers
        ack_id = 100
        while sent < quota and not ws.closed:
            ack_id += 1
            with_ack = gen.rng.random() < 0.7
            frame = gen.frame(ack_id if with_ack else None)
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            sent += 1
            stats.sent += 1
            if sent % WINDOW == 0:  # a round trip: the replies so far have been read
                ack_id += 1
                await _call(
                    ws, pending, ack_id, "easyrtcCmd", {"msgType": "stillAlive", "msgData": {}}
                )
    except (ConnectionError, aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        stats.ends[type(exc).__name__] = stats.ends.get(type(exc).__name__, 0) + 1
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
    if ws.closed or ws.close_code is not None:
        stats.closed_by_server += 1
    return max(sent, 1)


async def _call(
    ws: aiohttp.ClientWebSocketResponse, pending: dict[int, asyncio.Future[Any]], ack_id: int,
    event: str, body: Any,
) -> Any:  # fmt: skip
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pending[ack_id] = future
    await ws.send_str(f"42{ack_id}" + _dumps([event, body]))
    return await asyncio.wait_for(future, TIMEOUT)


async def _read(
    ws: aiohttp.ClientWebSocketResponse, pending: dict[int, asyncio.Future[Any]], stats: Stats
) -> None:
    ack = re.compile(r"43(\d+)")
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        data: str = message.data
        if data == "2":
            await ws.send_str("3")
            continue
        matched = ack.match(data)
        if matched:
            stats.acks += 1
            if '"msgType":"error"' in data:
                stats.error_replies += 1
            future = pending.pop(int(matched.group(1)), None)
            if future is not None and not future.done():
                try:
                    future.set_result(orjson.loads(data[matched.end() :])[0])
                except (orjson.JSONDecodeError, IndexError):
                    future.set_result(None)
    for future in pending.values():
        if not future.done():
            future.set_exception(ConnectionError("closed"))


async def fresh_login(url: str) -> bool:
    """A new socket.io client can connect and log in (the server still works)."""
    ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
            await ws.send_str("40")
            assert (await ws.receive_str(timeout=TIMEOUT)).startswith("40")
            auth = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
            await ws.send_str("421" + _dumps(["easyrtcAuth", auth]))
            while True:
                reply = await ws.receive_str(timeout=TIMEOUT)
                if reply.startswith("431"):
                    return bool(orjson.loads(reply[3:])[0]["msgType"] == "token")
    except (AssertionError, aiohttp.ClientError, TimeoutError, OSError):
        return False


# -- the run ----------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_problems(log_text: str) -> dict[str, Any]:
    lines = log_text.splitlines()
    errors = [line for line in lines if re.search(r" (ERROR|CRITICAL) ", line)]
    tracebacks = [line for line in lines if line.startswith("Traceback")]
    return {
        "error_records": len(errors),
        "tracebacks": len(tracebacks),
        "examples": errors[:10],
        "log_lines": len(lines),
    }


async def run(url: str, pid: int, messages: int, clients: int, seed: int) -> dict[str, Any]:
    stats = Stats()
    peers: list[str] = []
    rss_before = rss_kb(pid)
    cpu_before = cpu_s(pid)
    start = time.monotonic()
    quota = -(-messages // clients)
    tasks = [
        fuzz_client(url, Generator(random.Random(seed + i)), quota, stats, peers)
        for i in range(clients)
    ]
    progress = asyncio.create_task(_progress(stats, messages, start))
    await asyncio.gather(*tasks)
    progress.cancel()
    elapsed = time.monotonic() - start
    login_ok = await fresh_login(url)
    return {
        "messages_sent": stats.sent,
        "clients": clients,
        "seed": seed,
        "seconds": round(elapsed, 1),
        "msg_per_s": round(stats.sent / elapsed),
        "server_cpu_s": round(cpu_s(pid) - cpu_before, 1),
        "acks": stats.acks,
        "error_replies": stats.error_replies,
        "sockets": stats.connects,
        "logins": stats.logins,
        "sockets_closed_by_server": stats.closed_by_server,
        "connect_failures": stats.connect_failures,
        "session_ends": stats.ends,
        "fresh_login_after": login_ok,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_kb(pid),
    }


async def _progress(stats: Stats, total: int, start: float) -> None:
    while True:
        await asyncio.sleep(30)
        rate = stats.sent / (time.monotonic() - start)
        print(f"{stats.sent:,}/{total:,} sent ({rate:,.0f}/s)", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--log", type=Path, help="keep the server's log here")
    parser.add_argument("--log-level", default="warning", help="the server's log level")
    args = parser.parse_args()
    port = free_port()
    log_path = args.log or Path(tempfile.mkstemp(prefix="fuzz-server-", suffix=".log")[1])
    env = {
        **os.environ,
        "EASYRTC_MESSAGE_RATE": "0",  # let every message reach the handlers
        "EASYRTC_ROOM_MAX_CONNECTION": "0",
    }
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(CLI), "--host", "127.0.0.1", "--port", str(port), "--no-demos",
             "--log-level", args.log_level],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            asyncio.run(wait_listening(port, proc))
            result = asyncio.run(
                run(f"http://127.0.0.1:{port}", proc.pid, args.messages, args.clients, args.seed)
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result["server_exit_code"] = proc.returncode
    result.update(count_problems(log_path.read_text(errors="replace")))
    result["uncaught_exceptions"] = result["error_records"] + result["tracebacks"]
    result["server_log"] = str(log_path)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    ok = result["uncaught_exceptions"] == 0 and result["fresh_login_after"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
