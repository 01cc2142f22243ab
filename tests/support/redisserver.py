"""A real ``redis-server`` (Debian's) on a free loopback port, for cluster tests.

It runs as Redis is usually run for a cluster's shared state: no persistence (``--save ""``,
``--appendonly no``), so a restart comes back empty. ``stop``/``start`` on the same port let
failure tests take Redis away and bring it back. Its own output is kept (``lines``, across
restarts) so a failed run can show what Redis said.

With ``data_dir`` it keeps its dataset in ``data_dir/dump.rdb`` (``dump``): written on
``SAVE`` only (no automatic saves), and loaded at each start, as a Redis run with persistence
comes back with what it last saved.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from .ports import free_port

READY = b"Ready to accept connections"
START_TIMEOUT = 60.0  # a bound on a hang, not a speed test (loaded machines)


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    return found


class RedisServer:
    """One redis-server process; ``url`` stays the same across ``stop``/``start``."""

    def __init__(self, port: int | None = None, *, data_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        """Where its ``dump.rdb`` is written (``SAVE``) and loaded from (start); None: nowhere."""
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        """Its output, every run's, each run after a line saying when it started."""
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def dump(self) -> Path:
        """The file it saves to and starts from (with ``data_dir``)."""
        if self.data_dir is None:
            raise ValueError("this redis-server keeps no dataset (no data_dir)")
        return self.data_dir / "dump.rdb"

    async def start(self) -> None:
        """Start it and wait for its ready line."""
        self.lines.append(f"--- redis-server started at {time.strftime('%H:%M:%S')} ---")
        kept = () if self.data_dir is None else (
            "--dir", str(self.data_dir), "--dbfilename", self.dump.name,
        )  # fmt: skip
        self.process = await asyncio.create_subprocess_exec(
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "notice",
            *kept,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self.process.stdout is not None
        mark = len(self.lines)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while READY not in (line := await self.process.stdout.readline()):
                    if not line:
                        raise RuntimeError("redis-server exited: " + self._since(mark))
                    self._keep(line)
        except TimeoutError:
            raise RuntimeError("redis-server did not start: " + self._since(mark)) from None
        self._keep(line)
        self._drain = asyncio.create_task(self._read(self.process.stdout))

    def _keep(self, line: bytes) -> None:
        self.lines.append(line.decode(errors="replace").rstrip())

    def _since(self, mark: int) -> str:
        return "\n".join(self.lines[mark:])

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self._keep(line)

    async def stop(self, *, kill: bool = False) -> None:
        """Stop it (SIGTERM, or SIGKILL with ``kill``) and wait until it has exited."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        await process.wait()
        if self._drain is not None:
            await self._drain
            self._drain = None

    async def restart(self) -> None:
        """Stop and start again on the same port: it comes back empty."""
        await self.stop()
        await self.start()


@asynccontextmanager
async def running_redis(*, data_dir: Path | None = None) -> AsyncIterator[RedisServer]:
    """A fresh, empty redis-server for the duration of the block (keeping its dataset in
    ``data_dir`` if given: see ``RedisServer``)."""
    server = RedisServer(data_dir=data_dir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
