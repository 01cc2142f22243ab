"""Continuity in a cluster under load (issue 24): N keyed Node clients in pairs (default 200)
through a round-robin nginx over 3 nodes on one Redis, each sending its partner a numbered
message every INTERVAL ms; a ``kill -9`` of a node, a SIGTERM drain of a node, then a rolling
restart of all three. Prints the drop-to-resume times (p50, p99, max) and what the clients saw
(easyrtcids changed, ``removeClient`` for keyed clients, messages lost or duplicated,
``in_flight``: lost on their way to the killed node before its clients resumed, ``reordered``:
received after a later one of the same sender, ``repeats``: second copies sent again after a
resume, which the clients dropped by their stamp) as JSON. The clients confirm their messages
(``easyrtcResumeAcks``, ``delivery``).

    .venv/bin/python bench/continuity.py --clients 200 --interval 1000

The same steps as ``tests/cluster/test_continuity.py``, which runs them with 200 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster.keyed_pairs import keyed_pairs, percentile, verdict
from cluster.test_continuity import Three, sockets_on
from support.nginx import running_nginx
from support.redisserver import running_redis

SETTLE = 180.0


async def run(clients: int, interval: int, rooms: str) -> dict[str, object]:
    async with running_redis() as redis:
        cluster = Three(redis.url)
        await asyncio.gather(*(node.start() for node in cluster.nodes))
        try:
            upstreams = [f"127.0.0.1:{node.port}" for node in cluster.nodes]
            async with running_nginx(upstreams) as nginx:
                url = f"http://127.0.0.1:{nginx.port}"
                async with keyed_pairs(url, clients, interval, rooms) as pairs:
                    started = time.monotonic()
                    try:
                        async with asyncio.timeout(SETTLE):
                            await pairs.ready.wait()
                    except TimeoutError:
                        raise SystemExit(f"not all clients logged in: {pairs.errors()}") from None
                    print(f"{clients} clients in after {time.monotonic() - started:.1f} s")
                    steps = [(0, True), (1, False), (0, False), (1, False), (2, False)]
                    for index, kill in steps:
                        before = pairs.dropped
                        on_it = await sockets_on(cluster.nodes[index])
                        await pairs.mark("kill" if kill else "drain")
                        await cluster.restart(index, kill=kill)
                        async with asyncio.timeout(SETTLE):
                            await pairs.settled_after(before + on_it)
                        await pairs.mark("settled")
                        print(f"node {index} {'killed' if kill else 'drained'}: {on_it} resumed")
                        await cluster.start(index)
                    summary = await pairs.stop()
        finally:
            for node in cluster.nodes:
                await node.stop()
    seen = verdict(summary)
    times = pairs.resumed
    return {
        "clients": clients,
        "interval_ms": interval,
        "rooms": rooms,
        "resumes": len(times),
        "drop_to_resume_ms": {
            "p50": percentile(times, 0.5),
            "p99": percentile(times, 0.99),
            "max": max(times, default=0),
        },
        "changed_ids": len(seen.changed_ids),
        "removed_keyed": len(seen.removed_keyed),
        **{k: v for k, v in asdict(seen).items() if k not in ("changed_ids", "removed_keyed")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--interval", type=int, default=1000, help="ms between messages")
    parser.add_argument(
        "--rooms", choices=("one", "pairs"), default="pairs",
        help="one room for everyone, or a room per pair (as calls are; the default)",
    )  # fmt: skip
    args = parser.parse_args()
    result = asyncio.run(run(args.clients, args.interval, args.rooms))
    result["lost"] = len(result["lost"])  # type: ignore[arg-type]
    result["duplicated"] = len(result["duplicated"])  # type: ignore[arg-type]
    result["in_flight"] = len(result["in_flight"])  # type: ignore[arg-type]
    result["reordered"] = len(result["reordered"])  # type: ignore[arg-type]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
