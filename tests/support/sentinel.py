"""Redis behind Sentinel from Debian's ``redis-server`` and ``redis-sentinel``, for failover tests.

One master, two replicas and three sentinels (quorum 2), each a real process on a free loopback
port, no persistence (a replica's full sync is not kept on disk either, so a restarted server
comes back empty). ``down-after-milliseconds`` is short (``DOWN_AFTER_MS``) so a killed
master is failed over within seconds. Ready means: both replicas synced, and every sentinel
knows both replicas and both other sentinels (so a failover can be voted at once). Every
process's output is kept (``lines``, across restarts), so a test can wait for a sentinel's
``+switch-master`` and a failed run can keep each process's own log (``write_logs``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .ports import free_port

MASTER_NAME = "easyrtc"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
START_TIMEOUT = 30.0
SWITCH = r"\+switch-master {name} \S+ {old} \S+ (?P<new>\d+)"
"""A sentinel's line for a failover from port ``old`` (a pattern) to port ``new``."""


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
        """Start it and wait for ``ready`` in this run's output (a restart's earlier lines stay,
        after a line saying when it was started again)."""
        mark = len(self.lines)
        if mark:
            self.lines.append(f"--- {self.name} started again at {time.strftime('%H:%M:%S')} ---")
        self.process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert self.process.stdout is not None
        self._reader = asyncio.create_task(self._read(self.process.stdout))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self.wait_for(ready, start=mark)
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

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

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
            # A replica loads its full sync straight from the socket: with the default it
            # writes the RDB to disk, and a restart would load that stale copy (not empty).
            "--repl-diskless-load", "swapdb",
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

    async def ask_master(self) -> int:
        """The master's port as most sentinels that answer name it (``SENTINEL
        get-master-addr-by-name``), remembered in ``master_port``: the sentinels may have
        failed over on their own (a master slow to answer on a loaded machine), and a fault
        must hit the real master. Unchanged if no sentinel answers."""
        named: list[int] = []
        for sentinel in self.sentinels:
            client = Redis(
                host="127.0.0.1",
                port=sentinel.port,
                password=self.sentinel_password,
                socket_timeout=5.0,
            )
            try:
                found = await client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "get-master-addr-by-name", MASTER_NAME
                )
                if found:
                    named.append(int(found[1]))
            except (RedisError, OSError):
                pass
            finally:
                await client.aclose()
        if named:
            self.master_port = max(set(named), key=named.count)
        return self.master_port

    async def kill_master(self) -> int:
        """``kill -9`` of the master (as the sentinels know it); returns its port."""
        await self.ask_master()
        await self.server(self.master_port).stop(kill=True)
        return self.master_port

    async def start_server(self, port: int, *, replica_of: int | None) -> None:
        """Start the stopped server on ``port`` again, empty: a replica of ``replica_of``, or
        a master (``None``)."""
        replica = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
        command = [*self._server_command(port), *replica]
        (self.workdir / f"dump-{port}.rdb").unlink(missing_ok=True)  # empty, as it claims
        await self.server(port).start(command, "Ready to accept connections")

    async def rejoin_as_replica(self, port: int) -> None:
        """Start the killed server on ``port`` again, as a replica of the current master (so a
        later failover has as many replicas to choose from as the first)."""
        await self.start_server(port, replica_of=self.master_port)

    async def switched(self, starts: Sequence[int], old: int | None = None) -> int:
        """Wait for a sentinel's ``+switch-master`` (away from ``old`` if given) in the lines
        from ``starts`` on; the new master's port."""
        pattern = SWITCH.format(name=MASTER_NAME, old=old or r"\d+")
        waits = [
            asyncio.ensure_future(sentinel.wait_for(pattern, start=start))
            for sentinel, start in zip(self.sentinels, starts, strict=True)
        ]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            found = next(iter(done)).result()
        finally:
            for wait in waits:
                wait.cancel()
        self.master_port = int(found["new"])
        return self.master_port

    def write_logs(self, folder: Path) -> None:
        """Each server's and sentinel's own output so far, one file each, in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        for index, process in enumerate(self.servers):
            text = "\n".join(process.lines) + "\n"
            (folder / f"redis{index}-{process.port}.log").write_text(text)
        for index, process in enumerate(self.sentinels):
            text = "\n".join(process.lines) + "\n"
            (folder / f"sentinel{index}-{process.port}.log").write_text(text)

    async def stop(self) -> None:
        """``kill -9`` of every process at once, then the waits: a stop interrupted in its
        waits (Ctrl-C of a bench) leaves no server or sentinel running."""
        processes = [*self.sentinels, *self.servers]
        for process in processes:
            if process.process is not None and process.process.returncode is None:
                process.process.kill()
        for process in processes:
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
