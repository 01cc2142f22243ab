"""``make bench-cluster``: what a cluster costs, relays and join storms, against one process.

Not a test. Starts one redis-server (no persistence), the single process without Redis (the
baseline) and clusters of 1, 2 and 3 nodes on that Redis (each under its own cluster name), all
alive for the whole run, and drives them with ``bench/loadgen.js`` (``--url`` lists the node each
client connects to, ``--pid`` the processes whose CPU counts: every node of the cluster *and*
redis-server). The runs alternate between setups, round after round, so that the noise of a
shared machine falls on all of them alike; each figure is the median over the rounds.

- relay, at a moderate fixed rate (latency) and saturated (msg/s, msg per CPU-second):
  ``single`` (one process), ``same-node`` (both ends of every pair on one node of the 2-node
  cluster), ``cross-node`` (the two ends on the two nodes);
- storm: 1,000 users join one room, with the clients spread over 1, 2 and 3 nodes (a cluster
  of that many nodes), and on the single process: time until every list holds everyone.
- rooms storm (``--rooms-storm``, instead of the above; issue 23): many users in small rooms,
  each node's CPU, Redis's and its egress per state change (below).

    .venv/bin/python bench/cluster.py --rounds 3
    .venv/bin/python bench/cluster.py --rounds 1 --storm-clients 300     # a short check
    .venv/bin/python bench/cluster.py --rounds 1 --storms-only --sizes 2,3 --logs /tmp/storm
    .venv/bin/python bench/cluster.py --breakdown --rounds 3 --seconds 10 --profile /tmp/spy
    .venv/bin/python bench/cluster.py --breakdown --server-env EASYRTC_CLUSTER_RELAY=direct

``--breakdown`` says where a cross-node relay's CPU goes (issue 22's 500 msg/s target): each
process's CPU (node 1, node 2, redis-server) while the 2-node cluster idles, relays same-node
and relays cross-node at ``--rate``, per message and idle; ``--profile DIR`` adds a py-spy
profile (collapsed stacks) of each node during its cross-node runs.

    git archive 8c4b5cd src | tar -x -C /tmp/base       # the storms of another commit beside
    .venv/bin/python bench/cluster.py --rounds 2 --storms-only --sizes 3 --base-src /tmp/base/src

``--rooms-storm`` is issue 23's storm: ``--storm-clients`` users log in into rooms of
``--room-size`` (client i into room ``r{i // size}``, joined at login), on the single process and
on clusters of each of ``--sizes`` nodes (1 always: the reference), each ``--placement``:
``affine`` (every member of room r on node ``r % n``, a balancer hashing the room), ``random``
(a node per client from a fixed seed: a room of 4 on 4 nodes spans 2.7 of them on average) or
``roundrobin`` (client i on node ``i % n``: a room on as many nodes as it can, the worst case)
or ``first`` (every client on the first node: the others' CPU is what a replica alone costs).
Every setup once a round (reverse order every other round), after every process idles. Per
setup: time until every list holds exactly its room, tokens, refusals, then from the start
until every process idles again (a replica that lags still works after convergence): each
node's CPU (max, mean), Redis's, the total, the mean node's CPU per state change (a login and a
join per client), each node's CPU against the 1-node cluster's node, the scaling against linear
(``of linear``: the 1-node figure per change over N times the N-node one), Redis's egress
(``total_net_output_bytes``) and the log entries appended, per state change.

    .venv/bin/python bench/cluster.py --rooms-storm --rounds 2 --storm-clients 4000 \
        --room-size 4 --sizes 1,2,4 --placement affine,random --logs /tmp/rooms

``--node-by-node`` with ``--rooms-storm`` logs the clients in node after node (every client of
node 1, then node 2's...; the 100 in flight overlap at each turn): each node's share of the storm
runs while the other nodes idle, so its CPU is what it pays on a machine of its own. On this
2-core machine four nodes storming at once, with Redis and the generator, take turns on the
cores, and each pays more per login than alone (a 1-node storm of 1,000 clients pays 40 % more
beside three busy loops): that is the machine's, not the design's. The 1-node cluster and the
single process are unchanged by it (one node).

``--base-src DIR`` with ``--rooms-storm`` runs every server of the rooms storm from the package in
``DIR`` instead (another commit's, to set its figures beside this one's, run after run).
``--profile DIR`` with ``--rooms-storm`` records each cluster node with py-spy during each storm
(``DIR/rooms-<setup>-r<round>-node<i>.txt``; ``bench/profile_summary.py`` reads them).

``--state partitioned`` starts every cluster node with ``cluster_state = "partitioned"``
(issue 23's partition logs; ``--partitions N`` and ``--read-groups G`` set
``cluster_partitions`` and ``cluster_read_groups``), in every mode; the default, ``log``, sets
nothing (the nodes' default, so a ``--base-src`` of before the option still starts). With
``partitioned`` the rooms storm's ``log entries per change`` counts every ``XADD`` (the
partition logs' appends; ``INFO commandstats`` counts a script's too) and ``entries per node's
read`` is left out (a node reads only its partitions).

    .venv/bin/python bench/cluster.py --rooms-storm --state partitioned --partitions 1024 \
        --rounds 2 --storm-clients 4000 --room-size 4 --sizes 1,4 --placement affine,random

``--logs DIR`` keeps each server's log (``DIR/<cluster>-<i>.log``) and counts in it the lines
that issue 21 says must not appear under load: a state change refused as unavailable or behind,
a node reaped.

``--base-src DIR`` also starts the storm setups from the package in ``DIR`` (``PYTHONPATH``: an
older commit's ``src``), named ``base …``, and runs each storm on it next to the same storm on
this checkout's code, round after round, each of the two first in turn (the second of a pair
shares the machine with the first one's 1,000 disconnects): before and after side by side under
the same noise.
Each storm row then gives every process's own CPU seconds (``node CPU s``: the busiest node's),
and the load average at its start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveserver import free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
SERVER_ENV = {
    # the limits a load generator would hit, off (as bench/run.py runs the server)
    "EASYRTC_ROOM_MAX_CONNECTION": "0",
    "EASYRTC_MESSAGE_RATE": "0",
    "EASYRTC_MAX_CONNECTIONS": "0",
    "EASYRTC_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "EASYRTC_LOGIN_TIMEOUT": "0",
    "EASYRTC_LOG_LEVEL": "warning",
    "EASYRTC_DEMOS_ENABLE": "false",
}
CLUSTER_ENV: dict[str, str] = {}
"""Options for cluster nodes only, beside ``SERVER_ENV`` (``--state``, ``--partitions``)."""


@dataclass
class Setup:
    """Where the clients go (``urls``, client i to ``urls[i % len]``) and whose CPU counts
    (a cluster's: its nodes, then redis-server: ``nodes`` of them are nodes)."""

    name: str
    urls: list[str]
    pids: list[int]
    nodes: int = 1


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a server on port {port} exited at start")
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no server listening on port {port}")


@contextmanager
def process(
    cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with ExitStack() as files:
        stderr = files.enter_context(log.open("wb")) if log is not None else None
        proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


BAD_LINES = {
    "unavailable": "the cluster log is unavailable",
    "behind": "cluster log reader is behind",
    "reaped": "is gone (its alive key expired)",
    "busy": "refused as busy",
    "gap": "missed entries trimmed from the log",
}
"""What a node logs when it refuses state changes, reaps a peer or rebuilds from the snapshot
because it fell a snapshot interval behind (counted with ``--logs``)."""


def bad_lines(logs: list[Path]) -> dict[str, int]:
    text = "".join(path.read_text(errors="replace") for path in logs if path.exists())
    return {name: text.count(line) for name, line in BAD_LINES.items()}


def start_redis(stack: ExitStack) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server without persistence on a free port, stopped with ``stack``; its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    redis = stack.enter_context(
        process(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "warning"]
        )
    )  # fmt: skip
    wait_listening(port, redis)
    return redis, f"redis://127.0.0.1:{port}/0"


def start_server(
    stack: ExitStack,
    redis_url: str | None,
    cluster: str | None,
    log: Path | None = None,
    src: Path | None = None,
) -> tuple[str, int]:
    """A server on a free port (``src``: the package from that directory, not this checkout)."""
    port = free_port()
    cmd = [PYTHON, "-m", "easyrtc_server", "--host", "127.0.0.1", "--port", str(port)]
    env = dict(SERVER_ENV)
    if redis_url is not None and cluster is not None:
        cmd += ["--redis", redis_url, "--cluster", cluster]
        env.update(CLUSTER_ENV)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    proc = stack.enter_context(process(cmd, env, log))
    wait_listening(port, proc)
    return f"http://127.0.0.1:{port}", proc.pid


def loadgen(setup: Setup, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    cmd = ["node", str(ROOT / "bench" / "loadgen.js"), "--url", ",".join(setup.urls)]
    cmd += ["--scenario", scenario, "--pid", ",".join(map(str, setup.pids))]
    cmd += ["--params", json.dumps(params), "--clk-tck", str(os.sysconf("SC_CLK_TCK"))]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": (done.stderr or "no output")[-500:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float)]
    return round(statistics.median(numbers), 3) if numbers else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--rate", type=int, default=500, help="moderate relay load, msg/s")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--storm-clients", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "cluster-results.json")
    parser.add_argument("--storms-only", action="store_true", help="no relay runs")
    parser.add_argument(
        "--sizes", default="1,2,3", help="cluster sizes of the storms (the single process always)"
    )
    parser.add_argument("--logs", type=Path, help="keep each server's log here, count bad lines")
    parser.add_argument(
        "--breakdown", action="store_true", help="per-process CPU of same- and cross-node relays"
    )
    parser.add_argument(
        "--profile", type=Path, help="with --breakdown or --rooms-storm: py-spy of the nodes"
    )
    parser.add_argument(
        "--rooms-storm", action="store_true", help="the storm into many small rooms (issue 23)"
    )
    parser.add_argument("--room-size", type=int, default=4, help="with --rooms-storm")
    parser.add_argument(
        "--hold",
        type=float,
        default=0,
        help="with --rooms-storm: seconds the clients stay after it, to count the dropped ones",
    )
    parser.add_argument(
        "--node-by-node",
        action="store_true",
        help="with --rooms-storm: every client of node 1 logs in, then node 2's...: each node's "
        "storm while the others idle, its CPU as on a machine of its own",
    )
    parser.add_argument(
        "--placement",
        default="affine,random",
        help="with --rooms-storm: affine, random, roundrobin and/or first, comma-separated",
    )
    parser.add_argument(
        "--base-src", type=Path, help="also run each storm on the package in this src directory"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option for every server (e.g. EASYRTC_ROOM_UPDATE_TICK=0), repeatable",
    )
    parser.add_argument(
        "--state",
        choices=("log", "partitioned"),
        default="log",
        help="cluster_state of every cluster node: one log (the default) or partition logs",
    )
    parser.add_argument("--partitions", type=int, help="cluster_partitions of every node")
    parser.add_argument("--read-groups", type=int, help="cluster_read_groups of every node")
    args = parser.parse_args()
    SERVER_ENV.update(item.split("=", 1) for item in args.server_env)
    CLUSTER_ENV.update(cluster_options(args))
    if args.breakdown:
        breakdown(args)
        return
    if args.rooms_storm:
        rooms_storm(args)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[Any]]] = {}
    storm_rows: list[tuple[int, str, float, dict[str, Any], int]] = []

    def record(key: str, out: dict[str, Any]) -> None:
        slot = results.setdefault(key, {})
        if "error" in out or out.get("note"):
            slot.setdefault("errors", []).append(out.get("error") or out.get("note"))
        for metric, value in (out.get("metrics") or {}).items():
            slot.setdefault(metric, []).append(value)
        detail = out.get("detail") or {}
        for metric in ("tokens", "failed", "converged_clients"):  # a storm's: lists whole?
            if metric in detail:
                slot.setdefault(metric, []).append(detail[metric])

    def storm_run(round_no: int, setup: Setup) -> None:
        load = os.getloadavg()[0]
        out = loadgen(setup, "storm", storm)
        record(f"storm {setup.name}", out)
        each = (out.get("detail") or {}).get("server_cpu_s_each") or []
        nodes = [cpu for cpu in each[: setup.nodes] if isinstance(cpu, int | float)]
        if nodes:
            results[f"storm {setup.name}"].setdefault("node_cpu_s", []).append(max(nodes))
        storm_rows.append((round_no, setup.name, load, out, setup.nodes))

    with ExitStack() as stack:
        redis, redis_url = start_redis(stack)
        single_url, single_pid = start_server(stack, None, None)
        clusters: dict[int, list[tuple[str, int]]] = {}
        logs: dict[int, list[Path]] = {}
        for size in sorted({*sizes, 2}):
            logs[size] = (
                [args.logs / f"bench{size}-{i}.log" for i in range(size)] if args.logs else []
            )
            clusters[size] = [
                start_server(
                    stack, redis_url, f"bench{size}", logs[size][i] if logs[size] else None
                )
                for i in range(size)
            ]
        base: list[Setup] = []
        if args.base_src is not None:
            url, pid = start_server(stack, None, None, src=args.base_src)
            base.append(Setup("base single", [url], [pid]))
            for size in sizes:
                nodes = [
                    start_server(stack, redis_url, f"base{size}", src=args.base_src)
                    for _ in range(size)
                ]
                name = f"base {size} node{'s' if size > 1 else ''}"
                pids = [pid for _, pid in nodes] + [redis.pid]
                base.append(Setup(name, [url for url, _ in nodes], pids, size))
        two = clusters[2]
        (u1, p1), (u2, p2) = two
        relay_setups = [
            Setup("single", [single_url], [single_pid]),
            Setup("same-node", [u1, u1, u2, u2], [p1, p2, redis.pid]),
            Setup("cross-node", [u1, u2], [p1, p2, redis.pid]),
        ]
        storm_setups = [Setup("single", [single_url], [single_pid])] + [
            Setup(
                f"{size} node{'s' if size > 1 else ''}",
                [url for url, _ in clusters[size]],
                [pid for _, pid in clusters[size]] + [redis.pid],
                size,
            )
            for size in sizes
        ]
        relay_moderate = {"pairs": args.pairs, "rate": args.rate, "seconds": args.seconds}
        relay_max = {"pairs": args.pairs, "window": 8, "seconds": args.seconds}
        storm = {"clients": args.storm_clients, "concurrency": 100, "timeout": 120}
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds}", file=sys.stderr)
            for setup in [] if args.storms_only else relay_setups:
                record(f"relay-moderate {setup.name}", loadgen(setup, "relay", relay_moderate))
                record(f"relay-max {setup.name}", loadgen(setup, "relay", relay_max))
            for i, setup in enumerate(storm_setups):
                pair = [base[i], setup] if base else [setup]
                for each in pair if round_no % 2 else pair[::-1]:  # each goes first in turn
                    storm_run(round_no, each)
    summary = {key: {m: median(v) for m, v in slot.items() if m != "errors"} for key, slot in
               results.items()}  # fmt: skip
    errors = {key: slot["errors"] for key, slot in results.items() if slot.get("errors")}
    machine = f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}"
    load = os.getloadavg()
    args.out.write_text(
        json.dumps({"machine": machine, "rounds": args.rounds, "summary": summary,
                    "runs": results, "errors": errors}, indent=2)
    )  # fmt: skip
    print(f"machine: {machine}; load average at the end {load[0]:.2f}; rounds {args.rounds}")
    print("| run | msg/s | p50 ms | p99 ms | msg per CPU-s (nodes + redis) |")
    print("|---|---|---|---|---|")
    for key, m in summary.items():
        if key.startswith("relay"):
            print(f"| {key} | {m.get('msg_per_s')} | {m.get('p50_ms')} | {m.get('p99_ms')} "
                  f"| {m.get('msg_per_cpu_s')} |")  # fmt: skip
    print()
    print("| storm | users | tokens | refused | lists whole | converge s | all tokens s "
          "| joins per CPU-s | server CPU s | node CPU s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, m in summary.items():
        if key.startswith("storm"):
            print(f"| {key} | {args.storm_clients} | {m.get('tokens')} | {m.get('failed')} "
                  f"| {m.get('converged_clients')} | {m.get('converge_s')} "
                  f"| {m.get('all_tokens_s')} | {m.get('joins_per_cpu_s')} "
                  f"| {m.get('server_cpu_s')} | {m.get('node_cpu_s')} |")  # fmt: skip
    print()
    print("| round | storm | load avg at start | lists whole | converge s "
          "| CPU s of each process (nodes, then redis) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for round_no, name, load, out, _nodes in storm_rows:
        detail = out.get("detail") or {}
        print(f"| {round_no} | {name} | {load:.1f} | {detail.get('converged_clients')} "
              f"| {(out.get('metrics') or {}).get('converge_s')} "
              f"| {detail.get('server_cpu_s_each')} |")  # fmt: skip
    if args.logs is not None:
        for size in sizes:
            print(f"node logs, {size} node(s): {bad_lines(logs[size])}")
    for key, found in errors.items():
        print(f"ERRORS {key}: {found}", file=sys.stderr)


def cluster_options(args: argparse.Namespace) -> dict[str, str]:
    """The environment of ``--state``, ``--partitions`` and ``--read-groups`` for the nodes:
    only what differs from the nodes' defaults is set (``log`` sets nothing)."""
    env: dict[str, str] = {}
    if args.state != "log":
        env["EASYRTC_CLUSTER_STATE"] = args.state
    if args.partitions is not None:
        env["EASYRTC_CLUSTER_PARTITIONS"] = str(args.partitions)
    if args.read_groups is not None:
        env["EASYRTC_CLUSTER_READ_GROUPS"] = str(args.read_groups)
    return env


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far (every thread, dead ones included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def py_spy(pids: list[int], out: Path | None, label: str) -> Iterator[None]:
    """Collapsed stacks of each of ``pids`` while the block runs (none without ``out``)."""
    spy = ROOT / ".venv" / "bin" / "py-spy"
    if out is None or not spy.exists():
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    recorders = []
    for i, pid in enumerate(pids):
        cmd = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
               "--nonblocking", "-o", str(out / f"{label}-node{i + 1}.txt")]  # fmt: skip
        recorders.append(
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(2)  # py-spy writes its output on SIGINT
        for recorder in recorders:
            recorder.wait(30)


def settle(pids: list[int], timeout: float = 30) -> None:
    """Wait until every process idles (under 5 % of a core for half a second), at most
    ``timeout``: the previous storm's disconnects are not the next one's work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(0.5)
        if all(cpu_seconds(pid) - b < 0.025 for pid, b in zip(pids, before, strict=True)):
            return
    print(f"settle: still busy after {timeout} s", file=sys.stderr)


@dataclass
class RoomsSetup:
    """A rooms storm's target: where (``setup``), how its clients are placed, and its log's key
    (None: the single process, no Redis)."""

    setup: Setup
    placement: str
    log_key: str | None

    @property
    def name(self) -> str:
        return self.setup.name if self.setup.nodes == 1 else f"{self.setup.name} {self.placement}"


def rooms_figures(
    out: dict[str, Any], nodes: int, clustered: bool, state: str = "log"
) -> dict[str, Any]:
    """One rooms storm's figures: the nodes' CPU (max, mean), Redis's, and per state change,
    from the start until every process idled after convergence (a lagging replica's work
    counts); ``node_max_at_converge`` until convergence only. With ``state`` partitioned the
    entries are every ``XADD`` (the partition logs'), and no entries per read."""
    detail = out.get("detail") or {}
    at_converge = [
        cpu for cpu in (detail.get("server_cpu_s_each") or [])[:nodes] if cpu is not None
    ]
    each = detail.get("server_cpu_s_each_quiet") or detail.get("server_cpu_s_each") or []
    node_cpu = [cpu for cpu in each[:nodes] if isinstance(cpu, int | float)]
    redis_cpu = each[nodes] if clustered and len(each) > nodes else None
    changes = detail.get("state_changes") or 0
    node_mean = statistics.fmean(node_cpu) if len(node_cpu) == nodes else None
    figures: dict[str, Any] = {
        key: detail.get(key)
        for key in ("tokens", "failed", "mismatched", "converged_clients", "nodes_per_room")
    }
    figures.update(
        dropped=(out.get("metrics") or {}).get("dropped"),
        converge_s=(out.get("metrics") or {}).get("converge_s"),
        quiet_s=detail.get("quiet_s") if detail.get("quiet_reached") else None,
        node_max_at_converge=max(at_converge) if len(at_converge) == nodes else None,
        node_max=max(node_cpu) if node_mean is not None else None,
        node_mean=node_mean,
        redis_cpu=redis_cpu,
        total_cpu=(node_mean * nodes + (redis_cpu or 0)) if node_mean is not None else None,
        node_us_per_change=node_mean / changes * 1e6 if node_mean is not None and changes else None,
    )
    entries = "log_entries" if state == "log" else "xadds"
    for key, name in (("redis_out_bytes", "out_per_change"), (entries, "entries_per_change")):
        value = detail.get(f"{key}_quiet", detail.get(key))
        figures[name] = value / changes if isinstance(value, int | float) and changes else None
    calls = detail.get("redis_calls") or {}
    figures["redis_calls_per_change"] = (
        {cmd: round(n / changes, 3) for cmd, n in sorted(calls.items())} if changes else None
    )  # until convergence, each command Redis ran (a script's calls inside it too)
    reads = detail.get("log_reads_quiet", detail.get("log_reads"))
    appended = detail.get("log_entries_quiet", detail.get("log_entries"))
    figures["entries_per_read"] = (
        appended * nodes / reads
        if state == "log" and isinstance(reads, int) and reads and appended
        else None
    )  # how many entries a node's reader gets per XREAD, on average (each reads them all)
    return figures


def whole(value: Any) -> Any:
    """4000.0 as 4000 (a median of counts)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def rooms_storm(args: argparse.Namespace) -> None:
    """Issue 23's storm: ``--storm-clients`` users log in into rooms of ``--room-size`` on the
    single process and on clusters of each of ``--sizes`` nodes (and 1, the reference), with
    each ``--placement``; every setup once a round, in reverse order every other round, after
    every process idles. Each figure is the median over the rounds."""
    sizes = sorted({1, *(int(size) for size in args.sizes.split(","))})
    placements = args.placement.split(",")
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    rows: list[tuple[int, str, float, dict[str, Any]]] = []
    errors: dict[str, list[Any]] = {}
    logs: dict[int, list[Path]] = {}
    with ExitStack() as stack:
        redis, redis_url = start_redis(stack)
        redis_addr = redis_url.removeprefix("redis://").split("/")[0]
        single_log = args.logs / "rooms-single.log" if args.logs else None
        single_url, single_pid = start_server(stack, None, None, single_log, src=args.base_src)
        targets = [RoomsSetup(Setup("single", [single_url], [single_pid]), "any", None)]
        pids = [single_pid, redis.pid]
        for size in sizes:
            cluster = f"rooms{size}"
            logs[size] = (
                [args.logs / f"{cluster}-{i}.log" for i in range(size)] if args.logs else []
            )
            nodes = [
                start_server(
                    stack,
                    redis_url,
                    cluster,
                    logs[size][i] if logs[size] else None,
                    src=args.base_src,
                )
                for i in range(size)
            ]
            pids += [pid for _, pid in nodes]
            setup = Setup(
                f"{size} node{'s' if size > 1 else ''}",
                [url for url, _ in nodes],
                [pid for _, pid in nodes] + [redis.pid],
                size,
            )
            for placement in placements if size > 1 else ["any"]:
                targets.append(RoomsSetup(setup, placement, f"{cluster}:log"))
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds}", file=sys.stderr)
            for target in targets if round_no % 2 else targets[::-1]:
                settle(pids)
                load = os.getloadavg()[0]
                started = time.time()
                params = {
                    "clients": args.storm_clients,
                    "roomSize": args.room_size,
                    "placement": "affine" if target.placement == "any" else target.placement,
                    "concurrency": 100,
                    "timeout": 120,
                    "redis": redis_addr if target.log_key else None,
                    "logKey": target.log_key,
                    "quiet": 30,
                    "hold": args.hold,
                    "nodeByNode": args.node_by_node,
                }
                nodes = target.setup.pids[: target.setup.nodes] if target.log_key else []
                label = f"rooms-{target.name.replace(' ', '-')}-r{round_no}"
                with py_spy(nodes, args.profile, label):
                    out = loadgen(target.setup, "rooms-storm", params)
                if "error" in out or out.get("note"):
                    errors.setdefault(target.name, []).append(out.get("error") or out.get("note"))
                figures = rooms_figures(
                    out, target.setup.nodes, target.log_key is not None, args.state
                )
                runs.setdefault(target.name, []).append(figures)
                rows.append((round_no, target.name, load, out))
                print(f"  {time.strftime('%H:%M:%S', time.gmtime(started))} UTC {target.name}: "
                      f"converge {figures['converge_s']} s, load {load:.1f}",
                      file=sys.stderr)  # fmt: skip
    summary = {
        name: {key: whole(median([run[key] for run in each])) for key in each[0]}
        for name, each in runs.items()
    }
    machine = f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}"
    load_end = os.getloadavg()
    args.out.write_text(
        json.dumps({"machine": machine, "rounds": args.rounds, "state": args.state,
                    "options": CLUSTER_ENV, "summary": summary, "runs": runs, "errors": errors},
                   indent=2)
    )  # fmt: skip
    one = summary.get("1 node") or {}

    def ratio(value: Any, of: Any) -> str:
        return f"{100 * value / of:.0f} %" if value is not None and of else ""

    options = " ".join(f"{name}={value}" for name, value in CLUSTER_ENV.items())
    print(f"machine: {machine}; load average at the end {load_end[0]:.2f}; rounds {args.rounds}; "
          f"{args.storm_clients} users in rooms of {args.room_size}; nodes' options: "
          f"{options or 'the defaults (one log)'}"
          f"{'; node by node' if args.node_by_node else ''}")  # fmt: skip
    print("| setup | nodes per room | tokens | failed | lists whole | dropped | converge s "
          "| quiet s "
          "| node CPU s to converge, max | node CPU s, max | node CPU s, mean | Redis CPU s "
          "| total CPU s | node µs per change (mean node) | max node / 1 node "
          "| mean node / 1 node | of linear | Redis out B per change "
          "| log entries per change | entries per node's read |")  # fmt: skip
    print("|---" * 20 + "|")
    for name, m in summary.items():
        nodes = next(t.setup.nodes for t in targets if t.name == name)
        linear = (
            f"{one['node_us_per_change'] / (nodes * m['node_us_per_change']):.2f}"
            if name != "single" and one.get("node_us_per_change") and m["node_us_per_change"]
            else ""
        )
        cells = [
            name, m["nodes_per_room"], m["tokens"], m["failed"], m["converged_clients"],
            m["dropped"],
            m["converge_s"], m["quiet_s"], m["node_max_at_converge"], m["node_max"],
            m["node_mean"], m["redis_cpu"], m["total_cpu"],
            m["node_us_per_change"] and round(m["node_us_per_change"], 1),
            ratio(m["node_max"], one.get("node_mean")), ratio(m["node_mean"], one.get("node_mean")),
            linear, m["out_per_change"] and round(m["out_per_change"]),
            m["entries_per_change"] and round(m["entries_per_change"], 2),
            m["entries_per_read"] and round(m["entries_per_read"], 1),
        ]  # fmt: skip
        print("| " + " | ".join("" if cell is None else str(cell) for cell in cells) + " |")
    print()
    print("| round | setup | load avg at start | lists whole | mismatched | converge s | quiet s "
          "| CPU s of each process until quiet (nodes, then redis) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for round_no, name, load, out in rows:
        detail = out.get("detail") or {}
        print(f"| {round_no} | {name} | {load:.1f} | {detail.get('converged_clients')} "
              f"| {detail.get('mismatched')} | {(out.get('metrics') or {}).get('converge_s')} "
              f"| {detail.get('quiet_s')} | {detail.get('server_cpu_s_each_quiet')} |")  # fmt: skip
    if args.logs is not None:
        for size in sizes:
            print(f"node logs, {size} node(s): {bad_lines(logs[size])}")
    for name, found in errors.items():
        print(f"ERRORS {name}: {found}", file=sys.stderr)


def breakdown(args: argparse.Namespace) -> None:
    """Where the CPU of a relay at a moderate rate goes, process by process: each process's
    idle cost (the 2-node cluster doing nothing for ``--seconds``), and its CPU per message
    relayed same-node and cross-node. The rounds alternate; each figure is the median."""
    names = ["node 1", "node 2", "redis"]
    idle: list[list[float]] = []
    per_msg: dict[str, list[list[float]]] = {"same-node": [], "cross-node": []}
    with ExitStack() as stack:
        redis, redis_url = start_redis(stack)
        (u1, p1), (u2, p2) = [start_server(stack, redis_url, "bench2") for _ in range(2)]
        pids = [p1, p2, redis.pid]
        setups = [
            Setup("same-node", [u1, u1, u2, u2], pids),
            Setup("cross-node", [u1, u2], pids),
        ]
        params = {"pairs": args.pairs, "rate": args.rate, "seconds": args.seconds}
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds}", file=sys.stderr)
            before = [cpu_seconds(pid) for pid in pids]
            time.sleep(args.seconds)
            idle.append(
                [(cpu_seconds(pid) - b) / args.seconds for pid, b in zip(pids, before, strict=True)]
            )
            for setup in setups:
                label = f"{setup.name}-round{round_no}"
                profile = args.profile if setup.name == "cross-node" else None
                with py_spy([p1, p2], profile, label):
                    out = loadgen(setup, "relay", params)
                detail = out.get("detail") or {}
                delivered, by_pid = detail.get("delivered"), detail.get("server_cpu_s_by_pid")
                if not delivered or not by_pid or None in by_pid:
                    print(f"ERRORS {label}: {out.get('error') or detail}", file=sys.stderr)
                    continue
                per_msg[setup.name].append([cpu / delivered for cpu in by_pid])
    load = os.getloadavg()
    print(f"{len(idle)} rounds, {args.pairs} pairs at {args.rate} msg/s for {args.seconds} s; "
          f"load average at the end {load[0]:.2f}")  # fmt: skip
    print("| process | idle, % of a core | same-node, µs per message | cross-node, µs per message "
          "| of which idle cost at this rate, µs | cross - same, µs |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    totals = [0.0, 0.0, 0.0, 0.0]
    for i, name in enumerate(names):
        idle_share = statistics.median(r[i] for r in idle)
        same = statistics.median(r[i] for r in per_msg["same-node"]) * 1e6
        cross = statistics.median(r[i] for r in per_msg["cross-node"]) * 1e6
        fixed = idle_share / args.rate * 1e6
        totals = [totals[0] + same, totals[1] + cross, totals[2] + fixed, totals[3] + idle_share]
        print(f"| {name} | {100 * idle_share:.2f} | {same:.1f} | {cross:.1f} | {fixed:.1f} "
              f"| {cross - same:+.1f} |")  # fmt: skip
    print(f"| all | {100 * totals[3]:.2f} | {totals[0]:.1f} | {totals[1]:.1f} | {totals[2]:.1f} "
          f"| {totals[1] - totals[0]:+.1f} |")  # fmt: skip
    print(f"cross-node / same-node CPU: {totals[1] / totals[0]:.2f}x; without the idle cost "
          f"{(totals[1] - totals[2]) / (totals[0] - totals[2]):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
