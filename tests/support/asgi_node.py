"""The ASGI app under a real uvicorn, as a user runs it: ``python -m support.asgi_node ARGS``.

Takes the arguments `support.nodes.Node` gives (``--host --port [--redis URL --cluster NAME]``)
plus the options as ``EASYRTC_*`` environment variables, builds ``create_asgi_app`` and serves it
with ``uvicorn.Server`` (signals, lifespan and websockets as uvicorn does them). Logs the line
`support.nodes.Node` waits for once uvicorn listens.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

import uvicorn

from easyrtc_server import logformat
from easyrtc_server.asgi import create_asgi_app
from easyrtc_server.config import load_options

log = logging.getLogger("easyrtc_server")


class _AnnouncingServer(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            log.info("listening on http://%s:%d", self.config.host, self.config.port)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis")
    parser.add_argument("--cluster")
    args = parser.parse_args()
    environ = {**os.environ, "EASYRTC_HOST": args.host, "EASYRTC_PORT": str(args.port)}
    if args.redis:
        environ["EASYRTC_REDIS_URL"] = args.redis
    if args.cluster:
        environ["EASYRTC_CLUSTER_NAME"] = args.cluster
    options = load_options(environ=environ)
    logformat.configure(options)
    app = create_asgi_app(options)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, lifespan="on")
    _AnnouncingServer(config).run()


if __name__ == "__main__":
    main()
