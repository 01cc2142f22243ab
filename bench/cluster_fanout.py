"""Room messages across a 2-node cluster, two versions of the code side by side (issue 22).

Not a test. Starts one redis-server and, per version (``--compare NAME=SRC``, the ``src/`` a
version runs from, through ``PYTHONPATH``), a 2-node cluster on it under its own cluster name;
then ``bench/loadgen.js --scenario broadcast`` with one room of ``--members`` (client i on node
i % 2: the sender's node holds half the room, the other node the other half, reached through
its inbox) and one sender. Per run: deliveries per second and per CPU-second of both nodes
*and* redis-server. The versions alternate within each round; the medians follow::

    git archive 901d301 src | tar -x -C /tmp/fanout-before
    .venv/bin/python bench/cluster_fanout.py --compare before=/tmp/fanout-before/src \\
        --compare after=src --rounds 3 --members 50
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from liveserver import free_port

from cluster import PYTHON, SERVER_ENV, Setup, loadgen, process, wait_listening


def start_node(stack: ExitStack, src: str, redis_url: str, cluster: str) -> tuple[str, int]:
    port = free_port()
    cmd = [PYTHON, "-m", "easyrtc_server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--redis", redis_url, "--cluster", cluster]
    env = {**SERVER_ENV, "PYTHONPATH": str(Path(src).resolve())}
    proc = stack.enter_context(process(cmd, env))
    wait_listening(port, proc)
    return f"http://127.0.0.1:{port}", proc.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="append", required=True, metavar="NAME=SRC")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--size", type=int, default=100, help="bytes of padding per message")
    args = parser.parse_args()
    versions = [spec.split("=", 1) for spec in args.compare]
    redis_binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    params = {
        "rooms": 1,
        "roomSize": args.members,
        "senders": 1,
        "seconds": args.seconds,
        "size": args.size,
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        redis_port = free_port()
        redis = stack.enter_context(
            process(
                [redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--loglevel", "warning"]
            )
        )  # fmt: skip
        wait_listening(redis_port, redis)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        setups = {}
        for name, src in versions:
            nodes = [start_node(stack, src, redis_url, f"fanout-{name}") for _ in range(2)]
            setups[name] = Setup(
                name, [url for url, _ in nodes], [pid for _, pid in nodes] + [redis.pid]
            )
        for round_no in range(args.rounds):
            order = versions if round_no % 2 == 0 else versions[::-1]
            for name, _ in order:
                out = loadgen(setups[name], "broadcast", params)
                metrics = out.get("metrics") or {}
                runs.setdefault(name, []).append(metrics)
                print(
                    f"round {round_no + 1} {name}: {metrics or out.get('error')}",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"room of {args.members} over 2 nodes, one sender, {args.rounds} rounds; load average "
          f"at the end {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| version | deliveries/s | deliveries per CPU-s (nodes + redis) | per round |")
    print("|---|---|---|---|")
    for name, _ in versions:
        per_cpu = [m.get("deliveries_per_cpu_s") for m in runs[name]]
        per_s = [m.get("deliveries_per_s") for m in runs[name]]
        numbers = [v for v in per_cpu if isinstance(v, int | float)]
        rates = [v for v in per_s if isinstance(v, int | float)]
        print(
            f"| {name} | {statistics.median(rates) if rates else None:,.0f} "
            f"| {statistics.median(numbers) if numbers else None:,.0f} "
            f"| {', '.join(f'{v:,.0f}' for v in numbers)} |"
        )


if __name__ == "__main__":
    main()
