"""Benchmark easyrtc-server against the Node reference (open-easyrtc) on the same load.

Starts each server in turn on a free loopback port (pinned to CPU 0 when ``taskset`` exists),
drives it with ``bench/loadgen.js`` (Node + socket.io-client 4, pinned to CPU 1), and writes
``bench/results/results.json``, ``results.md`` (ours / reference ratios) and ``chart.png``.

    .venv/bin/python bench/run.py --quick            # under 3 minutes
    .venv/bin/python bench/run.py                    # the full set (10,000 connections, …)
    .venv/bin/python bench/run.py --only relay --servers ours,reference

Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = ROOT / ".venv" / "bin" / "python"

SERVERS: dict[str, list[str]] = {
    "ours": [str(PYTHON), "-m", "easyrtc_server", "--log-level", "warning", "--no-demos"],
    "ours-psio": [
        str(PYTHON),
        "-m",
        "easyrtc_server",
        "--log-level",
        "warning",
        "--no-demos",
        "--transport",
        "python-socketio",
    ],
    "reference": ["node", str(ROOT / "tests" / "reference" / "server.js")],
}

# (label, scenario, params) — quick and full sets
QUICK: list[tuple[str, str, dict[str, Any]]] = [
    ("connect", "connect", {"clients": 500, "concurrency": 50}),
    ("relay-20", "relay", {"pairs": 20, "seconds": 3}),
    ("relay-100", "relay", {"pairs": 100, "seconds": 3}),
    ("broadcast", "broadcast", {"rooms": 10, "roomSize": 10, "seconds": 3}),
    ("storm-200", "storm", {"clients": 200}),
    ("idle-2000", "idle", {"clients": 2000, "roomSize": 100, "idleSeconds": 2}),
    ("disconnect-400", "disconnect", {"clients": 400}),
]
FULL: list[tuple[str, str, dict[str, Any]]] = [
    ("connect", "connect", {"clients": 2000, "concurrency": 100}),
    ("relay-20", "relay", {"pairs": 20, "seconds": 10}),
    ("relay-100", "relay", {"pairs": 100, "seconds": 10}),
    ("broadcast", "broadcast", {"rooms": 10, "roomSize": 10, "seconds": 10}),
    ("storm-200", "storm", {"clients": 200}),
    ("storm-1000", "storm", {"clients": 1000, "timeout": 180}),
    ("idle-10000", "idle", {"clients": 10000, "roomSize": 100, "timeout": 300}),
    ("disconnect-1000", "disconnect", {"clients": 1000, "timeout": 180}),
]
"""A fixed-rate relay run (same offered load on every server) compares latency fairly."""
FIXED_RATE = ("relay-fixed-5k", "relay", {"pairs": 20, "seconds": 3, "rate": 5000})


def higher_is_better(metric: str) -> bool:
    """Rates are better high; times, latencies, CPU and memory are better low."""
    return metric.endswith(("per_s", "per_cpu_s"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *cmd]
    return cmd


SERVER_OPTIONS = {"roomMaxConnection": 0}
"""The same on every server: join storms put up to 1,000 users in one room (default limit 100)."""


def start(name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = SERVERS[name]
    env = dict(os.environ)
    if name == "reference":
        args = [*cmd, str(port), json.dumps(SERVER_OPTIONS)]
    else:
        args = [*cmd, "--host", "127.0.0.1", "--port", str(port)]
        env["EASYRTC_ROOM_MAX_CONNECTION"] = str(SERVER_OPTIONS["roomMaxConnection"])
        # the load comes from one address at rates no real client sends: limits off, as the
        # reference has none
        for limit in ("MESSAGE_RATE", "MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_ADDRESS"):
            env[f"EASYRTC_{limit}"] = "0"
    proc = subprocess.Popen(
        pinned(args, 0), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not listen within 30 s")


def real_pid(proc: subprocess.Popen[bytes]) -> int:
    """taskset execs the server, so the pid is the server's own."""
    return proc.pid


