"""Benchmark easyrtc-server against the Node reference (open-easyrtc) on the same load.

Starts each server in turn on a free loopback port (pinned to CPU 0 when ``taskset`` exists),
drives it with ``bench/loadgen.js`` (Node + socket.io-client 4, pinned to CPU 1; the big join
storms fork several generator processes, all on CPU 1), and writes ``bench/results/results.json``,
``results.md`` (medians, spread, ours / reference per round) and ``chart.png``.

    .venv/bin/python bench/run.py --quick                    # about 3.5 minutes, 3 servers
    .venv/bin/python bench/run.py --rounds 3                 # the full set
    .venv/bin/python bench/run.py --only relay --servers ours,reference --rounds 5
    .venv/bin/python bench/run.py --only storm-1000 --servers ours,reference --rounds 3 \
        --heavy-rounds 3 --server-param reference:clients=500   # joins per CPU-s (issue 22)
    .venv/bin/python bench/run.py --variant ours-tick2=ours,EASYRTC_ROOM_UPDATE_TICK=0.002

The machine is noisy (shared, 2 cores): each scenario runs ``--rounds`` times, the servers
alternating within a round (ours, reference, ours, reference, …), so that each round's ratio
compares runs a few seconds apart; the table gives medians, min..max and every round's ratio.
Heavy scenarios (thousands of users) run ``--heavy-rounds`` times (1 by default).

Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = ROOT / ".venv" / "bin" / "python"
LOCK = Path("/tmp/easyrtc-server-bench.lock")
"""One benchmark run at a time on this machine, whichever worktree it comes from."""

HOST = "127.0.0.1"
SERVER_OPTIONS = {"roomMaxConnection": 0}
"""The same on every server: join storms put up to 10,000 users in one room (default limit 100)."""
OURS_ENV = {
    "EASYRTC_ROOM_MAX_CONNECTION": "0",
    # the load comes from one address at rates no real client sends: connection and message
    # limits off (the reference has none)
    "EASYRTC_MESSAGE_RATE": "0",
    "EASYRTC_MAX_CONNECTIONS": "0",
    "EASYRTC_MAX_CONNECTIONS_PER_ADDRESS": "0",
    # a generator parsing 10,000-entry tokens logs its last clients in late
    "EASYRTC_LOGIN_TIMEOUT": "0",
}


@dataclass(frozen=True)
class Variant:
    """A server the runner can start: its command line (``{python}``, ``{root}``, ``{host}``,
    ``{port}`` and ``{options}`` are filled in) and the environment it gets on top of ours."""

    cmd: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    reference: bool = False
    lean: bool = False
    """Must answer an Engine.IO 3 handshake (only the lean stack does), else it is skipped."""


_OURS = ("{python}", "-m", "easyrtc_server", "--log-level", "warning", "--no-demos")
_OURS_ADDR = ("--host", "{host}", "--port", "{port}")
_UVICORN = (
    "{python}", "-m", "uvicorn", "--factory", "--app-dir", "{root}/bench", "asgi_app:app",
    "--host", "{host}", "--port", "{port}", "--loop", "uvloop", "--http", "httptools",
    "--ws", "websockets-sansio", "--ws-per-message-deflate", "false",
    "--log-level", "warning", "--no-access-log",
)  # fmt: skip
"""uvicorn as the README recommends running it: without permessage-deflate, as aiohttp's driver,
with the websocket implementation uvicorn picks when ``websockets`` is installed (the driver
writes to it directly, see ``asgi_engineio.DirectWebSocket``)."""
_ASGI_ENV = {"EASYRTC_DEMOS_ENABLE": "false", "EASYRTC_LOG_LEVEL": "warning"}

SERVERS: dict[str, Variant] = {
    "ours": Variant((*_OURS, *_OURS_ADDR)),
    "ours-tick0": Variant((*_OURS, *_OURS_ADDR), {"EASYRTC_ROOM_UPDATE_TICK": "0"}),
    "ours-tick5": Variant((*_OURS, *_OURS_ADDR), {"EASYRTC_ROOM_UPDATE_TICK": "0.005"}),
    "ours-psio": Variant((*_OURS, "--transport", "python-socketio", *_OURS_ADDR)),
    "ours-uvicorn": Variant(_UVICORN, {**_ASGI_ENV, "EASYRTC_TRANSPORT": "lean"}, lean=True),
    "ours-psio-uvicorn": Variant(_UVICORN, {**_ASGI_ENV, "EASYRTC_TRANSPORT": "python-socketio"}),
    # uvicorn's other websocket implementations, to compare (issue 10)
    "ours-uvicorn-legacy": Variant(
        tuple("websockets" if arg == "websockets-sansio" else arg for arg in _UVICORN),
        {**_ASGI_ENV, "EASYRTC_TRANSPORT": "lean"},
        lean=True,
    ),
    "ours-uvicorn-wsproto": Variant(
        tuple("wsproto" if arg == "websockets-sansio" else arg for arg in _UVICORN),
        {**_ASGI_ENV, "EASYRTC_TRANSPORT": "lean"},
        lean=True,
    ),
    "reference": Variant(
        ("node", "{root}/tests/reference/server.js", "{port}", "{options}"), reference=True
    ),
}
"""Servers by name. ``--variant NAME=BASE,KEY=VALUE,…`` adds one with more environment."""


class Scenario(NamedTuple):
    label: str
    scenario: str
    params: dict[str, Any]
    ours_only: bool = False
    """The reference is not run (it never converges at that size)."""
    heavy: bool = False
    """Runs ``--heavy-rounds`` times rather than ``--rounds``."""
    only: tuple[str, ...] = ()
    """If set, the servers (of those in the run) it runs on; ``--scenario-servers`` overrides."""


QUICK: list[Scenario] = [
    Scenario("connect", "connect", {"clients": 500, "concurrency": 50}),
    Scenario("relay-20", "relay", {"pairs": 20, "seconds": 3}),
    Scenario("relay-100", "relay", {"pairs": 100, "seconds": 3}),
    Scenario("broadcast", "broadcast", {"rooms": 10, "roomSize": 10, "seconds": 3}),
    Scenario("storm-200", "storm", {"clients": 200}),
    Scenario("idle-2000", "idle", {"clients": 2000, "roomSize": 100, "idleSeconds": 2}),
    Scenario("disconnect-400", "disconnect", {"clients": 400}),
]
FULL: list[Scenario] = [
    Scenario("connect", "connect", {"clients": 2000, "concurrency": 100}),
    Scenario("connect-burst", "connect", {"clients": 500, "concurrency": 50}),
    Scenario("relay-20", "relay", {"pairs": 20, "seconds": 10}),
    Scenario("relay-100", "relay", {"pairs": 100, "seconds": 10}),
    Scenario("broadcast", "broadcast", {"rooms": 10, "roomSize": 10, "seconds": 10}),
    # per-CPU rates fall as load rises less than linearly (more frames per read and write):
    # compare them at equal offered load too, near what the reference sustains
    Scenario("relay-fixed-10k", "relay", {"pairs": 20, "seconds": 5, "rate": 10000}),
    Scenario("storm-200", "storm", {"clients": 200}),
    Scenario("disconnect-1000", "disconnect", {"clients": 1000, "timeout": 180}, heavy=True),
    Scenario("storm-1000", "storm", {"clients": 1000, "timeout": 180}, heavy=True),
    Scenario(
        "storm-5000",
        "storm",
        {"clients": 5000, "procs": 2, "timeout": 300},
        ours_only=True,
        heavy=True,
    ),
    # Without coalescing (ours-tick0) 10,000 joiners cost 50 M pushes: many minutes of server
    # and generator CPU. `--scenario-servers room-10000=ours-tick0` runs it anyway.
    Scenario(
        "room-10000",
        "storm",
        {"clients": 10000, "procs": 4, "hold": 12, "timeout": 600},
        ours_only=True,
        heavy=True,
        only=("ours", "ours-tick5"),
    ),
    Scenario(
        "heartbeat-10000",
        "idle",
        {"clients": 10000, "roomSize": 100, "pingIntervals": 4, "idleSeconds": 10, "timeout": 300},
        heavy=True,
    ),
]
FIXED_RATE = Scenario("relay-fixed-5k", "relay", {"pairs": 20, "seconds": 3, "rate": 5000})
"""A fixed-rate relay run (same offered load on every server) compares latency fairly."""
SMALL: list[Scenario] = [
    Scenario("storm-300", "storm", {"clients": 300, "procs": 2}),
    Scenario("room-1000", "storm", {"clients": 1000, "procs": 4, "hold": 5}, ours_only=True),
    Scenario("heartbeat-500", "idle", {"clients": 500, "roomSize": 100, "pingIntervals": 2}),
]
"""Small versions of the heavy scenarios, to check that they run end to end (``--only``)."""
ALL = [*QUICK, *FULL, FIXED_RATE, *SMALL]


def higher_is_better(metric: str) -> bool:
    """Rates are better high; times, latencies, CPU, memory and drops are better low."""
    return metric.endswith(("per_s", "per_cpu_s"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *cmd]
    return cmd


class Skip(Exception):
    """This server variant cannot run here (its import failed, or it is not the lean stack)."""


class Running(NamedTuple):
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def command(variant: Variant, port: int) -> list[str]:
    fill = {
        "python": str(PYTHON),
        "root": str(ROOT),
        "host": HOST,
        "port": str(port),
        "options": json.dumps(SERVER_OPTIONS),
    }
    return [part.format(**fill) for part in variant.cmd]


def start(name: str, variant: Variant, server_env: Mapping[str, str], log: Path) -> Running:
    port = free_port()
    env = dict(os.environ)
    if not variant.reference:
        env.update(OURS_ENV)
        env.update(server_env)
        env.update(variant.env)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as err:
        proc = subprocess.Popen(
            pinned(command(variant, port), 0),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                why = " / ".join(tail) or f"exit {proc.returncode}"
                if "ImportError" in why or "ModuleNotFoundError" in why or "Error loading" in why:
                    raise Skip(f"{name} could not start: {why[-300:]}") from None
                raise RuntimeError(f"{name} exited with {proc.returncode}: {why[-300:]}") from None
            time.sleep(0.1)
    else:
        stop(proc)
        raise RuntimeError(f"{name} did not listen within 30 s")
    url = f"http://{HOST}:{port}"
    if variant.lean and not answers_engineio3(url):
        stop(proc)
        raise Skip(
            f"{name} is not the lean stack (no Engine.IO 3 handshake at /socket.io/): "
            "create_asgi_app still serves python-socketio"
        )
    return Running(proc, url, log)


def answers_engineio3(url: str) -> bool:
    """The lean stack speaks Engine.IO 3 and 4; python-socketio refuses EIO=3."""
    try:
        with urllib.request.urlopen(f"{url}/socket.io/?EIO=3&transport=polling", timeout=5) as r:
            return r.status == 200 and b'"sid"' in r.read()
    except OSError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_scenario(url: str, pid: int, scenario: Scenario, log: Path) -> dict[str, Any]:
    """``taskset`` execs the server, so ``pid`` is the server's own. The generator's progress
    goes to ``log`` (``tail -f`` it in a long run)."""
    params = scenario.params
    cmd = [
        "node",
        str(ROOT / "bench" / "loadgen.js"),
        "--url",
        url,
        "--scenario",
        scenario.scenario,
        "--pid",
        str(pid),
        "--params",
        json.dumps(params),
        "--clk-tck",
        str(os.sysconf("SC_CLK_TCK")),
    ]
    slack = (
        params.get("hold", 0) + params.get("idleSeconds", 0) + 10 * params.get("pingIntervals", 0)
    )
    timeout = params.get("timeout", 60) + slack + 120
    with log.open("wb") as err:
        # its own session: a timeout ends the generator and the workers it forked, together
        gen = subprocess.Popen(
            pinned(cmd, 1), cwd=ROOT, stdout=subprocess.PIPE, stderr=err, start_new_session=True
        )
        try:
            out, _ = gen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(gen.pid, signal.SIGKILL)
            gen.communicate()
            return {"error": f"load generator timed out after {timeout} s"}
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if not lines:
        tail = log.read_text(errors="replace")[-400:]
        return {"error": f"no result (exit {gen.returncode}): {tail}"}
    return dict(json.loads(lines[-1]))


@contextmanager
def profiled(pid: int, out: Path, enabled: bool, fmt: str = "flamegraph") -> Iterator[None]:
    """A py-spy flame graph of the server while the block runs (sampling without pausing it;
    py-spy itself runs on the generator's core). ``fmt`` "raw": collapsed stacks, for
    ``bench/profile_summary.py``."""
    spy = PYTHON.parent / "py-spy"
    if not enabled:
        yield
        return
    if not spy.exists():
        print("NOTE: --profile needs py-spy (script/setup --test installs it)", file=sys.stderr)
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", "200", "--nonblocking"]
    cmd += ["--format", fmt, "--output", str(out)]
    with out.with_suffix(".log").open("wb") as log:
        rec = subprocess.Popen(pinned(cmd, 1), stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            rec.send_signal(signal.SIGINT)  # py-spy writes the graph on SIGINT
            try:
                rec.wait(60)
            except subprocess.TimeoutExpired:
                rec.kill()
                rec.wait()


@contextmanager
def one_run_at_a_time() -> Iterator[None]:
    with LOCK.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another benchmark run holds {LOCK}: waiting for it", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def parse_env(
    items: list[str], names: set[str]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``KEY=VALUE`` for every server of ours, ``NAME:KEY=VALUE`` for one of them."""
    common: dict[str, str] = {}
    per: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, rest = item.partition(":")
        if sep and head in names and "=" not in head:
            key, eq, value = rest.partition("=")
            target = per.setdefault(head, {})
        else:
            key, eq, value = item.partition("=")
            target = common
        if not eq or not key:
            raise SystemExit(f"--server-env wants KEY=VALUE or NAME:KEY=VALUE, not {item!r}")
        target[key] = value
    return common, per


def with_params(scenario: Scenario, specs: list[str]) -> Scenario:
    """``KEY=VALUE`` (a JSON value, else a string) for every scenario, ``LABEL:KEY=VALUE`` for
    one: e.g. ``room-10000:timeout=1200`` or ``clients=100``."""
    params = dict(scenario.params)
    for spec in specs:
        head, sep, rest = spec.partition(":")
        if sep and "=" not in head:
            if head != scenario.label:
                continue
            spec = rest
        key, eq, text = spec.partition("=")
        if not eq or not key:
            raise SystemExit(f"--param wants [LABEL:]KEY=VALUE, not {spec!r}")
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text
    return scenario._replace(params=params)


def add_variant(spec: str) -> None:
    """``NAME=BASE,KEY=VALUE,…``: BASE's command line with more environment."""
    name, eq, rest = spec.partition("=")
    base, *pairs = rest.split(",")
    if not eq or base not in SERVERS:
        raise SystemExit(f"--variant wants NAME=BASE[,KEY=VALUE…] with BASE in {list(SERVERS)}")
    env = dict(SERVERS[base].env)
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise SystemExit(f"--variant {spec!r}: {pair!r} is not KEY=VALUE")
        env[key] = value
    SERVERS[name] = replace(SERVERS[base], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="servers: "
        + ", ".join(SERVERS)
        + "; scenarios: "
        + ", ".join(dict.fromkeys(s.label for s in ALL)),
    )
    parser.add_argument("--quick", action="store_true", help="the short set (about 3.5 min)")
    parser.add_argument("--only", action="append", default=[], help="label or scenario (any set)")
    parser.add_argument("--servers", default="ours,ours-uvicorn,reference")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each scenario per server")
    parser.add_argument("--heavy-rounds", type=int, default=1, help="rounds of the heavy ones")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="[NAME:]KEY=VALUE",
        help="environment for our servers (all, or the one NAME), e.g. EASYRTC_PING_INTERVAL=25",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=BASE,KEY=VALUE,…",
        help="another server: BASE's command with this environment",
    )
    parser.add_argument(
        "--scenario-servers",
        action="append",
        default=[],
        metavar="LABEL=NAME,…",
        help="the servers one scenario runs on (of those in --servers), e.g. room-10000=ours",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="[LABEL:]KEY=VALUE",
        help="a load generator parameter for every scenario, or the one LABEL (see loadgen.js)",
    )
    parser.add_argument(
        "--server-param",
        action="append",
        default=[],
        metavar="NAME:[LABEL:]KEY=VALUE",
        help="a load generator parameter for one server's runs, e.g. reference:clients=500 "
        "(a storm at the size the reference manages, per CPU-second against ours at 1,000)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="a py-spy flame graph of each of our servers per run, in bench/results/profiles/",
    )
    parser.add_argument(
        "--profile-format",
        choices=("flamegraph", "raw"),
        default="flamegraph",
        help="py-spy's output: an SVG, or collapsed stacks (bench/profile_summary.py reads them)",
    )
    parser.add_argument("--against", default="reference", help="the ratio columns' denominator")
    parser.add_argument("--report", type=Path, help="only re-render a results.json")
    args = parser.parse_args()
    for spec in args.variant:
        add_variant(spec)
    if args.report:
        saved = json.loads(args.report.read_text())
        runs = saved.get("runs") or {
            name: {label: [r] for label, r in per.items()} for name, per in saved["results"].items()
        }
        labels = {label for per in runs.values() for label in per}
        plan = list({s.label: s for s in ALL if s.label in labels}.values())
        write_report(runs, list(runs), plan, saved["meta"], args.against, saved.get("notes", []))
        return

    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown server(s) {unknown}; known: {list(SERVERS)}")
    server_env, per_server_env = parse_env(args.server_env, set(SERVERS))
    if args.only:
        # a label in both sets means the --quick one with --quick, else the full one
        order = [*QUICK, *FULL] if args.quick else [*FULL, *QUICK]
        chosen: dict[str, Scenario] = {}
        for s in [*order, FIXED_RATE, *SMALL]:
            if s.label in args.only or s.scenario in args.only:
                chosen.setdefault(s.label, s)
        plan = list(chosen.values())
    else:
        plan = [*(QUICK if args.quick else FULL), FIXED_RATE]
    if not plan:
        raise SystemExit(f"nothing matches --only {args.only}")
    plan = [with_params(s, args.param) for s in plan]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with one_run_at_a_time():
        meta: dict[str, Any] = {
            "quick": args.quick,
            "only": args.only,
            "param": args.param,
            "server_param": args.server_param,
            "rounds": args.rounds,
            "heavy_rounds": args.heavy_rounds,
            "cpus": os.cpu_count(),
            "pinned": bool(shutil.which("taskset")),
            "machine": f"{platform.node()} {platform.machine()} {platform.processor()}".strip(),
            "load_before": load_average(),
            "server_env": server_env,
            "servers": {
                n: {
                    "cmd": " ".join(command(SERVERS[n], 0)),
                    "env": {**SERVERS[n].env, **per_server_env.get(n, {})},
                }
                for n in servers
            },
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        started = time.monotonic()
        runs, notes = run_plan(plan, servers, args, server_env, per_server_env)
        meta["seconds"] = round(time.monotonic() - started, 1)
        meta["load_after"] = load_average()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(
        json.dumps({"meta": meta, "notes": notes, "runs": runs}, indent=2)
    )
    write_report(runs, servers, plan, meta, args.against, notes)


def run_plan(
    plan: list[Scenario],
    servers: list[str],
    args: argparse.Namespace,
    server_env: Mapping[str, str],
    per_server_env: Mapping[str, Mapping[str, str]],
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[str]]:
    """Every scenario, round by round, the servers alternating within each round."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in servers}
    notes: list[str] = []
    skipped: set[str] = set()
    scenario_servers: dict[str, tuple[str, ...]] = {}
    server_params: dict[str, list[str]] = {}
    for spec in args.server_param:
        name, sep, rest = spec.partition(":")
        if not sep or name not in SERVERS:
            raise SystemExit(f"--server-param wants NAME:[LABEL:]KEY=VALUE, not {spec!r}")
        server_params.setdefault(name, []).append(rest)
    for spec in args.scenario_servers:
        label, _, names = spec.partition("=")
        scenario_servers[label] = tuple(n.strip() for n in names.split(",") if n.strip())
    for scenario in plan:
        chosen = scenario_servers.get(scenario.label, scenario.only or tuple(servers))
        if not any(n in chosen for n in servers):
            note = f"{scenario.label} not run: it runs on {', '.join(chosen)}, none in --servers"
            print(f"NOTE: {note}", file=sys.stderr)
            notes.append(note + ".")
            continue
        rounds = args.heavy_rounds if scenario.heavy else args.rounds
        for round_ in range(1, rounds + 1):
            for name in servers:
                variant = SERVERS[name]
                if name in skipped or (scenario.ours_only and variant.reference):
                    continue
                if name not in scenario_servers.get(scenario.label, scenario.only or servers):
                    continue
                env = {**server_env, **per_server_env.get(name, {})}
                log = RESULTS / "logs" / f"{name}-{scenario.label}-r{round_}.log"
                # a fresh server per run, so that one run's leftovers never slow the next
                try:
                    server = start(name, variant, env, log)
                except Skip as skip:
                    print(f"NOTE: {skip}; skipped", file=sys.stderr)
                    notes.append(f"{skip}; skipped.")
                    skipped.add(name)
                    continue
                except RuntimeError as e:
                    runs[name].setdefault(scenario.label, []).append({"error": str(e)})
                    continue
                try:
                    print(
                        f"{name:12} {scenario.label:16} round {round_}/{rounds} …",
                        end=" ",
                        flush=True,
                        file=sys.stderr,
                    )
                    gen_log = log.with_suffix(".loadgen.log")
                    ext = ".txt" if args.profile_format == "raw" else ".svg"
                    profile = log.parent.parent / "profiles" / f"{log.stem}{ext}"
                    enabled = args.profile and not variant.reference
                    own = with_params(scenario, server_params.get(name, []))
                    with profiled(server.proc.pid, profile, enabled, args.profile_format):
                        result = run_scenario(server.url, server.proc.pid, own, gen_log)
                    if own.params != scenario.params:
                        result["params"] = own.params
                    if profile.exists():
                        result["profile"] = str(profile.relative_to(ROOT))
                    result["round"] = round_
                    result["load_avg"] = load_average()
                    print(result.get("metrics", result.get("error")), file=sys.stderr)
                    runs[name].setdefault(scenario.label, []).append(result)
                finally:
                    stop(server.proc)
    return runs, notes


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer():
            return f"{int(value):,}"
        return f"{value:,.1f}" if abs(value) >= 10 or value == 0 else f"{value:.3g}"
    return str(value)


def values(runs: list[dict[str, Any]], metric: str) -> list[float | None]:
    """The metric of each run, in round order (None where a run failed or lacked it)."""
    out: list[float | None] = []
    for run in runs:
        v = run.get("metrics", {}).get(metric)
        out.append(float(v) if isinstance(v, int | float) else None)
    return out


def summary(vals: list[float | None]) -> str:
    """The median, and min..max over the rounds when there are several."""
    nums = [v for v in vals if v is not None]
    if not nums:
        return "-"
    med = statistics.median(nums)
    text = fmt(med)
    if len(nums) > 1:
        text += f" ({fmt(min(nums))}..{fmt(max(nums))})"
    if len(nums) < len(vals):
        text += f" [{len(vals) - len(nums)} failed]"
    return text


def ratios(ours: list[float | None], base: list[float | None]) -> str:
    """The median of the per-round ratios, then each round's (same round, a few seconds apart)."""
    per = [o / b if o is not None and b else None for o, b in zip(ours, base, strict=False)]
    nums = [r for r in per if r is not None]
    if not nums:
        return "-"
    text = f"{statistics.median(nums):.2f}x"
    if len(per) > 1:
        text += " (" + " ".join("-" if r is None else f"{r:.2f}" for r in per) + ")"
    return text


def table(
    runs: Mapping[str, Mapping[str, list[dict[str, Any]]]],
    servers: list[str],
    plan: list[Scenario],
    meta: Mapping[str, Any],
    against: str,
    notes: list[str],
) -> str:
    present = [n for n in servers if any(runs.get(n, {}).values())]
    compared = [n for n in present if n != against] if against in present else []
    head = ["scenario", "metric", *present, *(f"{n} / {against}" for n in compared)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in plan:
        label = scenario.label
        metrics: list[str] = []
        for name in present:
            for run in runs[name].get(label, []):
                for key in run.get("metrics", {}):
                    if key not in metrics:
                        metrics.append(key)
        for key in metrics:
            better = " ↑" if higher_is_better(key) else " ↓"
            row = [label, key + better]
            row += [summary(values(runs[n].get(label, []), key)) for n in present]
            base = values(runs[against].get(label, []), key) if compared else []
            row += [ratios(values(runs[n].get(label, []), key), base) for n in compared]
            rows.append("| " + " | ".join(row) + " |")
        for name in present:
            for run in runs[name].get(label, []):
                if "note" in run:
                    rows.append(
                        f"| {label} | note | {name}, round {run.get('round', '?')}: {run['note']} |"
                    )
                if "error" in run:
                    error = " ".join(str(run["error"]).split())[:200]
                    rows.append(
                        f"| {label} | failed | {name}, round {run.get('round', '?')}: {error} |"
                    )
    rounds = f"{meta.get('rounds', 1)} round(s), heavy scenarios {meta.get('heavy_rounds', 1)}"
    kind = "Quick" if meta.get("quick") else "Full"
    if meta.get("only"):
        kind = f"{kind} set, --only {' '.join(meta['only'])}:"
    lines = [
        "\n".join(rows),
        "",
        f"{kind} run, {rounds}; {meta.get('cpus')} CPUs, "
        f"server and load generator pinned to separate cores: {meta.get('pinned')}; "
        f"{meta.get('seconds')} s; load average {meta.get('load_before', '?')} before, "
        f"{meta.get('load_after', '?')} after. Cells: median (min..max over rounds); ratios: "
        "median of the per-round ratios (each round's). ↑ higher is better, ↓ lower is better.",
    ]
    env = meta.get("server_env") or {}
    extra = {n: s["env"] for n, s in meta.get("servers", {}).items() if s.get("env")}
    if env or extra:
        lines.append(f"Server environment: {env or 'defaults'}; per server: {extra}.")
    if meta.get("param"):
        lines.append(f"Load generator parameters changed: {' '.join(meta['param'])}.")
    lines += [f"NOTE: {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_report(
    runs: Mapping[str, Mapping[str, list[dict[str, Any]]]],
    servers: list[str],
    plan: list[Scenario],
    meta: Mapping[str, Any],
    against: str,
    notes: list[str],
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = table(runs, servers, plan, meta, against, notes)
    (RESULTS / "results.md").write_text(text)
    chart(runs, servers, plan, against)
    print(text)


def chart(
    runs: Mapping[str, Mapping[str, list[dict[str, Any]]]],
    servers: list[str],
    plan: list[Scenario],
    against: str,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart", file=sys.stderr)
        return
    if against not in servers or not any(runs.get(against, {}).values()):
        return
    others = [n for n in servers if n != against and any(runs.get(n, {}).values())]
    labels: list[str] = []
    bars: dict[str, list[float]] = {n: [] for n in others}
    for scenario in plan:
        base_runs = runs[against].get(scenario.label, [])
        keys = dict.fromkeys(k for r in base_runs for k in r.get("metrics", {}))
        for key in keys:
            base = [v for v in values(base_runs, key) if v]
            if not base or key.endswith("cpu_s"):
                continue
            labels.append(f"{scenario.label}\n{key}")
            for n in others:
                mine = [v for v in values(runs[n].get(scenario.label, []), key) if v is not None]
                ratio = statistics.median(mine) / statistics.median(base) if mine else 0.0
                bars[n].append(ratio if higher_is_better(key) else (1 / ratio if ratio else 0.0))
    if not labels:
        return
    fig, ax = plt.subplots(figsize=(max(8, len(labels) * 0.9), 5))
    width = 0.8 / max(1, len(bars))
    for i, (n, heights) in enumerate(bars.items()):
        ax.bar([x + i * width for x in range(len(labels))], heights, width, label=n)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + width * (len(bars) - 1) / 2 for x in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel(f"advantage over {against} (x, >1 is better; medians)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "chart.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
