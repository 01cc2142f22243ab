"""A state change whose log append lost its reply is answered as it happened, not refused.

Found by the 30-minute chaos run of issue 21 (``bench/RESULTS.md``): a node was stopped
(SIGSTOP) past its Redis client's 5 s read timeout while its log writer waited for an
``XADD``'s reply. On SIGCONT the read timed out, the client was told its ``roomJoin`` failed
(``MSG_REJECT_GEN_FAIL``), and every replica applied the join from the log: the client's own
view and the cluster's parted for good (a ghost in 56 other clients' lists).

Here a proxy between a real node and a real redis-server passes the node's ``XADD`` of the
join on to Redis and drops Redis' reply to it (a lost reply, without timing luck). The join
must be answered as what happened: joined, and the other client sees the joiner in the room.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from support.nodes import running_nodes
from support.ports import free_port
from support.redisserver import running_redis

from .test_failures import clients

CLUSTER = "lost-reply"
ANSWER_BOUND = 30.0
"""Seconds the joiner waits for its answer (the node's read gives up after 5 s)."""


class ReplyLosingProxy:
    """Forwards ``127.0.0.1:port`` to Redis on ``target``; once ``arm``ed, the first connection
    that sends an ``XADD`` to the cluster's log gets nothing back from then on (Redis ran it)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.armed = False
        self.lost = asyncio.Event()
        """Set when an ``XADD`` was passed on and its reply is being dropped."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        dropping = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if self.armed and b"XADD" in data and f"{CLUSTER}:log".encode() in data:
                    self.armed = False
                    dropping.set()
                    self.lost.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if dropping.is_set():
                    continue
                writer.write(data)
                await writer.drain()

        for pipe in (upstream(), downstream()):
            task = asyncio.create_task(self._pipe(pipe, writer, up_writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(
        pipe: object, writer: asyncio.StreamWriter, up_writer: asyncio.StreamWriter
    ) -> None:
        try:
            await pipe  # type: ignore[misc]
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for each in (writer, up_writer):
                with suppress(Exception):
                    each.transport.abort()


async def test_a_join_whose_log_append_lost_its_reply_is_answered_as_joined() -> None:
    async with running_redis() as redis:
        proxy = ReplyLosingProxy(redis.port)
        await proxy.start()
        try:
            async with (
                running_nodes(proxy.url, 1, cluster=CLUSTER) as (node,),
                clients() as join,
            ):
                joiner, other = await join(node), await join(node)
                both = {joiner.id, other.id}
                await asyncio.gather(joiner.sees(both), other.sees(both))
                proxy.armed = True
                reply = await joiner.client.sio.call(
                    "easyrtcCmd",
                    {"msgType": "roomJoin", "msgData": {"roomJoin": {"b": {"roomName": "b"}}}},
                    timeout=ANSWER_BOUND,
                )
                assert proxy.lost.is_set()  # the join reached Redis, its reply did not come back
                # was MSG_REJECT_GEN_FAIL "Timeout reading from ...", while it was applied
                assert reply["msgType"] == "roomData", reply
                assert "b" in reply["msgData"]["roomData"], reply
                listed = await other.client.cmd(
                    "roomJoin", msgData={"roomJoin": {"b": {"roomName": "b"}}}
                )
                assert set(listed["msgData"]["roomData"]["b"]["clientList"]) == both, listed
        finally:
            await proxy.stop()
