"""Cluster nodes as real processes (``python -m easyrtc_server --redis ...``), for cluster tests.

Each node is started the way a user starts one, on its own free loopback port, and is ready when
its start-up line ("listening on ...") has been logged. Its log lines are kept (``lines``) so a
test can assert what an operator would read. ``kill`` is ``kill -9``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from .ports import free_port

START_TIMEOUT = 60.0
"""Seconds a node may take to log that it listens (imports alone took 12 s on a loaded machine)."""
STOP_TIMEOUT = 30.0
"""A node drains its clients for at most ``shutdown_drain_time`` (10 s), then leaves."""
LISTENING = "listening on "


class Node:
    """One server process, a node of cluster ``cluster`` on ``redis_url`` (None: alone)."""

    def __init__(
        self,
        redis_url: str | None,
        *,
        cluster: str = "test",
        args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        module: str = "easyrtc_server",
    ) -> None:
        self.redis_url = redis_url
        self.module = module
        self.cluster = cluster
        self.args = args
        self.env = dict(env or {})
        self.port = port or free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._line_added = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, "EASYRTC_LOGIN_TIMEOUT": "0", **self.env}
        cluster = (
            () if self.redis_url is None else ("--redis", self.redis_url, "--cluster", self.cluster)
        )
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module,
            "--host", "127.0.0.1", "--port", str(self.port),
            *cluster,
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )  # fmt: skip
        assert self.process.stdout is not None
        self._reader = asyncio.create_task(self._read(self.process.stdout))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self.wait_for_line(LISTENING)
        except (TimeoutError, RuntimeError):
            await self.stop(kill=True)
            raise RuntimeError("node did not start:\n" + "\n".join(self.lines)) from None

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._line_added.set()

    async def wait_for_line(self, text: str, *, start: int = 0) -> str:
        """The first log line from index ``start`` on that contains ``text`` (waits for it;
        callers bound the wait with ``asyncio.timeout``)."""
        index = start
        while True:
            while index < len(self.lines):
                if text in self.lines[index]:
                    return self.lines[index]
                index += 1
            if self._reader is not None and self._reader.done():
                raise RuntimeError(f"node exited before logging {text!r}")
            self._line_added.clear()
            await self._line_added.wait()

    async def stop(self, *, kill: bool = False) -> int | None:
        """SIGTERM (graceful drain) or SIGKILL; returns the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.returncode is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                code = await process.wait()
        except TimeoutError:  # a node that does not exit is a failure, not a hung test run
            process.kill()
            await process.wait()
            raise AssertionError(
                f"node did not exit within {STOP_TIMEOUT} s of SIGTERM; its log:\n"
                + "\n".join(self.lines[-40:])
            ) from None
        finally:
            if self._reader is not None:
                await self._reader
        return code

    async def kill(self) -> None:
        """``kill -9``: no goodbye to Redis or the other nodes."""
        await self.stop(kill=True)


@asynccontextmanager
async def running_nodes(
    redis_url: str,
    count: int,
    *,
    cluster: str = "test",
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    module: str = "easyrtc_server",
) -> AsyncIterator[list[Node]]:
    """``count`` nodes of one cluster, started together, stopped after the block (``module``:
    what ``python -m`` runs, the server's command line by default)."""
    async with AsyncExitStack() as stack:
        nodes = [
            Node(redis_url, cluster=cluster, args=args, env=env, module=module)
            for _ in range(count)
        ]
        for node in nodes:
            stack.push_async_callback(node.stop)
        await asyncio.gather(*(node.start() for node in nodes))
        yield nodes
