"""Where one idle websocket connection's memory goes: tracemalloc, by package and by line.

    .venv/bin/python bench/conn_memory.py 1000

Serves our server in this process (aiohttp, uvloop), connects N logged-in raw clients of
``bench/idle.py`` (rooms of 100) and compares tracemalloc snapshots before and after; the
clients' own allocations (``idle.py``) are left out. Not a test.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import idle

from easyrtc_server.app import create_app
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer

OPTIONS = {
    "roomMaxConnection": 0,
    "messageRate": 0,
    "maxConnections": 0,
    "maxConnectionsPerAddress": 0,
    "loginTimeout": 0,
}


def _package(filename: str) -> str:
    for name in ("aiohttp", "easyrtc_server", "asyncio"):
        if f"/{name}/" in filename:
            return name if name != "asyncio" else "event loop (C objects, seen from asyncio)"
    return filename.rsplit("/", 1)[-1]


async def main(n: int) -> None:
    server = EasyRtcServer(Options.from_mapping(OPTIONS))
    runner = web.AppRunner(create_app(server=server), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, idle.HOST, 0).start()
    port = runner.addresses[0][1]
    stats = {"pongs": 0, "dropped": 0}
    held: list[Any] = [await idle.connect(port, idle.HOST, "warm", stats) for _ in range(20)]
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    gate = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        async with gate:
            held.append(await idle.connect(port, "127.0.0.2", f"r{i // 100}", stats))

    await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.sleep(1)
    gc.collect()
    after = tracemalloc.take_snapshot()
    leave_out = [
        tracemalloc.Filter(False, idle.__file__),
        tracemalloc.Filter(False, tracemalloc.__file__),
    ]
    before, after = before.filter_traces(leave_out), after.filter_traces(leave_out)
    by_line = after.compare_to(before, "lineno")
    print(f"traced per connection: {sum(d.size_diff for d in by_line) / n:.0f} B")
    packages: dict[str, int] = {}
    for d in after.compare_to(before, "filename"):
        key = _package(d.traceback[0].filename)
        packages[key] = packages.get(key, 0) + d.size_diff
    for key, size in sorted(packages.items(), key=lambda kv: -kv[1])[:6]:
        print(f"{size / n:8.0f} B  {key}")
    print("lines:")
    for d in by_line[:25]:
        frame = d.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("src/")[-1]
        print(f"{d.size_diff / n:8.0f} B {d.count_diff / n:6.2f} objects  {where}:{frame.lineno}")
    await runner.cleanup()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
