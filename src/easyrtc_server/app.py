"""The aiohttp application: EasyRTC over socket.io, the client files and the demos."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from . import shutdown
from .clientfiles import find_client_files
from .cluster.forwarding import Forwarder
from .cluster.health import HealthCollector
from .cluster.node import ClusterNode
from .operations import OPERATIONS_KEY, Operations
from .options import Options
from .server import EasyRtcServer
from .transport.python_socketio import PythonSocketIOTransport
from .transport.socketio import LeanTransport
from .web import add_client_routes

log = logging.getLogger("easyrtc_server")

DEMOS_DIR = Path(__file__).resolve().parent / "demos"

SERVER_KEY = web.AppKey("easyrtc_server", EasyRtcServer)


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
    server = server or EasyRtcServer(options)
    options = server.options
    transport = transport or options.transport
    app = web.Application()
    app[SERVER_KEY] = server
    app.on_response_prepare.append(_plain_server_header)
    shutdown.install(app, server)  # before the transport's own shutdown closes every socket
    if options.redis_url is not None and server.cluster is None:
        server.cluster = ClusterNode(server, options)
    if server.cluster is not None:  # a node of a cluster: joins it at start, leaves at the end
        node = server.cluster
        app.on_startup.append(lambda _app: node.start())
        app.on_cleanup.append(lambda _app: node.stop())
    app[OPERATIONS_KEY] = operations = Operations(server)  # health, metrics, admin, webhooks
    operations.attach(app)
    if server.cluster is not None:  # its readers' health: /readyz red while behind
        health = server.cluster.health
        operations.readiness.add(health.reason)
        if operations.metrics is not None:
            operations.metrics.registry.register(HealthCollector(health))
    if transport == "lean":
        lean = LeanTransport.from_options(server, options)
        lean.attach(app)
        if server.cluster is not None:  # any node takes any request of a session: no stickiness
            Forwarder(server.cluster, lean.engine, options).install(app)
        if operations.metrics is not None:
            operations.metrics.wire = lean.engine  # bytes in and out
    elif transport == "python-socketio":
        PythonSocketIOTransport(server, options).attach(app)
    else:
        raise ValueError(f"unknown transport {transport!r}: 'lean' or 'python-socketio'")
    files = find_client_files(options.client_dir, options.socketio_js)
    for problem in files.problems:
        log.warning("%s", problem)
    demos = DEMOS_DIR if options.demos_enable and DEMOS_DIR.is_dir() else None
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
