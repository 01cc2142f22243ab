"""``--workers N``: one command, N processes serving one port as nodes of one cluster.

Real redis-server, a real supervisor process and its real workers. Which worker serves a
connection is read where the kernel says it: the process holding the accepted socket.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from support.client import Client
from support.nodes import LISTENING, Node
from support.ports import free_port
from support.redisserver import RedisServer, running_redis

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT = 60.0
"""A bound on a hang (workers start Python processes: slow on a loaded machine)."""
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


class Supervisor(Node):
    """``easyrtc-server --workers N``: the supervisor process, its log holding its workers'."""

    def __init__(self, redis_url: str, workers: int, cluster: str) -> None:
        super().__init__(redis_url, cluster=cluster, args=("--workers", str(workers)))
        self.workers = workers

    async def all_listening(self, start: int = 0) -> None:
        """Until ``workers`` start-up lines from ``start`` on."""
        index = start
        for _ in range(self.workers):
            line = await self.wait_for_line(LISTENING, start=index)
            index = self.lines.index(line, index) + 1

    def worker_pids(self) -> dict[int, int]:
        """Worker number -> pid of its latest start."""
        pids: dict[int, int] = {}
        for line in self.lines:
            if found := STARTED.search(line):
                pids[int(found[1])] = int(found[2])
        return pids


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def redis_server() -> AsyncIterator[RedisServer]:
    async with running_redis() as server:
        yield server


@asynccontextmanager
async def _supervising(redis_server: RedisServer, cluster: str) -> AsyncIterator[Supervisor]:
    process = Supervisor(redis_server.url, 2, cluster=cluster)
    try:
        await process.start()
        async with asyncio.timeout(WAIT):
            await process.all_listening()
        yield process
    finally:
        await process.stop(kill=True)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def supervisor(redis_server: RedisServer) -> AsyncIterator[Supervisor]:
    """Two workers shared by the tests that leave them running."""
    async with _supervising(redis_server, "shared") as process:
        yield process


@pytest_asyncio.fixture(loop_scope="module")
async def own_supervisor(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[Supervisor]:
    """Two workers for a test that ends them."""
    async with _supervising(redis_server, request.node.name[:40]) as process:
        yield process


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _serving_pid(client_port: int, server_port: int, pids: list[int]) -> int | None:
    """The pid among ``pids`` holding the server side of the connection from ``client_port``."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    for row in rows:
        local, remote, inode = row[1], row[2], row[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            for pid in pids:
                if inode in _socket_inodes(pid):
                    return pid
    return None


async def _engineio_handshake(port: int) -> tuple[asyncio.StreamWriter, bytes]:
    """Open a keep-alive connection and start an Engine.IO session on it; the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Connection: keep-alive\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])  # type: ignore[index]
    return writer, head + await reader.readexactly(length)


async def test_two_workers_serve_one_port_as_two_nodes(supervisor: Supervisor) -> None:
    pids = list(supervisor.worker_pids().values())
    assert len(set(pids)) == 2
    served_by: set[int] = set()
    writers = []
    try:
        for _ in range(64):  # the kernel spreads connections: both are seen long before 64
            writer, response = await _engineio_handshake(supervisor.port)
            writers.append(writer)
            assert response.startswith(b"HTTP/1.1 200"), response
            assert b'"sid":"' in response, response
            client_port = writer.get_extra_info("sockname")[1]
            served_by.add(_serving_pid(client_port, supervisor.port, pids))  # type: ignore[arg-type]
            if served_by == set(pids):
                break
    finally:
        for writer in writers:
            writer.close()
    assert served_by == set(pids)
    redis = Redis.from_url(supervisor.redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{supervisor.cluster}:alive:*")]
        infos = [orjson.loads(await redis.get(key)) for key in keys]
    finally:
        await redis.aclose()
    node_of = {info["pid"]: info["node"] for info in infos}  # a killed worker's key may linger
    assert set(pids) <= node_of.keys()
    assert len({node_of[pid] for pid in pids}) == 2
    client = Client()
    await client.connect(supervisor.url)
    try:
        await client.login(appName="workers")  # an EasyRTC login through the shared port
    finally:
        await client.sio.disconnect()


async def test_a_worker_killed_is_restarted_and_logged(supervisor: Supervisor) -> None:
    before = supervisor.worker_pids()
    mark = len(supervisor.lines)
    os.kill(before[1], signal.SIGKILL)
    async with asyncio.timeout(WAIT):
        died = await supervisor.wait_for_line("worker 1 ", start=mark)
        assert f"worker 1 (pid {before[1]}) died: signal SIGKILL; restarting it" in died
        await supervisor.wait_for_line("worker 1 started", start=mark)
        await supervisor.wait_for_line(LISTENING, start=mark)
    after = supervisor.worker_pids()
    assert after[1] != before[1] and after[2] == before[2]
    assert _alive(after[1])


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def test_sigterm_drains_every_worker_and_exits_0(own_supervisor: Supervisor) -> None:
    client = Client()
    await client.connect(own_supervisor.url)
    await client.login(appName="drained")
    pids = own_supervisor.worker_pids().values()
    process = own_supervisor.process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(WAIT):
        goodbye = await client.next_cmd()  # the worker holding it drained it: it was told why
        assert goodbye["msgType"] == "error"
        assert goodbye["msgData"]["errorCode"] == "SERVER_SHUTDOWN"
        await client.disconnected.wait()
        assert await process.wait() == 0
    assert not any(_alive(pid) for pid in pids)
    assert any("all workers ended" in line for line in own_supervisor.lines)
    assert sum("ended: exit code 0" in line for line in own_supervisor.lines) == 2


async def _ended(pid: int) -> None:
    """Until process ``pid`` has ended (its pidfd turns readable)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, done.set)
    try:
        await done.wait()
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def test_workers_end_when_the_supervisor_is_killed(own_supervisor: Supervisor) -> None:
    pids = own_supervisor.worker_pids().values()
    await own_supervisor.kill()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(_ended(pid) for pid in pids))


async def test_workers_on_a_port_in_use_stop_at_start_saying_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "easyrtc_server", "--workers", "2", "--host", "127.0.0.1",
            "--port", str(port), "--redis", f"redis://127.0.0.1:{free_port()}/0",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(WAIT):
            _, stderr = await process.communicate()
    assert process.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in stderr.decode()


def _proc_strings(pid: int, name: str) -> list[bytes]:
    """``/proc/PID/cmdline`` or ``environ``: what ``ps`` and the kernel show of a process."""
    return Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")


async def test_the_redis_url_is_on_no_workers_command_line(supervisor: Supervisor) -> None:
    pids = supervisor.worker_pids()
    assert len(pids) == 2
    for pid in pids.values():
        args = _proc_strings(pid, "cmdline")
        assert not any(b"redis://" in arg for arg in args), args
        assert b"--redis" not in args
        environ = _proc_strings(pid, "environ")
        assert f"EASYRTC_REDIS_URL={supervisor.redis_url}".encode() in environ
