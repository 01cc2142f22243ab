"""``easyrtc-server``: run the server from the command line.

The options come from ``config.load_options``: defaults, then ``--config FILE`` (TOML), then
``EASYRTC_*`` environment variables, then the flags given here; a flag left out changes nothing.
With ``jwt_secret`` set (config file or ``EASYRTC_JWT_SECRET``), every login needs a token.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from . import shutdown
from .app import create_app
from .config import ConfigError, Setting, load_options, to_toml
from .jwtauth import JwtAuth
from .options import LOG_LEVELS, TRANSPORTS, Options
from .server import EasyRtcServer

_DEFAULTS = Options()
_AFTER_DRAIN = 1.0
"""Seconds aiohttp waits for requests still running once the clients are drained."""


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
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
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="An origin allowed to connect from other pages ('*' for any); repeatable.",
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
    cors_origins: tuple[str, ...],
    log_level: str | None,
    transport: str | None,
    print_config: bool,
) -> None:
    """A drop-in EasyRTC signaling server.

    Settings, each overriding the one before: defaults, the --config file, EASYRTC_<OPTION>
    environment variables, these flags.
    """
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
    if cors_origins:
        given["cors_origins"] = ("--cors-origin", cors_origins)
    if log_level is not None:
        given["log_level"] = ("--log-level", log_level.lower())
    if transport is not None:
        given["transport"] = ("--transport", transport)
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
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = EasyRtcServer(options, hooks=JwtAuth.from_options(options))
    app = create_app(server=server)
    app.on_shutdown.insert(0, shutdown.exit_on_second_signal)
    web.run_app(
        app,
        host=options.host,
        port=options.port,
        print=None,
        loop=_event_loop(),
        shutdown_timeout=_AFTER_DRAIN,
    )


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (it is a dependency on Linux and macOS): a faster loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    main()
