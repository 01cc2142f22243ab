"""Many idle websocket clients on one server process: memory per connection, heartbeat CPU,
and the latency of a login among them.

    .venv/bin/python bench/idle.py --levels 5000,10000,19000 --idle 60

Starts ``python -m easyrtc_server`` (aiohttp, lean stack, uvloop) on a free loopback port
(pinned to CPU 0, the generators to CPU 1, as ``run.py`` does), then
generator processes (this file with ``--worker``), each holding up to ``--per-worker`` raw
Engine.IO 4 websocket clients from its own source address (127.0.0.2, 127.0.0.3, ...), so that
no source address runs out of ephemeral ports. A client logs in to EasyRTC (``easyrtcAuth``,
in a room of ``--room-size``), then only answers pings. At each level (total clients) the run
waits ``--idle`` seconds and reads, from /proc, the server's RSS and the CPU time it spent (user
+ system: heartbeats, as nothing else happens), then times ``--logins`` logins of a new client
(connect + handshake + login, and the login's round trip alone). Results: one JSON line per
level on stdout, and ``--json FILE``.

The file descriptor limit (``ulimit -n``) is raised to its hard limit for the server and the
workers; a server cannot hold more clients than that limit, nor can a worker.

Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
IP_BIND_ADDRESS_NO_PORT = 24
"""Linux: choose the source port at connect time, per destination (not one per bind)."""
SERVER_ENV = {
    "EASYRTC_ROOM_MAX_CONNECTION": "0",
    "EASYRTC_MESSAGE_RATE": "0",
    "EASYRTC_MAX_CONNECTIONS": "0",
    "EASYRTC_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "EASYRTC_LOGIN_TIMEOUT": "0",
}
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _masked(payload: bytes) -> bytes:
    """A client's text frame, masked with a zero key (the payload is then sent as is)."""
    assert len(payload) < 65536
    if len(payload) < 126:
        return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload
    return bytes((0x81, 0x80 | 126)) + len(payload).to_bytes(2, "big") + b"\0\0\0\0" + payload


PONG = _masked(b"3")


def _auth(room: str) -> bytes:
    msg = {
        "msgType": "authenticate",
        "msgData": {
            "apiVersion": "1.1.1-beta",
            "applicationName": "bench",
            "roomJoin": {room: {"roomName": room}},
        },
    }
    return _masked(b'420["easyrtcAuth",' + json.dumps(msg).encode() + b"]")


class Client(asyncio.Protocol):
    """A raw Engine.IO 4 / Socket.IO 5 websocket client: logs in, then answers pings."""

    __slots__ = ("auth", "auth_sent", "buf", "done", "stage", "stats", "transport")

    def __init__(self, room: str, stats: dict[str, int], done: asyncio.Future[float]) -> None:
        self.auth = _auth(room)
        self.stats = stats
        self.done = done
        self.buf = bytearray()
        self.stage = 0  # 0 HTTP upgrade, 1 open, 2 namespace connect, 3 login, 4 idle
        self.auth_sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.stage == 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._fail(buf[:200].decode(errors="replace"))
                return
            del buf[: end + 4]
            self.stage = 1
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            start = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, start = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + n:
                return
            opcode = buf[0] & 0x0F
            payload = bytes(buf[start : start + n])
            del buf[: start + n]
            if opcode == 8:
                return
            self._packet(payload)

    def _packet(self, p: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if p == b"2":
            transport.write(PONG)
            self.stats["pongs"] += 1
        elif self.stage == 1 and p[:1] == b"0":
            transport.write(_masked(b"40"))
            self.stage = 2
        elif self.stage == 2 and p[:2] == b"40":
            self.auth_sent = time.perf_counter()
            transport.write(self.auth)
            self.stage = 3
        elif self.stage == 3 and p[:3] == b"430":
            self.stage = 4
            if b'"token"' not in p:
                self._fail(p[:200].decode(errors="replace"))
                return
            if not self.done.done():
                self.done.set_result(time.perf_counter() - self.auth_sent)
        # anything else (roomData pushes of the room) is ignored

    def _fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stage == 4:
            self.stats["dropped"] += 1
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"connection lost: {exc}"))


async def connect(port: int, source: str, room: str, stats: dict[str, int]) -> tuple[Client, float]:
    """One client logged in; returns it and its login's round trip (seconds)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
    except BaseException:
        sock.close()
        raise
    done: asyncio.Future[float] = loop.create_future()
    _, client = await loop.create_connection(lambda: Client(room, stats, done), sock=sock)
    return client, await asyncio.wait_for(done, 120)


# -- worker: holds clients ----------------------------------------------------------------------


async def worker(port: int, source: str, first: int, count: int, room_size: int) -> None:
    stats = {"pongs": 0, "dropped": 0, "failed": 0}
    held: list[Client] = []
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with gate:
            for _ in range(3):
                try:
                    client, _ = await connect(port, source, f"r{i // room_size}", stats)
                    held.append(client)
                    return
                except (OSError, RuntimeError, TimeoutError):
                    await asyncio.sleep(0.5)
            stats["failed"] += 1

    await asyncio.gather(*(one(i) for i in range(first, first + count)))
    print(json.dumps({"connected": len(held), **stats}), flush=True)
    # then idle, answering pings, until stdin closes
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    print(json.dumps({"connected": len(held), **stats}), flush=True)


# -- the run ------------------------------------------------------------------------------------


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _pinned(cpu: int, cmd: list[str]) -> list[str]:
    """``cmd`` on one CPU (as ``run.py`` does: server on 0, generators on 1); taskset execs it,
    so the pid is the command's own."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *cmd]
    return cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def _until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit("the server exited at start")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


