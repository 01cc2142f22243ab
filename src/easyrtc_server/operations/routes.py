"""The operating endpoints' routes as data, so the aiohttp and the ASGI app serve the same ones.

A route is a method, a path (``{name}`` matches one path segment, as in aiohttp) and a handler
that takes an `OpsRequest` and returns an aiohttp ``web.Response`` (built in memory, never
prepared: the ASGI app copies its status, headers and body). A static route serves a folder's
files under a prefix. ``attach`` adds them to an aiohttp application; ``asgi.py`` matches them
itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

MAX_BODY = 1024**2
"""The largest request body an operating endpoint reads (aiohttp's default ``client_max_size``)."""


class OpsRequest(Protocol):
    """What an operating endpoint reads of its request (an aiohttp ``web.Request`` is one)."""

    @property
    def match_info(self) -> Mapping[str, str]:
        """The path's ``{name}`` segments."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""

    async def read(self) -> bytes: ...


OpsHandler = Callable[[OpsRequest], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: OpsHandler


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """``prefix`` + a relative path serves that file of ``folder`` (no listing, no symlinks),
    with ``headers`` added to each response."""

    prefix: str
    folder: Path
    headers: Mapping[str, str] | None = None


def attach(app: web.Application, routes: Iterable[Route | StaticRoute]) -> None:
    """Add ``routes`` to an aiohttp application."""
    for route in routes:
        if isinstance(route, StaticRoute):
            app.router.add_static(route.prefix, route.folder, follow_symlinks=False)
            if route.headers:
                app.on_response_prepare.append(_headers_under(route.prefix, route.headers))
        else:
            app.router.add_route(route.method, route.path, route.handler)


def _headers_under(
    prefix: str, headers: Mapping[str, str]
) -> Callable[[web.BaseRequest, web.StreamResponse], Awaitable[None]]:
    async def add(request: web.BaseRequest, response: web.StreamResponse) -> None:
        if request.path.startswith(prefix):
            response.headers.update(headers)

    return add


def match(pattern: str, path: str) -> dict[str, str] | None:
    """The ``{name}`` segments of ``path`` when it matches ``pattern``, else None."""
    wanted = pattern.split("/")
    given = path.split("/")
    if len(wanted) != len(given):
        return None
    found: dict[str, str] = {}
    for want, part in zip(wanted, given, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not part or "{" in part or "}" in part:
                return None
            found[want[1:-1]] = part
        elif want != part:
            return None
    return found
