"""``--workers N``: a supervisor process keeping N worker processes that serve one port.

Each worker is the same command line with the same options, run as a node of one cluster (the
options carry ``redis_url``) and bound to the same host and port with ``SO_REUSEPORT``, so the
kernel spreads incoming connections over them; the cluster (``docs/cluster.md``) makes them one
EasyRTC server. The supervisor serves nothing itself. It starts the workers, restarts one that
dies (logged with its exit code or signal; a worker that dies soon after its start waits longer
each time, so a crash loop does not spin), passes SIGTERM/SIGINT on to them so that each drains
its clients, and exits once they have all ended.

Workers run in their own process group, so a Ctrl-C in a terminal reaches the supervisor alone
and every worker hears one signal, not two (a second one ends a worker without draining). A
worker asks the kernel for SIGTERM if its supervisor dies (``PR_SET_PDEATHSIG``, Linux), so a
``kill -9`` of the supervisor leaves no orphans serving the port.

Secrets never reach a worker's command line (``ps`` shows it to every user of the host): the
supervisor takes ``--redis`` off the workers' arguments and hands the Redis URL over in the
environment (``EASYRTC_REDIS_URL``), where only the worker's user can read it.

Knows processes and signals, not the protocol or the cluster's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..options import Options

log = logging.getLogger("easyrtc_server.workers")

WORKER_FLAG: Final = "--worker-of"
"""Hidden command-line flag a worker is started with, followed by its supervisor's pid."""

STABLE_AFTER: Final = 10.0
"""Seconds a worker must have run for its death to be restarted at once (else backoff)."""
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0
"""Seconds before restarting a worker that died soon after starting: doubled each time."""

_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG: Final = 1


class WorkersError(Exception):
    """Why ``--workers`` cannot start (one line for the command line)."""


def check(options: Options) -> None:
    """Refuse what cannot work with several workers, before any is started."""
    if options.redis_url is None:
        raise WorkersError(
            f"--workers {options.workers} needs --redis: the workers are nodes of one cluster, "
            "and a cluster keeps what they share (rooms, who is connected where) in Redis"
        )
    if options.port == 0:
        raise WorkersError(
            "--workers needs a fixed --port: with port 0 each worker would listen on another one"
        )
    if options.metrics_enable and options.metrics_port:
        raise WorkersError(
            "--workers cannot share metrics_port between workers: serve /metrics on the main "
            "port (metrics_port = 0) or run one process per port"
        )
    _check_port_free(options.host, options.port)


def _check_port_free(host: str, port: int) -> None:
    """Bind the port once with SO_REUSEPORT: a port held by another program is refused here,
    once, rather than by every worker in a restart loop."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise WorkersError(f"cannot listen on {host}:{port}: unknown host {host!r}") from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                why = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc
                raise WorkersError(f"cannot listen on {host}:{port}: {why}") from None


SECRET_FLAGS: Final = {"--redis": "EASYRTC_REDIS_URL"}
"""Command-line flags whose value may hold a secret, and the variable that carries it instead."""


def worker_command(argv: Sequence[str], supervisor_pid: int) -> list[str]:
    """The command line of a worker: this one again without its secrets (``SECRET_FLAGS``),
    marked as a worker of ``supervisor_pid``."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in SECRET_FLAGS:
            skip = True
        elif not arg.startswith(tuple(flag + "=" for flag in SECRET_FLAGS)):
            kept.append(arg)
    return [sys.executable, "-m", "easyrtc_server", *kept, WORKER_FLAG, str(supervisor_pid)]


def worker_environment(options: Options) -> dict[str, str]:
    """The environment of a worker: this one, plus the secrets taken off its command line."""
    env = dict(os.environ)
    if options.redis_url is not None:
        env[SECRET_FLAGS["--redis"]] = options.redis_url
    return env


def become_worker(supervisor_pid: int) -> None:
    """In a worker: end with SIGTERM when the supervisor dies, and at once if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != supervisor_pid:
        raise SystemExit("the supervisor of this worker is gone")


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``signal SIGKILL``."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclass(slots=True)
class _Slot:
    index: int
    process: asyncio.subprocess.Process | None = None
    last_code: int | None = None


class Supervisor:
    """Keeps ``count`` workers running ``command`` until told to stop."""

    def __init__(
        self,
        count: int,
        command: Sequence[str],
        *,
        stable_after: float = STABLE_AFTER,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.env = env
        self.slots = [_Slot(index) for index in range(1, count + 1)]
        self.stable_after = stable_after
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self._stopping = asyncio.Event()

    async def run(self) -> int:
        """Until SIGTERM/SIGINT and the workers' end: 0 if every worker ended cleanly."""
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self.stop, signum)
        log.info("supervising %d workers (pid %d)", len(self.slots), os.getpid())
        try:
            await asyncio.gather(*(self._keep(slot) for slot in self.slots))
        finally:
            for signum in _SIGNALS:
                loop.remove_signal_handler(signum)
        failed = [slot for slot in self.slots if slot.last_code not in (0, None)]
        log.info("all workers ended%s", f" ({len(failed)} not cleanly)" if failed else "")
        return 1 if failed else 0

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop restarting; pass the signal on (a second one ends the workers at once)."""
        if not self._stopping.is_set():
            log.info("%s: stopping the workers", signal.Signals(signum).name)
        self._stopping.set()
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signum)

    async def _keep(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        while not self._stopping.is_set():
            if delay and await self._stopped_within(delay):
                return
            started = loop.time()
            process = slot.process = await asyncio.create_subprocess_exec(
                *self.command, process_group=0, env=self.env
            )
            log.info("worker %d started (pid %d)", slot.index, process.pid)
            if self._stopping.is_set():  # a signal came while it was being started
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            code = slot.last_code = await process.wait()
            slot.process = None
            how = describe_exit(code)
            if self._stopping.is_set():
                log.info("worker %d (pid %d) ended: %s", slot.index, process.pid, how)
                return
            quick = loop.time() - started < self.stable_after
            delay = min(delay * 2 or self.backoff_first, self.backoff_max) if quick else 0.0
            log.warning(
                "worker %d (pid %d) died: %s; restarting it%s",
                slot.index,
                process.pid,
                how,
                f" in {delay:g} s" if delay else "",
            )

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True


def supervise(options: Options, argv: Sequence[str]) -> int:
    """Run the supervisor of ``options.workers`` workers of this command line; its exit code.

    On asyncio's own loop: uvloop cannot start a process in a process group of its own."""
    check(options)
    supervisor = Supervisor(
        options.workers, worker_command(argv, os.getpid()), env=worker_environment(options)
    )
    return asyncio.run(supervisor.run())
