"""Throughput comparison (not a test): LeanTransport vs python-socketio, same Node load.

    .venv/bin/python bench/transport_echo/run.py [--uvloop] [--seconds 10] [--clients 20]
        [--window 20] [--size 100] [--only lean|psio|baseline ...]

Without --only it runs lean and psio; ``--only baseline`` runs the calibration server (the bare
aiohttp websocket loop, see baseline_server.py).

Starts each echo server on a free port, runs loadgen.js against it, and prints msg/s (wall
clock, what the client saw) and msg per CPU-second of the server process (steadier when other
work shares the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVERS = {
    "lean": HERE / "lean_server.py",
    "psio": HERE / "psio_server.py",
    "baseline": HERE / "baseline_server.py",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, str(SERVERS[name]), str(port)] + (["--uvloop"] if args.uvloop else [])
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("listening")
        time.sleep(0.5)
        cpu0 = cpu_seconds(server.pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(
            [
                "node",
                str(HERE / "loadgen.js"),
                f"http://127.0.0.1:{port}",
                "--seconds",
                str(args.seconds),
                "--clients",
                str(args.clients),
                "--window",
                str(args.window),
                "--size",
                str(args.size),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=args.seconds + 60,
        )
        cpu = cpu_seconds(server.pid) - cpu0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        node_cpu = (children.ru_utime - children0.ru_utime) + (
            children.ru_stime - children0.ru_stime
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        result["server"] = name
        result["serverCpuSeconds"] = round(cpu, 2)
        result["loadgenCpuSeconds"] = round(node_cpu, 2)
        result["msgPerServerCpuSecond"] = round(result["total"] / cpu) if cpu else None
        return result
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--only", choices=sorted(SERVERS), action="append")
    args = parser.parse_args()
    for name in args.only or ["lean", "psio"]:
        r = run(name, args)
        print(
            f"{name:8} {r['msgPerSec']:>8} msg/s   "
            f"{r['msgPerServerCpuSecond']:>8} msg/server-CPU-s"
            f"   ({r['messages']} msgs in {r['seconds']:.1f}s, {r['clients']} clients x "
            f"window {r['window']}, {r['size']}-byte payload"
            f"{', uvloop' if args.uvloop else ''}; CPU s: server {r['serverCpuSeconds']}, "
            f"load generator {r['loadgenCpuSeconds']})",
            flush=True,
        )


if __name__ == "__main__":
    main()
