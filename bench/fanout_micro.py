"""The server's CPU per room message, in process: one sender, a room of N members, no sockets.

N websocket sessions of the lean transport (writes go to a transport that counts and drops them)
log in to room ``r``; then the first sends ``easyrtcMsg`` to ``targetRoom: r`` with acks,
``window`` of them per event-loop pass, through the path a websocket message takes
(``LeanTransport.on_message`` → ``server.receive`` → the relay → the N-1 pushes and the ack →
the frames queued and flushed once per pass). Prints microseconds of CPU per message and
deliveries per CPU-second. ``--polling K`` makes K of the members long-polling sessions (their
packets are queued, as a held GET would take them); ``--mix`` puts half the members on
Engine.IO 3 (socket.io-client 2). Metrics are on, the message rate limit off, as
``bench/run.py`` runs the server.

To compare two versions of the code in one run, alternating (the machine is noisy)::

    git archive 901d301 src | tar -x -C /tmp/fanout-before
    .venv/bin/python bench/fanout_micro.py --compare before=/tmp/fanout-before/src \\
        --compare after=src --rounds 5 --members 10,50 --uvloop

Each round runs each version once per room size, each in a fresh process (``PYTHONPATH``);
the medians follow. Not a test: nothing here asserts a timing. Profile one version with
``py-spy record -o fanout.svg -- .venv/bin/python bench/fanout_micro.py --members 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class _Sink(asyncio.Transport):
    """A connected transport that counts and drops what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


async def _login(transport: Any, sock: Any, eio: int, index: int) -> None:
    import orjson

    if eio >= 4:
        await transport.on_message(sock, b"0", False)
    auth = {
        "msgType": "authenticate",
        "msgData": {
            "apiVersion": "1.1.1-beta",
            "applicationName": "bench",
            "roomJoin": {"r": {"roomName": "r"}},
        },
    }
    await transport.on_message(
        sock, b"2" + str(index).encode() + orjson.dumps(["easyrtcAuth", auth]), False
    )


