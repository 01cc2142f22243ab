"""A partitioned node whose partition reader lags, for the ordering test:
``python -m cluster.slow_reader_node ARGS`` (the server's command line).

Each read that brought facts is handed on ``SLOW_READER_LAG`` seconds late (default 0.2):
relays from other nodes reach it over pub/sub at once, the facts their senders made before them
late, as on a node whose reader is behind. Without the ordering (``factorder``) its clients get
relays from peers their lists do not show yet.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from easyrtc_server import cli
from easyrtc_server.cluster.partitionfeed import PartitionFeed
from easyrtc_server.cluster.partitionlog import PartitionRead, PartitionReader

LAG = float(os.environ.get("SLOW_READER_LAG", "0.2"))


def lagging(original: Callable[[Any], Awaitable[list[PartitionRead]]]) -> Any:
    async def lagging_read(self: Any) -> list[PartitionRead]:
        reads = await original(self)
        if any(read.entries for read in reads):
            await asyncio.sleep(LAG)  # the point: a reader behind
        return reads

    return lagging_read


if __name__ == "__main__":
    for reader in (PartitionReader, PartitionFeed):  # as the topology reads: both
        reader.read = lagging(reader.read)  # type: ignore[method-assign]
    cli.main()
