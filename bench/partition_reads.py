"""What reading only the partitions of interest saves (issue 23): a reader of 4 of 128
partition logs against one of all 128, while facts are appended to all of them.

Not a test. Starts a redis-server (or, with ``--cluster``, a Redis Cluster of three masters and
three replicas, ``tests/support/rediscluster.py``), then per round and per setup, alternating:
an appender process (this file with ``--append``) appends ``--entries`` facts of a room join's
size (a ``join`` fact of a room of 4, ``facts.encode``) round-robin to every partition, one
``PartitionWriter`` pass of 128 appends at a time, while this process reads them with a
``PartitionReader`` gaining ``--few`` partitions, or all of them, or none (no reader: the
appender's own cost, subtracted). Printed per setup: the reader's CPU per entry it was given and
per entry appended, Redis's bytes out (``INFO stats total_net_output_bytes``, every master) and
CPU (``INFO cpu``) beyond the appender's own, per entry appended.

    .venv/bin/python bench/partition_reads.py                   # one Redis, 3 rounds
    .venv/bin/python bench/partition_reads.py --cluster --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from easyrtc_server.cluster import facts  # noqa: E402
from easyrtc_server.cluster.keys import ClusterKeys  # noqa: E402
from easyrtc_server.cluster.partitionlog import (  # noqa: E402
    PartitionLayout,
    PartitionReader,
    PartitionWriter,
)
from easyrtc_server.cluster.redisclient import AsyncClient, Topology, topology_of  # noqa: E402
from easyrtc_server.options import Options  # noqa: E402

PARTITIONS = 128


def join_fact(n: int) -> bytes:
    """A ``join`` into a room of 4, as big as one (about 200 bytes)."""
    entry = {"username": f"user{n}", "presence": {"show": "chat", "status": "here"}}
    return facts.encode(
        facts.Reserve(
            rid=f"r{n:08d}",
            node="node0001",
            app="easyrtc.app",
            cid=f"cid{n:016d}",
            login=1,
            rooms={f"room{n // 4}": entry},
            join=True,
        )
    )


def layout_of(topology: Topology, name: str) -> PartitionLayout:
    return PartitionLayout(ClusterKeys(name, hash_tags=topology.hash_tags), PARTITIONS)


async def append(url: str, name: str, entries: int) -> None:
    """The appender: ``entries`` facts round-robin over every partition."""
    topology = topology_of(Options(redis_url=url))
    writer = PartitionWriter(topology.client(), layout_of(topology, name))
    running = asyncio.ensure_future(writer.run())
    fact = join_fact(7)
    for first in range(0, entries, PARTITIONS):
        count = min(PARTITIONS, entries - first)
        await asyncio.gather(*(writer.append(p, fact) for p in range(count)))
    running.cancel()


async def redis_stats(clients: list[AsyncClient]) -> tuple[int, float]:
    """Bytes out and CPU seconds of every master."""
    out, cpu = 0, 0.0
    for client in clients:
        stats = await client.info("stats")
        used = await client.info("cpu")
        out += int(stats["total_net_output_bytes"])
        cpu += float(used["used_cpu_user"]) + float(used["used_cpu_sys"])
    return out, cpu


async def one_run(
    url: str, masters: list[AsyncClient], name: str, entries: int, interest: int
) -> dict[str, float]:
    topology = topology_of(Options(redis_url=url))
    layout = layout_of(topology, name)
    reader = PartitionReader(topology.client(), layout)
    step = PARTITIONS // interest if interest else 1
    for i in range(interest):  # spread over the partitions and over the read groups
        reader.gain(i * step + i % step)
    wanted = {p: 0 for p in reader.interest}
    loaded: set[int] = set()
    while loaded != set(wanted):  # the snapshots (none yet) loaded before the clock starts
        loaded |= {read.partition for read in await reader.read()}
    per_partition = {p: len(range(p, entries, PARTITIONS)) for p in wanted}
    bytes0, cpu0 = await redis_stats(masters)
    started, wall = time.process_time(), time.perf_counter()
    appender = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--append", url, name, str(entries), cwd=ROOT
    )
    given = wakes = 0
    while any(wanted[p] < per_partition[p] for p in wanted):
        wakes += 1
        for read in await reader.read():
            wanted[read.partition] += len(read.entries)
            given += len(read.entries)
    reader_cpu = time.process_time() - started
    await appender.wait()
    wall = time.perf_counter() - wall
    bytes1, cpu1 = await redis_stats(masters)
    await reader.aclose()
    await topology.client().aclose()
    return {
        "given": given,
        "wakes": wakes,
        "reader_cpu": reader_cpu,
        "redis_out": bytes1 - bytes0,
        "redis_cpu": cpu1 - cpu0,
        "wall": wall,
    }


@asynccontextmanager
async def redis_of(cluster: bool) -> AsyncIterator[tuple[str, list[AsyncClient]]]:
    from redis.asyncio import Redis

    if cluster:
        from support.rediscluster import running_redis_cluster

        async with running_redis_cluster() as setup:
            roles = await setup.roles()
            masters = [setup.client(port) for port, role in roles.items() if role == "master"]
            yield setup.url, masters
    else:
        from support.redisserver import running_redis

        async with running_redis() as server:
            yield server.url, [Redis.from_url(server.url)]


async def main(args: argparse.Namespace) -> None:
    setups = {"none": 0, f"{args.few} of {PARTITIONS}": args.few, f"all {PARTITIONS}": PARTITIONS}
    results: dict[str, list[dict[str, float]]] = {label: [] for label in setups}
    async with redis_of(args.cluster) as (url, masters):
        runs = 0
        for _round in range(args.rounds):
            for label, interest in setups.items():
                runs += 1
                result = await one_run(url, masters, f"bench{runs}", args.entries, interest)
                results[label].append(result)
                print(label, json.dumps(result), flush=True)
    base = {
        key: statistics.median(r[key] for r in results["none"])
        for key in ("redis_out", "redis_cpu")
    }
    kind = "a Redis Cluster of 3 masters" if args.cluster else "one Redis"
    print(
        f"\n{args.entries} facts appended to {PARTITIONS} partitions on {kind}; medians of "
        f"{args.rounds} rounds, beyond the appender alone"
    )
    print(
        "| reader | entries given | reader CPU µs / entry given | reader CPU µs / entry "
        "appended | Redis bytes out / entry appended | Redis CPU µs / entry appended |"
    )
    print("|---|---|---|---|---|---|")
    for label, runs_of in list(results.items())[1:]:
        given = statistics.median(r["given"] for r in runs_of)
        cpu = statistics.median(r["reader_cpu"] for r in runs_of)
        out = statistics.median(r["redis_out"] for r in runs_of) - base["redis_out"]
        rcpu = statistics.median(r["redis_cpu"] for r in runs_of) - base["redis_cpu"]
        print(
            f"| {label} | {given:.0f} | {cpu / given * 1e6:.1f} | {cpu / args.entries * 1e6:.2f} "
            f"| {out / args.entries:.1f} | {rcpu / args.entries * 1e6:.2f} |"
        )
    for client in masters:
        await client.aclose()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=64_000)
    parser.add_argument("--few", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--append", nargs=3, metavar=("URL", "NAME", "ENTRIES"))
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.append:
        url, name, entries = arguments.append
        asyncio.run(append(url, name, int(entries)))
    else:
        asyncio.run(main(arguments))