async def run(
    members: int, messages: int, window: int, size: int, polling: int, mix: bool
) -> dict[str, Any]:
    import orjson

    from easyrtc_server.operations import Operations
    from easyrtc_server.options import Options
    from easyrtc_server.server import EasyRtcServer
    from easyrtc_server.transport.engineio import AiohttpWebSocket
    from easyrtc_server.transport.engineio_protocol import TransportKind
    from easyrtc_server.transport.socketio import LeanTransport

    server = EasyRtcServer(Options(message_rate=0, room_max_connection=0))
    Operations(server)  # metrics on, as served
    transport = LeanTransport.from_options(server, server.options)
    engine = transport.engine
    socks = []
    sinks: list[_Sink] = []
    polls = []
    for i in range(members):
        eio = 3 if mix and i % 2 else 4
        if 0 < i <= polling:  # never the sender
            sock = engine.open_session(eio, "127.0.0.1", None)
            assert sock.proto.transport is TransportKind.POLLING
            polls.append(sock)
        else:
            sink = _Sink()
            sinks.append(sink)
            sock = engine.open_session(eio, "127.0.0.1", AiohttpWebSocket(engine, sink))
        await sock.open()
        await _login(transport, sock, eio, 100 + i)
        socks.append(sock)
    for _ in range(100):  # the member-list updates of the logins go out (room_update_tick)
        await asyncio.sleep(0.01)
        if server.core.next_room_update() is None:
            break
    assert len(server.core.peers) == members, len(server.core.peers)
    sender = socks[0]
    pad = "x" * size
    frames = [
        b"2"
        + str(1000 + i).encode()
        + orjson.dumps(
            [
                "easyrtcMsg",
                {"msgType": "bench", "targetRoom": "r", "msgData": {"s": 0, "q": i, "pad": pad}},
            ]
        )
        for i in range(window)
    ]
    on_message = transport.on_message

    def drain_polls() -> None:
        for sock in polls:
            sock.proto.poll_body()

    async def drive(count: int) -> None:
        for _ in range(count // window):
            for frame in frames:
                await on_message(sender, frame, False)
            drain_polls()
            await asyncio.sleep(0)  # the pass ends: the frames are written

    await drive(min(messages, 2_000))  # warm up
    before = sum(s.written for s in sinks)
    cpu, wall = time.process_time(), time.perf_counter()
    await drive(messages)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    written = sum(s.written for s in sinks) - before
    assert written > 0 or not sinks[1:], "nothing reached the members"
    deliveries = messages * (members - 1)
    return {
        "members": members,
        "messages": messages,
        "us_per_msg": cpu / messages * 1e6,
        "msg_per_cpu_s": messages / cpu,
        "deliveries_per_cpu_s": deliveries / cpu,
        "msg_per_s": messages / wall,
        "bytes_written": written,
    }


def _one(args: argparse.Namespace, members: int) -> dict[str, Any]:
    coro = run(members, args.messages, args.window, args.size, args.polling, args.mix)
    if args.uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def _compare(args: argparse.Namespace, sizes: list[int]) -> None:
    versions = [spec.split("=", 1) for spec in args.compare]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rnd in range(args.rounds):
        order = versions if rnd % 2 == 0 else versions[::-1]
        for members in sizes:
            for name, src in order:
                env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
                cmd = [sys.executable, __file__, "--json", "--members", str(members)]
                cmd += ["--messages", str(args.messages), "--window", str(args.window)]
                cmd += ["--size", str(args.size), "--polling", str(args.polling)]
                cmd += ["--mix"] * args.mix + ["--uvloop"] * args.uvloop
                line = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                res = json.loads(line.stdout.strip().splitlines()[-1])
                results.setdefault((name, members), []).append(res)
                print(
                    f"round {rnd + 1} {name:>8} members {members:>3}: "
                    f"{res['us_per_msg']:7.1f} µs CPU per message, "
                    f"{res['deliveries_per_cpu_s']:>10,.0f} deliveries per CPU-s",
                    flush=True,
                )
    print()
    for members in sizes:
        base = None
        for name, _ in versions:
            runs = results[(name, members)]
            med = statistics.median(r["msg_per_cpu_s"] for r in runs)
            lo = min(r["msg_per_cpu_s"] for r in runs)
            hi = max(r["msg_per_cpu_s"] for r in runs)
            rel = "" if base is None else f"  ({med / base:.2f}x {versions[0][0]})"
            base = base or med
            print(
                f"members {members:>3} {name:>8}: {med:>9,.0f} msg per CPU-s "
                f"(min {lo:,.0f}, max {hi:,.0f}), "
                f"{med * (members - 1):>11,.0f} deliveries per CPU-s{rel}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="10,50", help="room sizes, comma-separated")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=8, help="messages per event-loop pass")
    parser.add_argument("--size", type=int, default=100, help="bytes of padding in msgData")
    parser.add_argument("--polling", type=int, default=0, help="members on long-polling")
    parser.add_argument("--mix", action="store_true", help="half the members on Engine.IO 3")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (as served)")
    parser.add_argument("--compare", action="append", metavar="NAME=SRC", help="a version's src/")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON line per room size")
    args = parser.parse_args()
    sizes = [int(n) for n in args.members.split(",")]
    if args.compare:
        _compare(args, sizes)
        return
    for members in sizes:
        res = _one(args, members)
        if args.json:
            print(json.dumps(res))
        else:
            print(
                f"room of {members}, {args.messages} messages, window {args.window}: "
                f"{res['us_per_msg']:.1f} µs CPU per message ({res['msg_per_cpu_s']:,.0f} msg, "
                f"{res['deliveries_per_cpu_s']:,.0f} deliveries per CPU-s, "
                f"{res['msg_per_s']:,.0f} msg/s)"
            )


if __name__ == "__main__":
    main()
