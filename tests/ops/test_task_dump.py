"""``kill -USR1`` makes a running server log where each of its asyncio tasks waits.

What an operator of a stuck node reads: one line per task, with the chain of coroutines it
awaits (a cluster node's log reader, blocked in its ``XREAD``), code locations only.
"""

from __future__ import annotations

import asyncio
import re
import signal

from support.client import Client
from support.nodes import Node
from support.redisserver import running_redis


async def test_sigusr1_logs_every_task_and_where_it_waits() -> None:
    async with running_redis() as redis:
        node = Node(redis.url)
        await node.start()
        try:
            client = Client()
            await client.connect(node.url)
            secret = "a-credential-that-must-not-be-logged"
            await client.login(username="alice", credential={"password": secret})
            assert node.process is not None
            start = len(node.lines)
            node.process.send_signal(signal.SIGUSR1)
            async with asyncio.timeout(10):
                header = await node.wait_for_line("asyncio tasks (SIGUSR1)", start=start)
                reader = await node.wait_for_line("task cluster-log-reader", start=start)
            count = re.search(r"(\d+) asyncio tasks", header)
            assert count is not None and int(count[1]) > 3, header
            assert "_read_forever" in reader, reader  # the chain of awaits, not one frame
            assert secret not in "\n".join(node.lines)
            await client.sio.disconnect()
        finally:
            code = await node.stop()
        assert code == 0  # the signal stopped nothing
