"""No sticky sessions: Engine.IO requests that reach the wrong node are proxied to the owner.

A socket.io client makes many HTTP requests for one session (polls, posts, the websocket
upgrade); a round-robin load balancer spreads them over the nodes. On a cluster node every
Engine.IO sid starts with the node's id (``{node_id}.{random}``), so a node that gets a request
for a session it does not hold knows which node does, looks up that node's address in its alive
key (``NodeInfo.url``) and proxies the request there: polls and posts as one HTTP request each
(over one shared connection pool), a websocket upgrade as a second websocket whose frames are
bridged both ways until either side closes.

Every node listens on a second, internal address (``cluster_listen``, default ``127.0.0.1:0``)
serving the same Engine.IO handler, so the nodes are reachable one by one even when several
share a public port (``--workers``). A forwarded request carries ``FORWARDED_BY``; one that
arrives with it and still finds no session is refused (no loops). A sid naming a node that is
not alive, or cannot be reached, gets Engine.IO's "Session ID unknown", and the client
reconnects (to any node).

Only the session's later requests are ever forwarded: the handshake is served where it lands,
with that connection's address, so per-address limits see the real client (or, behind a proxy,
what the proxy gives them). The internal listener therefore takes no handshake (so no login)
and only requests signed with the cluster's secret (``secret``): 403 for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final, NamedTuple
from urllib.parse import urlsplit

from aiohttp import (
    ClientError,
    ClientSession,
    ClientTimeout,
    ClientWebSocketResponse,
    TCPConnector,
    WSCloseCode,
    WSMsgType,
    WSServerHandshakeError,
    web,
)
from aiohttp.http_exceptions import HttpProcessingError

from ..logsafe import redacted_url, refusals
from ..transport.engineio import AiohttpEngineIO
from .keys import NODE_ID_LENGTH
from .links import LINK_PATH, LinkServer
from .redisclient import REDIS_ERRORS
from .secret import NODE_AUTH, secret_of, sign, verify

if TYPE_CHECKING:
    from ..options import Options
    from ..transport.engineio_sessions import EngineIOServer
    from .node import ClusterNode
    from .partitioned import PartitionedNode

log = logging.getLogger("easyrtc_server.cluster.forwarding")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FORWARDED_BY: Final = "X-EasyRTC-Forwarded-By"
"""Header of a forwarded request: the id of the node that forwarded it."""

KEPT_REQUEST_HEADERS: Final = (
    "Origin",
    "Cookie",
    "Content-Type",
    "User-Agent",
    "Referer",
    "Authorization",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Real-IP",
)
"""Client headers the owner sees as the client sent them (it answers CORS by ``Origin``)."""

KEPT_RESPONSE_HEADERS: Final = (
    "Content-Type",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Vary",
    "Set-Cookie",
)

_WATCH_PERIOD: Final = 0.25
"""Seconds between checks that the client of a pending forwarded poll is still there."""
_CONNECT_TIMEOUT: Final = 5.0
_NETWORK_ERRORS: Final = (OSError, ClientError, HttpProcessingError, asyncio.IncompleteReadError)
_ID_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def owner_of(sid: str) -> str | None:
    """The node id a cluster sid starts with, or None for a sid of another shape."""
    node, dot, rest = sid.partition(".")
    if dot and rest and len(node) == NODE_ID_LENGTH and set(node) <= _ID_CHARS:
        return node
    return None


class Destination(NamedTuple):
    """Where a request for another node's session goes: the owner, the URL, the headers."""

    owner: str
    url: str
    headers: dict[str, str]


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a host and a port."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Forwarder:
    """The internal listener of one node, and the proxy to the other nodes' listeners."""

    def __init__(
        self,
        node: ClusterNode | PartitionedNode,
        engine: EngineIOServer,
        options: Options,
        *,
        path: str = "/socket.io/",
    ) -> None:
        self.node = node
        self.engine = engine
        self.options = options
        self.path = "/" + path.strip("/")
        self.url: str | None = None
        """Where the other nodes reach this one (set by ``start``)."""
        self.forwarded = 0
        """Requests (polls, posts, upgrades) proxied to another node."""
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._unreachable: set[str] = set()
        self._secret = secret_of(options)
        self._links = LinkServer(self._secret, node.inbox.receive)
        """The other nodes' links to this one (``links``, ``cluster_relay = "direct"``)."""

        self.engine.sid_prefix = self.node.node_id + "."  # any node can tell a sid's owner

    def serve(self, driver: AiohttpEngineIO) -> None:
        """Forward what ``driver`` finds no session for. ``start`` (the internal listener)
        must run before the node first announces itself (it announces the URL)."""
        driver.forward = self.forward

    @property
    def session(self) -> ClientSession:
        """The connection pool to the other nodes (between ``start`` and ``stop``)."""
        if self._session is None:
            raise RuntimeError("the forwarder is not started")
        return self._session

    # -- the internal listener -----------------------------------------------------------------

    async def start(self) -> None:
        inner = web.Application(
            client_max_size=self.engine.max_http_buffer_size + 1024,
            middlewares=[self._only_nodes],
        )
        driver = AiohttpEngineIO(self.engine)  # the same sessions, whichever driver opened them
        self.serve(driver)
        handler = driver.handle_request
        inner.router.add_get(LINK_PATH, self._links.handle)  # the other nodes' relays
        inner.router.add_route("*", self.path + "/", handler)
        if self.path != "/":
            inner.router.add_route("*", self.path, handler)
        runner = web.AppRunner(inner, handle_signals=False, access_log=None)
        await runner.setup()
        host, port = listen_address(self.options.cluster_listen)
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self.url = self.options.cluster_advertise_url or _url_of(runner, host)
        self.node.registry.info.url = self.url
        timeout = ClientTimeout(
            total=None,
            sock_connect=_CONNECT_TIMEOUT,
            sock_read=self.engine.ping_interval + self.engine.ping_timeout + _CONNECT_TIMEOUT,
        )
        self._session = ClientSession(
            connector=TCPConnector(limit=0),
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        log.info("node %s takes forwarded requests at %s", self.node.node_id, self.url)

    @web.middleware
    async def _only_nodes(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The internal listener serves the other nodes' forwarded requests, nothing else."""
        if request.path == LINK_PATH:
            return await handler(request)  # checks its own signature (``links.LinkServer``)
        sid = request.query.get("sid")
        header = request.headers.get(NODE_AUTH, "")
        if (
            not sid
            or verify(self._secret, header, request.method, _target(request.path, sid)) is None
        ):
            self._note(
                request.remote or "unknown", logging.WARNING,
                "refused a request to the internal listener: %s",
                "a handshake" if not sid else "not signed with the cluster secret",
            )  # fmt: skip
            return web.Response(status=403, text="this address takes the cluster's nodes only")
        return await handler(request)

    async def stop(self) -> None:
        log.info("node %s forwarded %d requests to other nodes", self.node.node_id, self.forwarded)
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._links.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- forwarding ----------------------------------------------------------------------------

    async def destination(
        self, method: str, sid: str, target: str, headers: Mapping[str, str], remote: str | None
    ) -> Destination | None:
        """Where a ``method`` request for ``sid`` (to ``target``, the path and query) goes,
        with the headers to send (signed for the owner); None when it is not forwarded (the
        driver then answers "Session ID unknown"). Driver-neutral: ``headers`` are the
        request's, by canonical name."""
        owner = owner_of(sid)
        if owner is None or owner == self.node.node_id or self._session is None:
            return None
        client = remote or "unknown"
        if FORWARDED_BY in headers:
            self._note(
                client, logging.WARNING,
                "refused a request for session %.40s forwarded by node %.20s: not here either",
                sid, headers[FORWARDED_BY],
            )  # fmt: skip
            return None
        try:
            base = await self.node.registry.url_of(owner)
        except REDIS_ERRORS as exc:
            self._note(
                client, logging.WARNING,
                "cannot forward session %.40s to node %s: Redis: %s", sid, owner, exc,
            )  # fmt: skip
            return None
        if base is None:
            self._note(client, logging.INFO, "session %.40s: its node %s is not alive", sid, owner)
            return None
        headers = self._headers(headers, remote)
        signed = _target(urlsplit(target).path, sid)
        headers[NODE_AUTH] = sign(self._secret, self.node.node_id, method, signed)
        return Destination(owner, base.rstrip("/") + target, headers)

    @staticmethod
    def _note(client: str, level: int, msg: str, *args: object) -> None:
        """A line a request can cause: one per client address per 10 s (``logsafe``)."""
        refusals.throttled(log, f"forwarding {client} {msg}", level, msg, *args)

    def note(self, client: str | None, level: int, msg: str, *args: object) -> None:
        """For the drivers' forwarding paths: a throttled line (see ``_note``)."""
        self._note(client or "unknown", level, msg, *args)

    async def forward(self, request: web.Request, sid: str) -> web.StreamResponse | None:
        """The aiohttp driver's question about a sid it does not hold: the owner's answer, or
        None (the driver then answers "Session ID unknown")."""
        to = await self.destination(
            request.method, sid, str(request.rel_url), request.headers, request.remote
        )
        if to is None:
            return None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._forward_websocket(request, to.owner, to.url, to.headers)
        return await self._forward_http(request, to.owner, to.url, to.headers)

    def _headers(self, given: Mapping[str, str], remote: str | None) -> dict[str, str]:
        headers = {name: given[name] for name in KEPT_REQUEST_HEADERS if name in given}
        client = remote or "unknown"
        earlier = given.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{earlier}, {client}" if earlier else client
        headers[FORWARDED_BY] = self.node.node_id
        return headers

    def reached(self, owner: str) -> None:
        """A request was forwarded to ``owner`` (counted; its next failure is logged)."""
        self._unreachable.discard(owner)
        self.forwarded += 1

    def unreachable(self, owner: str, url: str, exc: BaseException) -> None:
        """``owner`` could not be reached (logged once until it is reached again)."""
        self._unreachable_once(owner, url, exc)

    def _unreachable_once(self, owner: str, url: str, exc: BaseException) -> None:
        if owner not in self._unreachable:
            self._unreachable.add(owner)
            log.warning("cannot reach node %s at %s: %r", owner, redacted_url(url), exc)

    async def _forward_http(
        self, request: web.Request, owner: str, url: str, headers: dict[str, str]
    ) -> web.StreamResponse | None:
        assert self._session is not None
        body: _Streamed | None = None
        if request.method == "POST":
            # Streamed as it arrives: the owner checks the session first (an unknown one is
            # answered at once, whatever the body), then bounds the body's size and time as
            # for its own requests. At most one byte more than it takes is sent.
            body = _Streamed(request, self.engine.max_http_buffer_size + 1)
        session = self._session

        async def exchange() -> web.Response:
            async with session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            ) as upstream:
                payload = await upstream.read()
                kept = {
                    name: upstream.headers[name]
                    for name in KEPT_RESPONSE_HEADERS
                    if name in upstream.headers
                }
                return web.Response(status=upstream.status, body=payload, headers=kept)

        task = asyncio.ensure_future(exchange())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=_WATCH_PERIOD)
                if done:
                    break
                transport = request.transport
                if transport is None or transport.is_closing():
                    # The client left during a held poll: drop the forwarded one too, so the
                    # owner sees its poll connection close, as if the client were its own.
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, *_NETWORK_ERRORS):
                        await task
                    return web.Response(status=400)
            response = task.result()
        except _NETWORK_ERRORS as exc:
            if body is not None and body.failed:  # the client's body broke off, not the node
                return web.Response(status=400)
            self._unreachable_once(owner, url, exc)
            return None
        finally:
            if not task.done():
                task.cancel()
        self._unreachable.discard(owner)
        self.forwarded += 1
        return response

    async def _forward_websocket(
        self, request: web.Request, owner: str, url: str, headers: dict[str, str]
    ) -> web.StreamResponse | None:
        assert self._session is not None
        limit = self.engine.max_http_buffer_size
        try:
            upstream = await self._session.ws_connect(
                url, headers=headers, max_msg_size=limit, compress=0, autoping=True
            )
        except WSServerHandshakeError as exc:
            self._note(
                request.remote or "unknown", logging.INFO,
                "node %s refused the upgrade of a forwarded session: %s", owner, exc.status,
            )  # fmt: skip
            return None
        except _NETWORK_ERRORS as exc:
            self._unreachable_once(owner, url, exc)
            return None
        self._unreachable.discard(owner)
        self.forwarded += 1
        client = web.WebSocketResponse(max_msg_size=limit, compress=False, autoping=True)
        try:
            await client.prepare(request)
            await _bridge(client, upstream)
        finally:
            # The client's own close code passes on as it is: 1000/1001 is a goodbye, and the
            # owner ends the session. Anything else ending the bridge here (this node stopping,
            # the client's connection lost) is a drop, never a goodbye: the owner holds a keyed
            # connection (``hold``) instead of telling its peers it left.
            await upstream.close(code=upstream_close_code(client.close_code))
            await client.close()
        return client


