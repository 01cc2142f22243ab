"""What runs around a server, whichever application hosts it (aiohttp's or the ASGI one).

`Hosting` gathers, once, what ``create_app`` and ``create_asgi_app`` both host: the operating
endpoints and their background work (``operations.py``), the cluster node when ``redis_url`` is
set, and, on a node with the lean transport, the forwarder that proxies requests for other
nodes' sessions (``cluster/forwarding.py``; its internal listener serves this server's sessions
whichever driver opened them). Each application calls ``start`` when it starts, ``drain`` when
it is asked to stop (before its transport closes whatever is left) and ``stop`` at the end; the
aiohttp app from its signals, the ASGI app from the lifespan events.

Options that only the command line's own HTTP server can honour are refused at start-up under
ASGI (`asgi_refusals`), naming the option, rather than ignored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import shutdown
from .engine import Carrier, Engine, EngineFactory
from .extras import require
from .operations import Operations
from .options import Options
from .server import EasyRtcServer
from .transport.engineio_sessions import EngineIOServer

if TYPE_CHECKING:
    from .cluster.forwarding import Forwarder
    from .cluster.node import ClusterNode
    from .cluster.partitioned import PartitionedNode

log = logging.getLogger("easyrtc_server")


def engine_for(options: Options) -> EngineFactory | None:
    """The engine ``options`` ask for: a cluster node when ``redis_url`` is set, else None
    (the server's default, the state in this process)."""
    if options.redis_url is None:
        return None
    require("cluster", "redis_url (a cluster node)")
    if options.cluster_state == "partitioned":
        from .cluster.partitioned import PartitionedNode

        def partitioned(carrier: Carrier, options: Options) -> Engine:
            return PartitionedNode(carrier, options)

        return partitioned
    from .cluster.node import ClusterNode  # redis-py only for a cluster

    def node(carrier: Carrier, options: Options) -> Engine:
        return ClusterNode(carrier, options)

    return node


class Hosting:
    """The operating side, cluster node and forwarder of one hosted server.

    ``engine``: the lean transport's sessions (None with python-socketio: no forwarding, a
    cluster then needs sticky sessions; no byte counts).
    """

    def __init__(self, server: EasyRtcServer, engine: EngineIOServer | None) -> None:
        self.server = server
        options = server.options
        self.engine = server.engine  # a node of a cluster joins it at start, leaves at the end
        self.node: ClusterNode | PartitionedNode | None = None
        if options.redis_url is not None:
            require("cluster", "redis_url (a cluster node)")
            from .cluster.node import ClusterNode
            from .cluster.partitioned import PartitionedNode

            if not isinstance(self.engine, ClusterNode | PartitionedNode):
                raise ValueError("a server for redis_url is made with engine=engine_for(options)")
            self.node = self.engine
        self.operations = Operations(server)  # health, metrics, admin, webhooks
        self.forwarder: Forwarder | None = None
        if self.node is not None and engine is not None:
            from .cluster.forwarding import Forwarder

            # any node takes any request of a session: no stickiness
            self.forwarder = Forwarder(self.node, engine, options)
        if self.node is not None:  # its readers' health: /readyz red while behind
            from .cluster.health import HealthCollector

            health = self.node.health
            self.operations.readiness.add(health.reason)
            if self.operations.metrics is not None:
                self.operations.metrics.registry.register(HealthCollector(health))
        if self.operations.metrics is not None and engine is not None:
            self.operations.metrics.wire = engine  # bytes in and out

    async def start(self) -> None:
        """Join the cluster (its internal listener first: the node announces its URL)."""
        if self.forwarder is not None:
            await self.forwarder.start()
        await self.engine.start()
        await self.server.directory.start()  # a partitioned node answers the others' queries

    async def drain(self) -> None:
        """Say goodbye to every client within ``shutdown_drain_time`` (``shutdown.drain``)."""
        await shutdown.drain(self.server, self.server.options.shutdown_drain_time)

    async def stop(self) -> None:
        """Leave the cluster; the transport has closed every session by now."""
        await self.server.directory.stop()
        await self.engine.stop()
        if self.forwarder is not None:
            await self.forwarder.stop()


def asgi_refusals(options: Options) -> list[str]:
    """Why ``options`` cannot be served as given under an ASGI server (empty: they can)."""
    found: list[str] = []
    if options.workers > 1:
        found.append(
            f"workers = {options.workers}: under ASGI the ASGI server runs the worker processes "
            "(uvicorn --workers N; with redis_url each one is a node of the cluster)"
        )
    if options.access_log_enable:
        found.append(
            "access_log_enable: under ASGI the ASGI server writes the access log "
            "(uvicorn --access-log)"
        )
    return found
