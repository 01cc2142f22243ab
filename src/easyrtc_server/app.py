"""The aiohttp application: EasyRTC over socket.io, the client files and the demos."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from .clientfiles import find_client_files
from .extras import require
from .hosting import Hosting, engine_for
from .operations import OPERATIONS_KEY
from .options import Options
from .server import EasyRtcServer
from .transport.socketio import LeanTransport
from .web import add_client_routes

log = logging.getLogger("easyrtc_server")

DEMOS_DIR = Path(__file__).resolve().parent / "demos"

SERVER_KEY = web.AppKey("easyrtc_server", EasyRtcServer)

__all__ = ["DEMOS_DIR", "SERVER_KEY", "create_app", "engine_for"]


def create_app(
    options: Options | None = None,
    *,
    server: EasyRtcServer | None = None,
    transport: str | None = None,
) -> web.Application:
    """An aiohttp application serving EasyRTC at ``/socket.io/`` plus the client files.

    ``transport`` (default: the ``transport`` option) is ``"lean"``, the project's own
    Engine.IO 3/4 stack, or ``"python-socketio"`` (Engine.IO 4 only, several times slower).
    """
    server = server or EasyRtcServer(options, engine=engine_for(options or Options()))
    options = server.options
    transport = transport or options.transport
    if transport not in ("lean", "python-socketio"):
        raise ValueError(f"unknown transport {transport!r}: 'lean' or 'python-socketio'")
    app = web.Application()
    app[SERVER_KEY] = server
    app.on_response_prepare.append(_plain_server_header)
    lean = LeanTransport.from_options(server, options) if transport == "lean" else None
    hosting = Hosting(server, lean.engine if lean is not None else None)
    # the drain comes first among the shutdown handlers, before the transport closes the rest
    app.on_shutdown.append(lambda _app: hosting.drain())
    app.on_startup.append(lambda _app: hosting.start())
    app.on_cleanup.append(lambda _app: hosting.stop())
    app[OPERATIONS_KEY] = hosting.operations
    hosting.operations.attach(app)
    if lean is not None:
        driver = lean.attach(app)
        if hosting.forwarder is not None:
            hosting.forwarder.serve(driver)
    else:
        require("python-socketio", "transport 'python-socketio'")
        from .transport.python_socketio import PythonSocketIOTransport

        PythonSocketIOTransport(server, options).attach(app)
    files = find_client_files(options.client_dir, options.socketio_js)
    for problem in files.problems:
        log.warning("%s", problem)
    demos_dir = options.demos_dir or DEMOS_DIR
    demos = demos_dir if options.demos_enable and demos_dir.is_dir() else None
    if options.demos_enable and demos is None:
        log.warning("demo pages not served: %s is not a folder", demos_dir)
    if options.api_enable or demos is not None:
        add_client_routes(
            app,
            files if options.api_enable else files.without_api(),
            api_path=options.api_public_folder,
            demos_dir=demos,
            demos_path=options.demos_public_folder,
        )
    return app


async def _plain_server_header(_request: web.BaseRequest, response: web.StreamResponse) -> None:
    """No Python or aiohttp version in the ``Server`` header (aiohttp's default names both)."""
    response.headers["Server"] = "easyrtc-server"
