"""What the command line says when the server starts, and when it cannot.

One log line per listening address: the URLs to open, the transport, where the configuration
came from and whether the server runs alone or as a cluster node. A port already taken or an
address that does not exist is one line of error instead of a traceback (``listen_error``).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

from .config import CONFIG_ENV, ENV_PREFIX
from .options import Options

log = logging.getLogger("easyrtc_server")

ALONE = "alone (single node, no cluster)"
"""The role line's text until a cluster mode says ``as node N of cluster C``."""

_WILDCARDS = frozenset(("", "0.0.0.0", "::"))
_TRANSPORTS = {
    "lean": "lean (Engine.IO 3/4, Socket.IO 2-4 clients)",
    "python-socketio": "python-socketio (Engine.IO 4 only)",
}


def config_sources(
    config_file: Path | None, environ: Mapping[str, str], flags: Iterable[str]
) -> list[str]:
    """Where the effective options came from, lowest precedence first."""
    sources = ["defaults"]
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    if config_file is not None:
        sources.append(f"config file {config_file}")
    names = sorted(var for var in environ if var.startswith(ENV_PREFIX) and var != CONFIG_ENV)
    if names:
        sources.append("environment (" + ", ".join(names) + ")")
    flags = sorted(flags)
    if flags:
        sources.append("command line (" + ", ".join(flags) + ")")
    return sources


def _url_host(host: str) -> str:
    if host in _WILDCARDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _bound(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else (host or "0.0.0.0")
    where = " (all addresses)" if host in _WILDCARDS else ""
    return f"http://{shown}:{port}/{where}"


def listening_lines(options: Options, sources: list[str], role: str = ALONE) -> list[str]:
    """The start-up lines: the signaling address, then the metrics one if it has its own."""
    base = f"http://{_url_host(options.host)}:{options.port}"
    urls = [f"open {base}/"]
    if options.demos_enable:
        urls.append(f"demos {base}{options.demos_public_folder.rstrip('/')}/")
    if options.admin_token:
        urls.append(f"admin {base}/admin/")
    urls.append(f"health {base}/healthz {base}/readyz")
    if options.metrics_enable and not options.metrics_port:
        urls.append(f"metrics {base}/metrics")
    lines = [
        f"listening on {_bound(options.host, options.port)}: {', '.join(urls)}; "
        f"transport {_TRANSPORTS.get(options.transport, options.transport)}; "
        f"config from {' < '.join(sources)}; running {role}"
    ]
    if options.metrics_enable and options.metrics_port:
        metrics = f"http://{_url_host(options.host)}:{options.metrics_port}/metrics"
        lines.append(
            f"metrics listening on {_bound(options.host, options.metrics_port)}: {metrics}"
        )
    return lines


def announce(options: Options, sources: list[str], role: str = ALONE) -> None:
    for line in listening_lines(options, sources, role):
        log.info("%s", line)


def listen_error(exc: OSError, options: Options) -> str:
    """One line saying why the server could not listen, and what to do about it."""
    where = f"{options.host}:{options.port}"
    if options.metrics_enable and options.metrics_port:
        where += f" (or metrics port {options.metrics_port})"
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {where}: unknown host {options.host!r} (check --host)"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use "
            "(another server running? choose another with --port)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: {options.host} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {where}: {exc.strerror or exc}"
