"""``easyrtc-server``: run the server from the command line."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from aiohttp import web

from .app import create_app
from .options import Options, OptionsError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--client-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder whose node_modules hold open-easyrtc and socket.io-client (found if unset).",
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
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def main(
    host: str,
    port: int,
    client_dir: Path | None,
    no_demos: bool,
    cors_origins: tuple[str, ...],
    log_level: str,
) -> None:
    """A drop-in EasyRTC signaling server."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        options = Options(
            host=host,
            port=port,
            client_dir=client_dir,
            demos_enable=not no_demos,
            cors_origins=cors_origins,
            log_level=log_level,
        )
    except OptionsError as exc:
        raise click.UsageError(str(exc)) from None
    web.run_app(create_app(options), host=host, port=port, print=None)


if __name__ == "__main__":
    main()