_UNSENDABLE: Final = frozenset((1005, 1006, 1015))
"""Close codes that name what happened but may not be sent in a close frame (RFC 6455 7.4.1)."""


def upstream_close_code(client_code: int | None) -> int:
    """The close code a bridge sends the owner node: the client's, when it closed with one (a
    goodbye, 1000/1001, ends the session there); else 1012 (service restart), a drop, so that
    the owner holds a keyed connection instead of telling its peers it left."""
    if client_code is None or client_code in _UNSENDABLE:
        return int(WSCloseCode.SERVICE_RESTART)
    return client_code


async def _bridge(client: web.WebSocketResponse, upstream: ClientWebSocketResponse) -> None:
    """Copy frames both ways until either side ends."""
    tasks = [
        asyncio.ensure_future(_pump(client, upstream)),
        asyncio.ensure_future(_pump(upstream, client)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pump(
    source: web.WebSocketResponse | ClientWebSocketResponse,
    sink: web.WebSocketResponse | ClientWebSocketResponse,
) -> None:
    with contextlib.suppress(*_NETWORK_ERRORS, RuntimeError):
        async for msg in source:
            if msg.type is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            else:
                break


class _Streamed:
    """A client's request body passed on as it arrives, cut after ``limit`` bytes; ``failed``
    when the client's side broke off."""

    def __init__(self, request: web.BaseRequest, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.failed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        while size < self.limit:
            try:
                chunk = await self.request.content.readany()
            except _NETWORK_ERRORS:
                self.failed = True
                raise
            if not chunk:
                return
            yield chunk[: self.limit - size]
            size += len(chunk)


def _target(path: str, sid: str) -> str:
    """What a node's signature covers besides time and method: the path and the session."""
    return f"{path}?sid={sid}"


def _url_of(runner: web.AppRunner, host: str) -> str:
    """The internal listener's URL as another node uses it."""
    bound_host, bound_port = runner.addresses[0][:2]
    if host in ("", "0.0.0.0", "::"):
        bound_host = socket.gethostname()
    elif ":" in str(bound_host):
        bound_host = f"[{bound_host}]"
    return f"http://{bound_host}:{bound_port}"
