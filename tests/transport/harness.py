"""A fake seam server, a running LeanTransport, and a driver for the Node socket.io clients."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from aiohttp import web

from easyrtc_server.protocol.errors import ErrorCode, error_message
from easyrtc_server.transport import Ack, Link
from easyrtc_server.transport.socketio import LeanTransport
from support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "clients" / "driver.js"
TIMEOUT = 10.0


@dataclass(eq=False)
class FakePeer:
    link: Link
    number: int
    received: list[tuple[str, Any]] = field(default_factory=list)
    closes: int = 0


class EchoServer:
    """A seam server for tests: acks events with what it got and pushes on request.

    Events: ``echo`` (ack with the data), ``push`` (push "pushed" with the data to the sender),
    ``bcast`` (push "bcast" to every open peer), ``close`` (close the sender's
    link), ``flood`` ({"count", "size"}: push that many messages of that size), ``bin`` (ack
    with {"type", "len", "text"} of the data), ``boom`` (raise), ``ack2`` (ack twice); any other
    event is recorded and acked with None.
    """

    def __init__(
        self, *, refuse: bool = False, greet: bool = False, stream: tuple[int, float] | None = None
    ) -> None:
        self.refuse = refuse
        """``open`` refuses every socket."""
        self.greet = greet
        """``open`` pushes "pushed" "welcome" (before it returns)."""
        self.stream = stream
        """``(count, every)``: from its opening on, each peer is pushed "streamed" ``{"s": i}``
        for i in 0..count-1, one every ``every`` seconds (while its transport may upgrade)."""
        self.streams: list[asyncio.Task[None]] = []
        self.draining = False
        """True: new sessions are refused at their handshake (``SeamServer.draining``)."""
        self.opening = 0
        self.peers: list[FakePeer] = []
        self.closed: list[FakePeer] = []
        self.errors: list[str] = []
        self._changed = asyncio.Event()

    @property
    def open_peers(self) -> list[FakePeer]:
        return [p for p in self.peers if p.closes == 0]

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, predicate: Callable[[], bool], seconds: float = TIMEOUT) -> None:
        """Until ``predicate()`` holds (checked whenever the server sees something)."""
        async with asyncio.timeout(seconds):
            while not predicate():
                await self._changed.wait()

    # -- the seam --------------------------------------------------------------------------

    async def open(self, link: Link) -> FakePeer | None:
        self.opening += 1
        self._touch()
        await asyncio.sleep(0)  # let the loop run: open may take time
        if self.greet:
            await link.send("pushed", "welcome")
        if self.refuse:
            return None
        peer = FakePeer(link, len(self.peers))
        self.peers.append(peer)
        self._touch()
        if self.stream is not None:
            self.streams.append(asyncio.create_task(self._stream(link, *self.stream)))
        return peer

    def stop_streams(self) -> None:
        for task in self.streams:
            task.cancel()

    async def _stream(self, link: Link, count: int, every: float) -> None:
        for i in range(count):
            await link.send("streamed", {"s": i})
            await asyncio.sleep(every)

    def refused(self, reason: str) -> Any:
        return error_message(ErrorCode.MSG_REJECT_BAD_STRUCTURE, 0)

    async def receive(self, peer: FakePeer, event: str, data: Any, ack: Ack | None) -> None:
        if peer.closes:
            self.errors.append(f"receive after close on peer {peer.number}")
        peer.received.append((event, data))
        self._touch()
        if event == "echo":
            if ack is not None:
                await ack(data)
            return
        if event == "slow":  # a handler that waits (a hook's await) before it answers
            for _ in range(3):
                await asyncio.sleep(0)
        elif event == "push":
            await peer.link.send("pushed", data)
        elif event == "bcast":
            for other in self.open_peers:
                await other.link.send("bcast", data)
        elif event == "close":
            await peer.link.close()
        elif event == "flood":
            chunk = "x" * int(data["size"])
            for i in range(int(data["count"])):
                await peer.link.send("pushed", {"i": i, "chunk": chunk})
        elif event == "boom":
            raise RuntimeError("the fake server fails on purpose")
        elif event == "ack2":
            if ack is not None:
                await ack(data)
                await ack("again")
            return
        elif event == "bin":
            if ack is not None:
                text = data.decode() if isinstance(data, bytes) else None
                await ack({"type": type(data).__name__, "len": len(data), "text": text})
            return
        if ack is not None:
            await ack(None)

    async def close(self, peer: FakePeer) -> None:
        peer.closes += 1
        if peer.closes > 1:
            self.errors.append(f"close called {peer.closes} times on peer {peer.number}")
        self.closed.append(peer)
        self._touch()


@dataclass
class Running:
    url: str
    server: EchoServer
    transport: LeanTransport

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@asynccontextmanager
async def lean_server(
    *,
    refuse: bool = False,
    greet: bool = False,
    stream: tuple[int, float] | None = None,
    driver: str = "aiohttp",
    uvicorn_options: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[Running]:
    """LeanTransport with an EchoServer on a free loopback port, on aiohttp or (``driver="asgi"``)
    on its ASGI driver under uvicorn (``uvicorn_options``: more `uvicorn.Config` arguments);
    ``"asgi-direct"``: uvicorn's websockets-sansio without compression, which the driver writes
    to directly (`DirectWebSocket`)."""
    server = EchoServer(refuse=refuse, greet=greet, stream=stream)
    transport = LeanTransport(server, **options)
    if driver == "asgi-direct":
        driver = "asgi"
        uvicorn_options = {"ws": "websockets-sansio", "ws_per_message_deflate": False}
    if driver == "asgi":
        async with _uvicorn(transport.asgi_app(), **(uvicorn_options or {})) as url:
            try:
                yield Running(url, server, transport)
            finally:
                server.stop_streams()
        assert not server.errors, server.errors
        return
    app = web.Application()
    transport.attach(app)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Running(f"http://127.0.0.1:{port}", server, transport)
    finally:
        server.stop_streams()
        async with asyncio.timeout(TIMEOUT):
            await runner.cleanup()
    assert not server.errors, server.errors


@asynccontextmanager
async def _uvicorn(app: Any, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this event loop, on a socket listening before it starts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT):
            await task
        sock.close()


class NodeClient:
    """One Node socket.io-client process (see clients/driver.js)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []
        self._unread: list[dict[str, Any]] = []
        self._next_id = 0

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"node client exited; saw {self.seen}")
            try:
                item: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            self.seen.append(item)
            return item

    async def expect(self, ev: str, seconds: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """The next event called ``ev`` (with the given fields); others stay queued."""
        for i, item in enumerate(self._unread):
            if item["ev"] == ev and all(item.get(k) == v for k, v in match.items()):
                del self._unread[i]
                return item
        async with asyncio.timeout(seconds):
            while True:
                item = await self._read()
                if item["ev"] == ev and all(item.get(k) == v for k, v in match.items()):
                    return item
                self._unread.append(item)

    def events(self, ev: str) -> list[dict[str, Any]]:
        return [item for item in self.seen if item["ev"] == ev]

    async def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()

    async def emit(self, event: str, data: Any, *, ack: bool = False, binary: bool = False) -> int:
        self._next_id += 1
        await self.send(
            {
                "cmd": "emit",
                "id": self._next_id,
                "event": event,
                "data": data,
                "ack": ack,
                "binary": binary,
            }
        )
        return self._next_id

    async def call(self, event: str, data: Any, *, binary: bool = False) -> Any:
        n = await self.emit(event, data, ack=True, binary=binary)
        return (await self.expect("ack", id=n))["data"]

    async def transport(self) -> str | None:
        await self.send({"cmd": "transport"})
        name: str | None = (await self.expect("transport"))["name"]
        return name

    async def session_id(self) -> str | None:
        """The Engine.IO session id the client holds now."""
        await self.send({"cmd": "transport"})
        sid: str | None = (await self.expect("transport"))["sid"]
        return sid


@asynccontextmanager
async def node_client(
    version: str, url: str, options: dict[str, Any] | None = None
) -> AsyncIterator[NodeClient]:
    """Run clients/driver.js with socket.io-client ``version`` ("4" or "2")."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    package = "socket.io-client-v2" if version == "2" else "socket.io-client"
    if not (ROOT / "node_modules" / package).is_dir():
        raise RuntimeError(f"npm package {package} missing: run `npm install` in {ROOT}")
    proc = await asyncio.create_subprocess_exec(
        node,
        str(DRIVER),
        version,
        url,
        json.dumps(options or {}),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=16 * 1024 * 1024,
    )
    client = NodeClient(proc)
    try:
        await client.expect("ready")
        yield client
    finally:
        if proc.returncode is None:
            with suppress(ProcessLookupError):
                proc.kill()
        async with asyncio.timeout(TIMEOUT):
            await proc.wait()
