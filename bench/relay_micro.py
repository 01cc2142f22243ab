"""The server's CPU per relayed candidate, in process: no sockets, no load generator.

Two websocket sessions of the lean transport (writes go to a transport that drops them) log in;
then A sends B ``candidate`` commands with acks, ``window`` of them per event-loop pass, through
the same path a websocket message takes (``LeanTransport.on_message`` → ``server.receive`` →
the core → the pushes and the ack → the frames queued and flushed once per pass). Prints the
microseconds of CPU per message; with ``--profile FILE`` a cProfile dump of the run as well.
Metrics are on, as in the default server; the message rate limit is off, as ``bench/run.py``
runs it. A regression guard for the hot path, not a benchmark of the whole server
(``bench/run.py`` is that)::

    .venv/bin/python bench/relay_micro.py --messages 200000
    py-spy record -o relay.svg -- .venv/bin/python bench/relay_micro.py --messages 400000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import time
from typing import Any

import orjson

from easyrtc_server.operations import Operations
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from easyrtc_server.transport.engineio import AiohttpWebSocket, EngineSocket
from easyrtc_server.transport.socketio import LeanTransport

CANDIDATE = {
    "type": "candidate",
    "label": 0,
    "id": "0",
    "candidate": "candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 "
    "ufrag zOWr network-id 1 network-cost 10 raddr 0.0.0.0 rport 0 tcptype passive x",
}


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


async def _session(transport: LeanTransport, eio: int) -> tuple[EngineSocket, _Sink]:
    engine = transport.engine
    sink = _Sink()
    sock = engine.open_session(eio, "127.0.0.1", AiohttpWebSocket(engine, sink))
    await sock.open()
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
    await transport.on_message(sock, b"21" + orjson.dumps(["easyrtcAuth", auth]), False)
    await asyncio.sleep(0)
    return sock, sink


async def run(messages: int, window: int, eio: int, profile: str | None) -> None:
    server = EasyRtcServer(Options(message_rate=0))  # no rate limit, as bench/run.py runs it
    Operations(server)  # metrics on, as served
    transport = LeanTransport.from_options(server, server.options)
    a, _ = await _session(transport, eio)
    _, sink_b = await _session(transport, eio)
    ids = list(server.core.peers)
    assert len(ids) == 2, ids
    target = ids[1]
    frames = [
        b"2"
        + str(100 + i).encode()
        + orjson.dumps(
            [
                "easyrtcCmd",
                {
                    "msgType": "candidate",
                    "targetEasyrtcid": target,
                    "msgData": {**CANDIDATE, "id": str(i)},
                },
            ]
        )
        for i in range(window)
    ]
    on_message = transport.on_message

    async def drive(count: int) -> None:
        for _ in range(count // window):
            for frame in frames:
                await on_message(a, frame, False)
            await asyncio.sleep(0)  # the pass ends: the frames are written

    await drive(min(messages, 20_000))  # warm up
    before = sink_b.written
    prof = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if prof is not None:
        prof.enable()
    await drive(messages)
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)  # type: ignore[arg-type]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert sink_b.written > before, "nothing reached B"
    print(
        f"{messages} candidates, window {window}, EIO{eio}: "
        f"{cpu / messages * 1e6:.2f} µs CPU per message ({messages / cpu:,.0f} msg per CPU-s, "
        f"{messages / wall:,.0f} msg/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=8, help="messages per event-loop pass")
    parser.add_argument("--eio", type=int, default=4, choices=(3, 4))
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile dump")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (as served)")
    args = parser.parse_args()
    coro = run(args.messages, args.window, args.eio, args.profile)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