def run_scenario(url: str, pid: int, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    cmd = [
        "node",
        str(ROOT / "bench" / "loadgen.js"),
        "--url",
        url,
        "--scenario",
        scenario,
        "--pid",
        str(pid),
        "--params",
        json.dumps(params),
        "--clk-tck",
        str(os.sysconf("SC_CLK_TCK")),
    ]
    timeout = params.get("timeout", 60) + 120
    try:
        done = subprocess.run(pinned(cmd, 1), cwd=ROOT, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"load generator timed out after {timeout} s"}
    lines = [ln for ln in done.stdout.decode().splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": f"no result (exit {done.returncode}): {done.stderr.decode()[-400:]}"}
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", default=[], help="label or scenario")
    parser.add_argument("--servers", default="ours,ours-psio,reference")
    parser.add_argument("--report", type=Path, help="only re-render a results.json")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        results_, meta_ = saved["results"], saved["meta"]
        servers_ = list(results_)
        labels = {label for r in results_.values() for label in r}
        plan_ = [p for p in [*QUICK, *FULL, FIXED_RATE] if p[0] in labels]
        plan_ = list({p[0]: p for p in plan_}.values())
        (RESULTS / "results.md").write_text(table(results_, servers_, plan_, meta_))
        chart(results_, servers_, plan_)
        print((RESULTS / "results.md").read_text())
        return

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    plan = [*(QUICK if args.quick else FULL), FIXED_RATE]
    if args.only:
        plan = [p for p in plan if p[0] in args.only or p[1] in args.only]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    results: dict[str, dict[str, Any]] = {name: {} for name in servers}
    started = time.monotonic()
    for name in servers:
        for label, scenario, params in plan:
            # a fresh server per scenario, so one scenario's leftovers never slow the next
            proc, url = start(name)
            try:
                print(f"{name:10} {label:16} …", end=" ", flush=True, file=sys.stderr)
                result = run_scenario(url, real_pid(proc), scenario, params)
                print(result.get("metrics", result.get("error")), file=sys.stderr)
                results[name][label] = result
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "cpus": os.cpu_count(),
        "pinned": bool(shutil.which("taskset")),
    }
    (RESULTS / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (RESULTS / "results.md").write_text(table(results, servers, plan, meta))
    chart(results, servers, plan)
    print((RESULTS / "results.md").read_text())


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(
    results: dict[str, dict[str, Any]],
    servers: list[str],
    plan: list[tuple[str, str, dict[str, Any]]],
    meta: dict[str, Any],
) -> str:
    head = ["scenario", "metric", *servers]
    if "ours" in servers and "reference" in servers:
        head.append("ours / reference")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, _, _ in plan:
        metrics: list[str] = []
        for name in servers:
            for key in results[name].get(label, {}).get("metrics", {}):
                if key not in metrics:
                    metrics.append(key)
        errors = [
            f"{n}: {results[n][label]['error']}"
            for n in servers
            if "error" in results[n].get(label, {})
        ]
        for key in metrics:
            values = [results[n].get(label, {}).get("metrics", {}).get(key) for n in servers]
            better = " ↑" if higher_is_better(key) else " ↓"
            row = [label, key + better, *(fmt(v) for v in values)]
            if len(head) > len(row):
                ours = results["ours"].get(label, {}).get("metrics", {}).get(key)
                ref = results["reference"].get(label, {}).get("metrics", {}).get(key)
                ok = isinstance(ours, int | float) and isinstance(ref, int | float) and ref
                row.append(f"{ours / ref:.2f}x" if ok else "-")
            rows.append("| " + " | ".join(row) + " |")
        for error in errors:
            rows.append(f"| {label} | failed | {error[:160]} |" + " |" * (len(head) - 3))
    note = (
        f"\n{'Quick' if meta['quick'] else 'Full'} run, {meta['cpus']} CPUs, "
        f"server and load generator pinned to separate cores: {meta['pinned']}; "
        f"{meta['seconds']} s. ↑ higher is better, ↓ lower is better.\n"
    )
    return "\n".join(rows) + "\n" + note


def chart(
    results: dict[str, dict[str, Any]],
    servers: list[str],
    plan: list[tuple[str, str, dict[str, Any]]],
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart", file=sys.stderr)
        return
    if "reference" not in servers:
        return
    labels, ratios = [], {n: [] for n in servers if n != "reference"}
    for label, _, _ in plan:
        ref = results["reference"].get(label, {}).get("metrics", {})
        for key, value in ref.items():
            if not isinstance(value, int | float) or not value or key.endswith("cpu_s"):
                continue
            labels.append(f"{label}\n{key}")
            for n in ratios:
                ours = results[n].get(label, {}).get("metrics", {}).get(key)
                ratio = ours / value if isinstance(ours, int | float) else 0.0
                ratios[n].append(ratio if higher_is_better(key) else (1 / ratio if ratio else 0.0))
    fig, ax = plt.subplots(figsize=(max(8, len(labels) * 0.9), 5))
    width = 0.8 / max(1, len(ratios))
    for i, (n, values) in enumerate(ratios.items()):
        ax.bar([x + i * width for x in range(len(labels))], values, width, label=n)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + width * (len(ratios) - 1) / 2 for x in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel("advantage over the Node reference (x, >1 is better)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "chart.png", dpi=110)


if __name__ == "__main__":
    main()
