"""HTTP hosting of the browser-side files: the EasyRTC client API (``/easyrtc/...``), the
socket.io 4 browser bundle (``/socket.io/socket.io.js``) and the demo pages (``/demos/...``).

Owns these static routes and their one security rule: a request never reaches a file outside
the folder its route serves, however the path is spelled (encoded dots and slashes, backslashes,
absolute paths, NUL bytes, symlinks). The reference fails this (spec §9.1); here every lookup goes
through ``locate``, which resolves the real path and requires it inside the real folder.

Knows nothing of the signaling protocol, and nothing of where the files come from
(``clientfiles`` finds them).
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from pathlib import Path
from typing import Final, Literal

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from .clientfiles import OUR_CLIENT_DIR, RESUME_SCRIPT, ClientFiles

CLIENT_CACHE_CONTROL: Final = "public, max-age=3600"
"""Client API files and the socket.io bundle: they change only with a new npm install."""

DEMOS_CACHE_CONTROL: Final = "no-cache"
"""Demo pages: always revalidated (cheap, thanks to ETag / Last-Modified)."""

NOT_FOUND_HTML: Final = (
    "<!DOCTYPE html>\n<html><head><title>File Not Found</title></head>"
    "<body><h1>File Not Found</h1></body></html>\n"
)

INDEX_FILE: Final = "index.html"

ADD_SLASH: Final = "add-slash"
"""``locate`` result: the path names a folder with an index page but lacks its final slash."""

_CONTENT_TYPES: Final[dict[str, str]] = {
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".wav": "audio/wav",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


def content_type_for(path: Path) -> str:
    """The Content-Type to send for ``path``, by extension (not by the host's mime database)."""
    known = _CONTENT_TYPES.get(path.suffix.lower())
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


def safe_parts(rel: str) -> list[str] | None:
    """Split a decoded URL sub-path into folder-relative name parts, or None to refuse it.

    Refused: NUL bytes, backslashes (a separator on Windows), absolute paths, and any part that
    starts with a dot (``.``, ``..`` and hidden files, which static servers customarily ignore).
    Empty parts (``a//b``, a final slash) are dropped. Purely lexical: ``locate`` still checks
    where the path really leads.
    """
    if "\x00" in rel or "\\" in rel or rel.startswith("/"):
        return None
    parts = [part for part in rel.split("/") if part]
    if any(part.startswith(".") for part in parts):
        return None
    return parts


def locate(folder: Path, rel: str, index: str | None = None) -> Path | Literal["add-slash"] | None:
    """The real path of the regular file that ``rel`` names inside ``folder``, or None.

    Symlinks are followed, then the result must lie inside the real ``folder``; anything else,
    including errors, is None. With ``index``, a folder serves that file, and a folder named
    without its final slash gives ``ADD_SLASH`` so the caller can redirect (relative links in
    the page then resolve correctly). Blocking: call it in an executor.
    """
    parts = safe_parts(rel)
    if parts is None:
        return None
    try:
        root = folder.resolve(strict=True)
        real = root.joinpath(*parts).resolve(strict=True)
        if not real.is_relative_to(root):
            return None
        mode = real.stat().st_mode
        if stat.S_ISDIR(mode):
            if index is None:
                return None
            real = (real / index).resolve(strict=True)
            if not real.is_relative_to(root):
                return None
            mode = real.stat().st_mode
            if stat.S_ISREG(mode) and rel and not rel.endswith("/"):
                return ADD_SLASH
        elif rel.endswith("/"):  # a file named as if it were a folder
            return None
        if not stat.S_ISREG(mode) or not os.access(real, os.R_OK):
            return None
    except (OSError, RuntimeError, ValueError):  # missing, loops, too long, bad bytes...
        return None
    return real


def not_found() -> web.Response:
    """The tiny "File Not Found" page the reference answers with."""
    return web.Response(status=404, text=NOT_FOUND_HTML, content_type="text/html")


class StaticFolder:
    """Handler serving the files of one folder; the route supplies ``{path}`` (may be empty)."""

    def __init__(
        self, folder: Path | None, *, cache_control: str, index: str | None = None
    ) -> None:
        self.folder = folder
        self.cache_control = cache_control
        self.index = index

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The route handler: serves ``{path}`` from the route."""
        return await self.serve(request, request.match_info.get("path", ""))

    async def serve(self, request: web.Request, rel: str) -> web.StreamResponse:
        if self.folder is None:
            return not_found()
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, locate, self.folder, rel, self.index)
        if found is None:
            return not_found()
        if found == ADD_SLASH:
            raise web.HTTPFound(_with_slash(request))
        assert isinstance(found, Path)
        return web.FileResponse(
            found,
            headers={
                hdrs.CONTENT_TYPE: content_type_for(found),
                hdrs.CACHE_CONTROL: self.cache_control,
                "X-Content-Type-Options": "nosniff",
            },
        )


def single_file(folder: StaticFolder, name: str) -> Handler:
    """A handler serving one named file of ``folder`` (through ``locate``, like every other)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await folder.serve(request, name)

    return handler


def redirect_to(location: str) -> Handler:
    """A handler answering 302 to ``location``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    return handler


def add_client_routes(
    app: web.Application,
    files: ClientFiles,
    *,
    api_path: str = "/easyrtc",
    demos_dir: Path | None = None,
    demos_path: str = "/demos",
    index_redirect: bool = True,
) -> None:
    """Register GET (and HEAD) routes for the client files on ``app``.

    - ``{api_path}/{path}``: any file of ``files.api_dir`` (easyrtc.js, easyrtc_ft.js,
      easyrtc.css, img/*, labs/*, ...), and our ``{api_path}/easyrtc_resume.js``;
    - ``/socket.io/socket.io.js`` and ``/socket.io/socket.io.js.map``: the socket.io bundle;
    - when ``demos_dir`` is given: ``{demos_path}/{path}`` (``index.html`` by default),
      ``{demos_path}`` redirecting to ``{demos_path}/``, and ``/`` redirecting there too unless
      ``index_redirect`` is false.

    Missing assets are answered with 404 "File Not Found" (logging ``files.problems`` is the
    caller's business). Every route resolves the real path of what it serves and refuses
    anything outside its folder.
    """
    if files.api_dir is not None:
        ours = StaticFolder(OUR_CLIENT_DIR, cache_control=CLIENT_CACHE_CONTROL)
        resume = single_file(ours, RESUME_SCRIPT)
        app.router.add_get(_prefix(api_path) + "/" + RESUME_SCRIPT, resume)
    api = StaticFolder(files.api_dir, cache_control=CLIENT_CACHE_CONTROL)
    app.router.add_get(_prefix(api_path) + "/{path:.*}", api.handle)

    bundle = files.socketio_js
    sio = StaticFolder(
        bundle.parent if bundle is not None else None, cache_control=CLIENT_CACHE_CONTROL
    )
    name = bundle.name if bundle is not None else "socket.io.js"
    app.router.add_get("/socket.io/socket.io.js", single_file(sio, name))
    app.router.add_get("/socket.io/socket.io.js.map", single_file(sio, name + ".map"))

    if demos_dir is None:
        return
    demos_prefix = _prefix(demos_path)
    demos = StaticFolder(demos_dir, cache_control=DEMOS_CACHE_CONTROL, index=INDEX_FILE)
    app.router.add_get(demos_prefix + "/{path:.*}", demos.handle)
    if demos_prefix:
        app.router.add_get(demos_prefix, redirect_to(demos_prefix + "/"))
        if index_redirect:
            app.router.add_get("/", redirect_to(demos_prefix + "/"))


def _prefix(path: str) -> str:
    """A route prefix: one leading slash, no trailing slash (``""`` for the root)."""
    stripped = path.strip("/")
    return "/" + stripped if stripped else ""


def _with_slash(request: web.Request) -> str:
    url = request.rel_url
    location = url.raw_path + "/"
    if url.raw_query_string:
        location += "?" + url.raw_query_string
    return location