async def _logins(port: int, n: int) -> dict[str, float]:
    """``n`` new clients log in one after another (their own room), then leave."""
    stats = {"pongs": 0, "dropped": 0}
    total, rtt = [], []
    for i in range(n):
        t0 = time.perf_counter()
        client, auth = await connect(port, HOST, f"login{i}", stats)
        total.append(time.perf_counter() - t0)
        rtt.append(auth)
        assert client.transport is not None
        client.transport.close()
        await asyncio.sleep(0.2)
    return {
        "login_ms_median": round(statistics.median(rtt) * 1000, 1),
        "login_ms_max": round(max(rtt) * 1000, 1),
        "connect_and_login_ms_median": round(statistics.median(total) * 1000, 1),
        "connect_and_login_ms_max": round(max(total) * 1000, 1),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    limit = _raise_fd_limit()
    levels = [int(x) for x in args.levels.split(",")]
    if levels[-1] + 100 > limit:
        print(
            f"NOTE: ulimit -n is {limit} (hard): the server cannot hold {levels[-1]}",
            file=sys.stderr,
        )
    port = _free_port()
    env = {**os.environ, **SERVER_ENV, **dict(kv.split("=", 1) for kv in args.server_env)}
    cmd = [str(PYTHON), "-m", "easyrtc_server", "--log-level", "warning", "--no-demos"]
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before any load)
        _pinned(0, [*cmd, "--host", HOST, "--port", str(port)]), env=env
    )
    workers: list[subprocess.Popen[str]] = []
    results: list[dict[str, Any]] = []
    try:
        await _until_listening(port, server)
        await _logins(port, 3)  # warm up
        base_rss = _rss(server.pid)
        held = 0
        for level in levels:
            t0 = time.monotonic()
            cpu0 = _cpu_s(server.pid)
            started: list[subprocess.Popen[str]] = []
            while held < level:
                count = min(args.per_worker, level - held)
                source = f"127.0.0.{2 + len(workers)}"
                proc = subprocess.Popen(  # noqa: ASYNC220
                    _pinned(1, [
                        str(PYTHON), __file__, "--worker", "--port", str(port),
                        "--source", source, "--first", str(held), "--count", str(count),
                        "--room-size", str(args.room_size),
                    ]),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                workers.append(proc)
                started.append(proc)
                held += count
            connected = 0
            for proc in started:
                assert proc.stdout is not None
                line = await asyncio.to_thread(proc.stdout.readline)
                connected += json.loads(line)["connected"]
            setup_s = time.monotonic() - t0
            setup_cpu = _cpu_s(server.pid) - cpu0
            await asyncio.sleep(5)  # let the last logins' room pushes go out
            rss0 = _rss(server.pid)
            cpu0, w0 = _cpu_s(server.pid), time.monotonic()
            spy = None
            if args.profile:  # py-spy samples without pausing the server
                spy = subprocess.Popen(  # noqa: ASYNC220
                    [str(PYTHON.with_name("py-spy")), "record", "--nonblocking", "--format", "raw",
                     "-o", f"{args.profile}.{level}.txt", "-d", str(int(args.idle)), "-r", "50",
                     "-p", str(server.pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            await asyncio.sleep(args.idle)
            cpu1, w1 = _cpu_s(server.pid), time.monotonic()
            rss = _rss(server.pid)
            if spy is not None:
                await asyncio.to_thread(spy.wait)
            logins = await _logins(port, args.logins)
            result = {
                "level": level,
                "connected_in_this_step": connected,
                "setup_s": round(setup_s, 1),
                "setup_server_cpu_s": round(setup_cpu, 1),
                "server_rss_mb": round(rss / 2**20, 1),
                "server_rss_before_idle_mb": round(rss0 / 2**20, 1),
                "baseline_rss_mb": round(base_rss / 2**20, 1),
                "kb_per_connection": round((rss - base_rss) / level / 1024, 2),
                "heartbeat_cpu_pct": round(100 * (cpu1 - cpu0) / (w1 - w0), 1),
                "idle_window_s": round(w1 - w0, 1),
                **logins,
                "load_avg": os.getloadavg()[0],
            }
            results.append(result)
            print(json.dumps(result), flush=True)
        return results
    finally:
        dropped = 0
        for proc in workers:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            try:
                line = proc.stdout.readline()
                dropped += json.loads(line)["dropped"] if line else 0
            except ValueError:
                pass
            proc.kill()
            proc.wait()
        server.kill()
        server.wait()
        if results:
            results[-1]["dropped_by_server"] = dropped
            print(json.dumps({"dropped_by_server": dropped}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="5000,10000,19000")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idling per level")
    parser.add_argument("--logins", type=int, default=5)
    parser.add_argument("--room-size", type=int, default=100)
    parser.add_argument("--per-worker", type=int, default=10000)
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--profile", metavar="PREFIX", help="py-spy each idle window to PREFIX.LEVEL.txt (raw)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _raise_fd_limit()
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(worker(args.port, args.source, args.first, args.count, args.room_size))
        return
    results = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
