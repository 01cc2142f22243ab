"""Redis behind Sentinel from Debian's ``redis-server`` and ``redis-sentinel``, for failover tests.

One master, two replicas and three sentinels (quorum 2), each a real process on a free loopback
port, no persistence. ``down-after-milliseconds`` is short (``DOWN_AFTER_MS``) so a killed
master is failed over within seconds. Ready means: both replicas synced, and every sentinel
knows both replicas and both other sentinels (so a failover can be voted at once). Every
process's output is kept (``lines``), so a test can wait for a sentinel's ``+switch-master``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from .ports import free_port

MASTER_NAME = "easyrtc"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
START_TIMEOUT = 30.0
SWITCH = re.compile(rf"\+switch-master {MASTER_NAME} \S+ (\d+) \S+ (\d+)")


class LoggedProcess:
    """One process whose output lines are kept as they come."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._added = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, command: Sequence[str], ready: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert self.process.stdout is not None
        self._reader = asyncio.create_task(self._read(self.process.stdout))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self.wait_for(ready)
        except (TimeoutError, RuntimeError):
            await self.stop(kill=True)
            raise RuntimeError(f"{self.name} did not start:\n" + "\n".join(self.lines)) from None

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._added.set()

    async def wait_for(self, pattern: str, *, count: int = 1, start: int = 0) -> re.Match[str]:
        """The ``count``-th line from index ``start`` on matching ``pattern`` (waits; callers
        bound the wait)."""
        regex = re.compile(pattern)
        index, seen = start, 0
        while True:
            while index < len(self.lines):
                found = regex.search(self.lines[index])
                index += 1
                if found:
                    seen += 1
                    if seen == count:
                        return found
            if self._reader is not None and self._reader.done():
                raise RuntimeError(f"{self.name} exited before logging {pattern!r}")
            self._added.clear()
            await self._added.wait()

    async def stop(self, *, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            if kill:
                process.kill()
            else:
                process.terminate()
        await process.wait()
        if self._reader is not None:
            await self._reader


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


class SentinelSetup:
    """A master, two replicas, three sentinels; ``url`` is what a node is given."""

    def __init__(
        self, workdir: Path, *, password: str | None = None, sentinel_password: str | None = None
    ) -> None:
        self.workdir = workdir
        self.password = password
        """The master's and replicas' ``requirepass``."""
        self.sentinel_password = sentinel_password
        """The sentinels' own ``requirepass``."""
        self.servers = [LoggedProcess(f"redis {i}", free_port()) for i in range(3)]
        self.sentinels = [LoggedProcess(f"sentinel {i}", free_port()) for i in range(3)]
        self.master_port = self.servers[0].port

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}{hosts}/{MASTER_NAME}/0"

    def server(self, port: int) -> LoggedProcess:
        return next(s for s in self.servers if s.port == port)

    async def start(self) -> None:
        master, *replicas = self.servers
        await master.start(self._server_command(master.port), "Ready to accept connections")
        for replica in replicas:
            command = [*self._server_command(replica.port), "--replicaof", "127.0.0.1"]
            await replica.start([*command, str(master.port)], "Ready to accept connections")
        async with asyncio.timeout(START_TIMEOUT):
            for replica in replicas:
                await replica.wait_for("MASTER <-> REPLICA sync: Finished with success")
        for sentinel in self.sentinels:
            await sentinel.start(
                [_binary("redis-sentinel"), str(self._sentinel_conf(sentinel.port))],
                r"\+monitor master",
            )
        async with asyncio.timeout(START_TIMEOUT):
            for sentinel in self.sentinels:
                await sentinel.wait_for(r"\+slave slave", count=2)
                await sentinel.wait_for(r"\+sentinel sentinel", count=2)

    def _server_command(self, port: int) -> list[str]:
        auth = ["--requirepass", self.password, "--masterauth", self.password]
        return [
            _binary("redis-server"),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--dbfilename", f"dump-{port}.rdb",
            *(auth if self.password else []),
        ]  # fmt: skip

    def _sentinel_conf(self, port: int) -> Path:
        conf = self.workdir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            f"dir {self.workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            + (f"sentinel auth-pass {MASTER_NAME} {self.password}\n" if self.password else "")
            + (
                f"requirepass {self.sentinel_password}\n"
                f"sentinel sentinel-pass {self.sentinel_password}\n"
                if self.sentinel_password
                else ""
            )
        )
        return conf

    async def kill_master(self) -> int:
        """``kill -9`` of the master; returns its port."""
        await self.server(self.master_port).stop(kill=True)
        return self.master_port

    async def rejoin_as_replica(self, port: int) -> None:
        """Start the killed server on ``port`` again, as a replica of the current master (so a
        later failover has as many replicas to choose from as the first)."""
        command = [*self._server_command(port), "--replicaof", "127.0.0.1", str(self.master_port)]
        await self.server(port).start(command, "Ready to accept connections")

    async def switched(self, starts: Sequence[int]) -> int:
        """Wait for a sentinel's ``+switch-master``; the new master's port."""
        waits = [
            asyncio.ensure_future(sentinel.wait_for(SWITCH.pattern, start=start))
            for sentinel, start in zip(self.sentinels, starts, strict=True)
        ]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            found = next(iter(done)).result()
        finally:
            for wait in waits:
                wait.cancel()
        self.master_port = int(found[2])
        return self.master_port

    async def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            await process.stop(kill=True)


@asynccontextmanager
async def running_sentinels(
    *, password: str | None = None, sentinel_password: str | None = None
) -> AsyncIterator[SentinelSetup]:
    """A fresh master, two replicas and three sentinels for the duration of the block (with
    ``requirepass`` on the servers and on the sentinels when given)."""
    with tempfile.TemporaryDirectory(prefix="easyrtc-sentinel-") as workdir:
        setup = SentinelSetup(Path(workdir), password=password, sentinel_password=sentinel_password)
        try:
            await setup.start()
            yield setup
        finally:
            await setup.stop()
