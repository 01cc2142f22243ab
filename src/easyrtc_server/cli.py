"""``easyrtc-server``: run the server from the command line.

The options come from ``config.load_options``: defaults, then ``--config FILE`` (TOML), then
``EASYRTC_*`` environment variables, then the flags given here; a flag left out changes nothing.
With ``jwt_secret`` set (config file or ``EASYRTC_JWT_SECRET``), every login needs a token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from . import collector, logformat, shutdown
from .app import create_app, engine_for
from .checkconfig import check_config
from .clientfiles import bundled_versions, find_client_files
from .cluster import workers as cluster_workers
from .config import ConfigError, Setting, load_options, to_toml
from .diagnostics import install_task_dump
from .jwtauth import JwtAuth
from .options import LOG_FORMATS, LOG_LEVELS, TRANSPORTS, Options
from .server import EasyRtcServer
from .startup import announce, config_sources, listen_error

_DEFAULTS = Options()
_AFTER_DRAIN = 1.0
"""Seconds aiohttp waits for requests still running once the clients are drained."""


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: this server's version, the client files it would serve (found as at
    start-up, from $EASYRTC_CLIENT_DIR or the defaults), and those bundled in the package."""
    if not value or ctx.resilient_parsing:
        return
    try:
        version = metadata.version("easyrtc-server")
    except metadata.PackageNotFoundError:
        from . import __version__ as version
    bundled = ", ".join(f"{name} {v}" for name, v in bundled_versions().items())
    click.echo(f"easyrtc-server {version}")
    click.echo(find_client_files().summary())
    click.echo(f"bundled client files: {bundled or 'none (a checkout serves its node_modules)'}")
    ctx.exit()


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the server's version and its client files' versions, and exit.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML configuration file (default: $EASYRTC_CONFIG, else none).",
)
@click.option("--host", help=f"Address to listen on.  [default: {_DEFAULTS.host}]")
@click.option("--port", type=int, help=f"Port to listen on.  [default: {_DEFAULTS.port}]")
@click.option(
    "--client-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder whose node_modules hold open-easyrtc and socket.io-client, or an open-easyrtc "
    "package or api folder (found if unset).",
)
@click.option(
    "--socketio-js",
    type=click.Path(path_type=Path),
    help="socket.io browser bundle to serve at /socket.io/socket.io.js, e.g. "
    "node_modules/socket.io-client-v2/dist/socket.io.js for open-easyrtc 2.0.x clients "
    "(default: the one --client-dir leads to).",
)
@click.option("--no-demos", is_flag=True, help="Do not serve the demo pages.")
@click.option(
    "--demos-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to serve at /demos/ instead of the bundled demo pages, e.g. "
    "node_modules/open-easyrtc/demos (the reference's own demos).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="An origin allowed to connect from other pages ('*' for any); repeatable.",
)
@click.option(
    "--strict-errors",
    is_flag=True,
    default=None,
    help="Answer with an EasyRTC error where the reference stays silent (for protocol clients "
    "and debugging; easyrtc.js shows every error in a dialog).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help=f"[default: {_DEFAULTS.log_level}]",
)
@click.option(
    "--transport",
    type=click.Choice(TRANSPORTS),
    help=f"socket.io implementation.  [default: {_DEFAULTS.transport}]",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    help=f"text, or json: one object a line.  [default: {_DEFAULTS.log_format}]",
)
@click.option(
    "--access-log",
    is_flag=True,
    default=None,
    help="Log every HTTP request, socket.io polls included.",
)
@click.option(
    "--redis",
    "redis_url",
    help="redis://HOST:PORT/DB: run as a node of a cluster sharing this Redis "
    "(default: one process, no Redis).",
)
@click.option(
    "--cluster",
    "cluster_name",
    help=f"Name of the cluster (namespaces its Redis keys).  [default: {_DEFAULTS.cluster_name}]",
)
@click.option(
    "--workers",
    type=int,
    help="Processes serving this port as nodes of one cluster (needs --redis).  [default: 1]",
)
@click.option(cluster_workers.WORKER_FLAG, "worker_of", type=int, hidden=True)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the effective configuration as TOML (secrets hidden) and exit.",
)
def main(
    config_file: Path | None,
    host: str | None,
    port: int | None,
    client_dir: Path | None,
    socketio_js: Path | None,
    no_demos: bool,
    demos_dir: Path | None,
    cors_origins: tuple[str, ...],
    strict_errors: bool | None,
    log_level: str | None,
    transport: str | None,
    log_format: str | None,
    access_log: bool | None,
    redis_url: str | None,
    cluster_name: str | None,
    workers: int | None,
    worker_of: int | None,
    print_config: bool,
) -> None:
    """A drop-in EasyRTC signaling server.

    Settings, each overriding the one before: defaults, the --config file, EASYRTC_<OPTION>
    environment variables, these flags.
    """
    if click.get_current_context().invoked_subcommand is not None:
        return
    given: dict[str, tuple[str, Any]] = {}
    if host is not None:
        given["host"] = ("--host", host)
    if port is not None:
        given["port"] = ("--port", port)
    if client_dir is not None:
        given["client_dir"] = ("--client-dir", client_dir)
    if socketio_js is not None:
        given["socketio_js"] = ("--socketio-js", socketio_js)
    if no_demos:
        given["demos_enable"] = ("--no-demos", False)
    if demos_dir is not None:
        given["demos_dir"] = ("--demos-dir", demos_dir)
    if cors_origins:
        given["cors_origins"] = ("--cors-origin", cors_origins)
    if strict_errors:
        given["strict_errors"] = ("--strict-errors", True)
    if log_level is not None:
        given["log_level"] = ("--log-level", log_level.lower())
    if transport is not None:
        given["transport"] = ("--transport", transport)
    if log_format is not None:
        given["log_format"] = ("--log-format", log_format)
    if access_log:
        given["access_log_enable"] = ("--access-log", True)
    if redis_url is not None:
        given["redis_url"] = ("--redis", redis_url)
    if cluster_name is not None:
        given["cluster_name"] = ("--cluster", cluster_name)
    if workers is not None:
        given["workers"] = ("--workers", workers)
    overrides = {
        name: Setting(value, f"command line {flag}") for name, (flag, value) in given.items()
    }
    try:
        options = load_options(config_file, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if print_config:
        click.echo(to_toml(options), nl=False)
        return
    if options.workers > 1 and worker_of is None:  # a supervisor of workers (cluster/workers.py)
        logformat.configure(options)
        try:
            sys.exit(cluster_workers.supervise(options, sys.argv[1:]))
        except cluster_workers.WorkersError as exc:
            raise click.ClickException(str(exc)) from None
    if worker_of is not None:
        cluster_workers.become_worker(worker_of)
    server = EasyRtcServer(options, hooks=JwtAuth.from_options(options), engine=engine_for(options))
    logformat.configure(options, server)
    logging.getLogger("easyrtc_server").info(
        "%s", find_client_files(options.client_dir, options.socketio_js).summary()
    )
    sources = config_sources(config_file, os.environ, (flag for flag, _ in given.values()))
    app = create_app(server=server)
    role = server.engine.role
    app.on_shutdown.insert(0, shutdown.exit_on_second_signal)
    app.on_startup.append(install_task_dump)  # kill -USR1: where every task waits, logged
    collector.tune_for_serving()
    try:
        web.run_app(
            app,
            host=options.host,
            port=options.port,
            print=lambda _: announce(options, sources, role),
            loop=_event_loop(),
            access_log_class=logformat.access_logger_class(options),
            shutdown_timeout=_AFTER_DRAIN,
            reuse_port=worker_of is not None,  # the workers of --workers share the port
        )
    except OSError as exc:  # the port is taken, the address is wrong: one line, no traceback
        raise click.ClickException(listen_error(exc, options)) from None


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_config_command(file: Path) -> None:
    """Validate a TOML configuration FILE without starting the server."""
    try:
        click.echo(check_config(file))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (it is a dependency on Linux and macOS): a faster loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    main()
