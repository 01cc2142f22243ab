"""The ASGI application, for FastAPI, Starlette or any ASGI server (uvicorn, hypercorn).

``create_asgi_app`` is the ASGI twin of ``app.create_app`` and hosts everything it does, through
the same code (``hosting.py``): EasyRTC at ``/socket.io/`` on the lean Engine.IO/Socket.IO
stack's ASGI driver (``transport.asgi_engineio``; the ``transport`` option ``python-socketio``
selects python-socketio's ASGI mode instead), the socket.io browser bundle at
``/socket.io/socket.io.js``, the client API files at ``/easyrtc/``, the demos at ``/demos/``,
the operating endpoints (``/healthz``, ``/readyz``, ``/metrics``, the admin API and dashboard:
``routes.py``) and their background work, webhooks, and with ``redis_url`` a cluster node whose
nodes forward each other's sessions (``cluster/asgi_forwarding.py``). The lifespan events start
and stop them; SIGTERM drains the clients first (``shutdown.drain_on_signal``). Options only the
command line's server can honour are refused when the application is made
(``hosting.asgi_refusals``). Anything else goes to ``other_asgi_app`` (your FastAPI app), which
also receives the lifespan events. Wrap your app with it rather than mounting it under a path:
socket.io clients expect ``/socket.io/``.

Files are looked up through ``web.locate``, the same traversal-proof lookup as the aiohttp
routes. Knows nothing of the protocol: the transports do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from . import shutdown
from .app import DEMOS_DIR
from .clientfiles import OUR_CLIENT_DIR, RESUME_SCRIPT, ClientFiles, find_client_files
from .config import ConfigError
from .extras import require
from .hosting import Hosting, asgi_refusals, engine_for
from .operations import routes
from .operations.routes import Route, StaticRoute
from .options import Options
from .server import EasyRtcServer
from .transport.socketio import LeanTransport
from .web import (
    ADD_SLASH,
    CLIENT_CACHE_CONTROL,
    DEMOS_CACHE_CONTROL,
    INDEX_FILE,
    NOT_FOUND_HTML,
    content_type_for,
    locate,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("easyrtc_server")

_BUNDLE_PATHS = ("/socket.io/socket.io.js", "/socket.io/socket.io.js.map")
_NO_CACHE = "no-cache"


class _Target(NamedTuple):
    """A request for a file: the folder, the path inside it, how to serve it."""

    folder: Path | None
    rel: str
    cache_control: str
    index_file: str | None = None
    headers: Mapping[str, str] | None = None


def create_asgi_app(
    options: Options | None = None,
    server: EasyRtcServer | None = None,
    *,
    other_asgi_app: ASGIApp | None = None,
) -> EasyRtcAsgiApp:
    """An ASGI application serving EasyRTC, its client files, the operating endpoints, and
    ``other_asgi_app`` for the rest (404 without one).

    Raises `ConfigError` naming the option when the options ask for what an ASGI server
    cannot give (see ``hosting.asgi_refusals``).
    """
    server = server or EasyRtcServer(options, engine=engine_for(options or Options()))
    refusals = asgi_refusals(server.options)
    if refusals:
        raise ConfigError("; ".join(refusals))
    sio_app: ASGIApp
    if server.options.transport == "lean":
        lean = LeanTransport.from_options(server, server.options)
        hosting = Hosting(server, lean.engine)
        driver = lean.asgi_app(other_asgi_app)
        if hosting.forwarder is not None:
            from .cluster.asgi_forwarding import AsgiForwarder

            driver.forward = AsgiForwarder(hosting.forwarder)
        sio_app = driver
    else:
        hosting = Hosting(server, None)
        require("python-socketio", "transport 'python-socketio'")
        import socketio

        from .transport.python_socketio import PythonSocketIOTransport

        transport = PythonSocketIOTransport(server, server.options, async_mode="asgi")
        sio_app = socketio.ASGIApp(
            transport.sio, other_asgi_app=other_asgi_app, socketio_path="socket.io"
        )
    files = find_client_files(server.options.client_dir, server.options.socketio_js)
    for problem in files.problems:
        log.warning("%s", problem)
    return EasyRtcAsgiApp(server, sio_app, files, hosting)


class EasyRtcAsgiApp:
    """Routes the files and the operating endpoints itself, everything else to the transport's
    ASGI application; starts and stops the hosting with the lifespan events."""

    def __init__(
        self,
        server: EasyRtcServer,
        sio_app: ASGIApp,
        files: ClientFiles,
        hosting: Hosting | None = None,
    ) -> None:
        self.server = server
        self.sio_app = sio_app
        self.hosting = hosting or Hosting(server, None)
        options = server.options
        self.api_dir = files.api_dir if options.api_enable else None
        self.api_prefix = _prefix(options.api_public_folder)
        self.bundle = files.socketio_js
        demos_dir = options.demos_dir or DEMOS_DIR
        self.demos_dir = demos_dir if options.demos_enable and demos_dir.is_dir() else None
        self.demos_prefix = _prefix(options.demos_public_folder)
        # a folder served at the root would hide /socket.io/ and the host application
        if not self.api_prefix:
            self.api_dir = None
        if not self.demos_prefix:
            self.demos_dir = None
        self.routes = self.hosting.operations.routes()
        self._route_tops = {
            _top(route.path if isinstance(route, Route) else route.prefix) for route in self.routes
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if await self._operations(scope, receive, send):
                return
            if scope.get("method") in ("GET", "HEAD"):
                target = self._route(scope["path"])
                if target is not None:
                    await _serve(scope, send, target)
                    return
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self.sio_app(scope, receive, send)

    # -- lifespan ------------------------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start the hosting before the transport (and the host application) hear of the
        start-up; drain before they hear of the shutdown; stop it when they are done."""
        hosting = self.hosting
        failed: list[str] = []

        async def receive_around() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await hosting.operations.start()
                    await hosting.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    failed.append(f"easyrtc-server did not start: {exc}")
                else:
                    shutdown.drain_on_signal(self.server)
            elif message["type"] == "lifespan.shutdown":
                await hosting.drain()
            return message

        async def send_around(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and failed:
                message = {"type": "lifespan.startup.failed", "message": failed[0]}
            elif message["type"] == "lifespan.shutdown.complete":
                await hosting.stop()
                await hosting.operations.stop()
            await send(message)

        await self.sio_app(scope, receive_around, send_around)

    # -- the operating endpoints ---------------------------------------------------------------

    async def _operations(self, scope: Scope, receive: Receive, send: Send) -> bool:
        path: str = scope["path"]
        if _top(path) not in self._route_tops:
            return False  # the common case: no operating endpoint starts so
        method: str = scope.get("method", "GET")
        for route in self.routes:
            if isinstance(route, StaticRoute):
                if path.startswith(route.prefix) and method in ("GET", "HEAD"):
                    rel = path[len(route.prefix) :]
                    target = _Target(route.folder, rel, _NO_CACHE, headers=route.headers)
                    await _serve(scope, send, target)
                    return True
                continue
            found = routes.match(route.path, path)
            if found is None or (route.method != method and not _head_of(route, method)):
                continue
            try:
                response = await route.handler(_OpsRequest(scope, receive, found))
            except web.HTTPException as exc:  # raised by reading too big a body
                response = web.Response(status=exc.status, text=exc.text or "")
            await _respond_with(scope, send, response)
            return True
        return False

    def _route(self, path: str) -> _Target | None:
        """Where the client file that ``path`` names lives, or None for anything else."""
        if path in _BUNDLE_PATHS:
            folder = self.bundle.parent if self.bundle is not None else None
            name = self.bundle.name if self.bundle is not None else "socket.io.js"
            rel = name + (".map" if path.endswith(".map") else "")
            return _Target(folder, rel, CLIENT_CACHE_CONTROL)
        if self.api_dir is not None and path == self.api_prefix + "/" + RESUME_SCRIPT:
            return _Target(OUR_CLIENT_DIR, RESUME_SCRIPT, CLIENT_CACHE_CONTROL)
        if self.api_dir is not None and path.startswith(self.api_prefix + "/"):
            return _Target(self.api_dir, path[len(self.api_prefix) + 1 :], CLIENT_CACHE_CONTROL)
        if self.demos_dir is not None and (
            path == self.demos_prefix or path.startswith(self.demos_prefix + "/")
        ):
            rel = path[len(self.demos_prefix) + 1 :]
            return _Target(self.demos_dir, rel, DEMOS_CACHE_CONTROL, INDEX_FILE)
        return None


def _top(path: str) -> str:
    """A path's first segment with its slash (``/admin`` of ``/admin/api/x``)."""
    end = path.find("/", 1)
    return path if end < 0 else path[:end]


def _head_of(route: Route, method: str) -> bool:
    return method == "HEAD" and route.method == "GET"


class _OpsRequest:
    """An ASGI request as an operating endpoint reads it (``routes.OpsRequest``)."""

    def __init__(self, scope: Scope, receive: Receive, match_info: dict[str, str]) -> None:
        self._receive = receive
        self._match_info = match_info
        self._headers = CIMultiDictProxy(
            CIMultiDict(
                (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                for k, v in scope.get("headers", ())
            )
        )

    @property
    def match_info(self) -> Mapping[str, str]:
        return self._match_info

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    async def read(self) -> bytes:
        """The body; more than ``routes.MAX_BODY`` bytes is refused with 413."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > routes.MAX_BODY:
                raise web.HTTPRequestEntityTooLarge(max_size=routes.MAX_BODY, actual_size=size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def _respond_with(scope: Scope, send: Send, response: web.Response) -> None:
    """Write an in-memory aiohttp response."""
    body = response.body
    data = body if isinstance(body, bytes) else b""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.items()
        if name.lower() != "content-length"
    ]
    head = scope.get("method") == "HEAD"
    await _respond(send, response.status, headers, b"" if head else data, len(data))


async def _serve(scope: Scope, send: Send, target: _Target) -> None:
    path: str = scope["path"]
    if target.index_file is not None and not path.endswith("/") and target.rel == "":
        await _respond(send, 302, [(b"location", (path + "/").encode())], b"")
        return
    found = None
    loop = asyncio.get_running_loop()
    if target.folder is not None:
        found = await loop.run_in_executor(
            None, locate, target.folder, target.rel, target.index_file
        )
    if found == ADD_SLASH:
        await _respond(send, 302, [(b"location", (path + "/").encode())], b"")
        return
    if not isinstance(found, Path):
        html = NOT_FOUND_HTML.encode()
        await _respond(send, 404, [(b"content-type", b"text/html; charset=utf-8")], html)
        return
    try:
        body = await loop.run_in_executor(None, found.read_bytes)
    except OSError:
        html = NOT_FOUND_HTML.encode()
        await _respond(send, 404, [(b"content-type", b"text/html; charset=utf-8")], html)
        return
    headers = [
        (b"content-type", content_type_for(found).encode()),
        (b"cache-control", target.cache_control.encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    if target.headers:
        headers += [(k.lower().encode(), v.encode()) for k, v in target.headers.items()]
    await _respond(send, 200, headers, b"" if scope["method"] == "HEAD" else body, len(body))


async def _respond(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    length: int | None = None,
) -> None:
    size = len(body) if length is None else length
    headers = [*headers, (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _prefix(path: str) -> str:
    stripped = path.strip("/")
    return "/" + stripped if stripped else ""
