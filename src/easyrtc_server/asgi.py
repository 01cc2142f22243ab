"""The ASGI application, for FastAPI, Starlette or any ASGI server (uvicorn, hypercorn).

``create_asgi_app`` is the ASGI twin of ``app.create_app``: EasyRTC at ``/socket.io/`` on the lean
Engine.IO/Socket.IO stack's ASGI driver (``transport.asgi_engineio``; the ``transport`` option
``python-socketio`` selects python-socketio's ASGI mode instead), the socket.io browser bundle
at ``/socket.io/socket.io.js``, the client API files at ``/easyrtc/`` and the demos at
``/demos/``; anything else goes to
``other_asgi_app`` (your FastAPI app), which also receives the lifespan events. Wrap your app
with it rather than mounting it under a path: socket.io clients expect ``/socket.io/``.

Files are looked up through ``web.locate``, the same traversal-proof lookup as the aiohttp
routes. Knows nothing of the protocol: the transports do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

import socketio

from .app import DEMOS_DIR
from .clientfiles import OUR_CLIENT_DIR, RESUME_SCRIPT, ClientFiles, find_client_files
from .options import Options
from .server import EasyRtcServer
from .transport.python_socketio import PythonSocketIOTransport
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

_BUNDLE_PATHS = ("/socket.io/socket.io.js", "/socket.io/socket.io.js.map")


class _Target(NamedTuple):
    """A request for a client file: the folder, the path inside it, how to serve it."""

    folder: Path | None
    rel: str
    cache_control: str
    index_file: str | None = None


def create_asgi_app(
    options: Options | None = None,
    server: EasyRtcServer | None = None,
    *,
    other_asgi_app: ASGIApp | None = None,
) -> EasyRtcAsgiApp:
    """An ASGI application serving EasyRTC, its client files, and ``other_asgi_app`` for the
    rest (404 without one)."""
    server = server or EasyRtcServer(options)
    sio_app: ASGIApp
    if server.options.transport == "lean":
        sio_app = LeanTransport.from_options(server, server.options).asgi_app(other_asgi_app)
    else:
        transport = PythonSocketIOTransport(server, server.options, async_mode="asgi")
        sio_app = socketio.ASGIApp(
            transport.sio, other_asgi_app=other_asgi_app, socketio_path="socket.io"
        )
    return EasyRtcAsgiApp(
        server, sio_app, find_client_files(server.options.client_dir, server.options.socketio_js)
    )


class EasyRtcAsgiApp:
    """Routes the client files itself and everything else to python-socketio's ``ASGIApp``."""

    def __init__(self, server: EasyRtcServer, sio_app: ASGIApp, files: ClientFiles) -> None:
        self.server = server
        self.sio_app = sio_app
        options = server.options
        self.api_dir = files.api_dir if options.api_enable else None
        self.api_prefix = _prefix(options.api_public_folder)
        self.bundle = files.socketio_js
        self.demos_dir = DEMOS_DIR if options.demos_enable and DEMOS_DIR.is_dir() else None
        self.demos_prefix = _prefix(options.demos_public_folder)
        # a folder served at the root would hide /socket.io/ and the host application
        if not self.api_prefix:
            self.api_dir = None
        if not self.demos_prefix:
            self.demos_dir = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            target = self._route(scope["path"])
            if target is not None:
                await _serve(scope, send, target)
                return
        await self.sio_app(scope, receive, send)

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
