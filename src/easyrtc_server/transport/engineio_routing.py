"""Which Engine.IO request is this? The request checks of both drivers, without I/O.

``route_request`` reads what every HTTP server gives (method, query, a few headers) and the
registry of sessions, and answers with what to do: `Preflight` (CORS ``OPTIONS``), `Handshake`
(a new session), `Poll` / `Post` (a long-polling session's GET / POST), `Upgrade` (a polling
session's websocket) or `Refuse` (an Engine.IO error). The aiohttp and ASGI drivers act on the
answer; neither repeats a check, so they cannot drift apart.

CORS and origins
    Long-polling responses carry ``Access-Control-Allow-Origin`` (the request's origin, with
    credentials allowed) only for origins listed in ``cors_origins``; ``"*"`` answers a literal
    ``*`` without credentials. ``OPTIONS`` preflights are answered. With a list (and no ``*``),
    websocket handshakes from a browser page of another origin are refused (403); pages of the
    server's own host are always allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import orjson

__all__ = [
    "BAD_HANDSHAKE_METHOD",
    "BAD_REQUEST",
    "FORBIDDEN",
    "SHUTTING_DOWN",
    "UNKNOWN_SID",
    "UNKNOWN_TRANSPORT",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "CorsPolicy",
    "Handshake",
    "Poll",
    "Post",
    "Preflight",
    "Refuse",
    "Route",
    "RoutedSession",
    "Upgrade",
    "error_body",
    "route_request",
]

log = logging.getLogger("easyrtc_server.transport.engineio")

# -- errors as Engine.IO reports them -------------------------------------------------------------

UNKNOWN_TRANSPORT: Final = 0
UNKNOWN_SID: Final = 1
BAD_HANDSHAKE_METHOD: Final = 2
BAD_REQUEST: Final = 3
FORBIDDEN: Final = 4
UNSUPPORTED_PROTOCOL_VERSION: Final = 5
SHUTTING_DOWN: Final = 6
"""Ours, not Engine.IO's: a handshake while the server drains, answered ``503`` so that a
balancer (nginx ``proxy_next_upstream http_503``) or the client's retry goes to another node."""

ERROR_MESSAGES: Final = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
    SHUTTING_DOWN: "Server shutting down",
}


def error_body(code: int) -> bytes:
    """An Engine.IO error response's JSON body."""
    return orjson.dumps({"code": code, "message": ERROR_MESSAGES[code]})


# -- CORS -----------------------------------------------------------------------------------------


class CorsPolicy:
    """The ``cors_origins`` option: which pages may read responses and open websockets."""

    __slots__ = ("any", "origins")

    def __init__(self, cors_origins: Iterable[str] = ()) -> None:
        given = tuple(cors_origins)
        self.any = "*" in given
        self.origins = frozenset(o.rstrip("/") for o in given)

    def headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of a response to a page of ``origin``."""
        if origin is None:
            return {}
        if self.any:
            return {"Access-Control-Allow-Origin": "*"}
        if origin.rstrip("/") not in self.origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def preflight_headers(self, origin: str | None, wanted: str | None) -> dict[str, str]:
        """The headers of the answer to an ``OPTIONS`` preflight."""
        headers = self.headers(origin)
        if headers:
            headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            if wanted:
                headers["Access-Control-Allow-Headers"] = wanted
        return headers

    def websocket_allowed(self, origin: str | None, host: str) -> bool:
        """May a websocket be opened from a page of ``origin`` on a server reached as ``host``?"""
        if not self.origins or self.any:
            return True
        if origin is None or origin.rstrip("/") in self.origins:
            return True
        return urlsplit(origin).netloc == host


# -- the answers ----------------------------------------------------------------------------------

S = TypeVar("S", bound="RoutedSession")


class RoutedSession(Protocol):
    """What routing needs to know of a registered session."""

    @property
    def closed(self) -> bool: ...

    @property
    def on_websocket(self) -> bool:
        """Upgraded to (or opened on) a websocket: its polling requests are refused."""

    @property
    def probing(self) -> bool:
        """An upgrade's probe websocket is open: a second one is refused."""


@dataclass(frozen=True, slots=True)
class Preflight:
    """A CORS preflight: answer 204 with ``headers``."""

    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Handshake:
    """Open a new session of protocol revision ``eio`` on a websocket or long-polling."""

    eio: int
    websocket: bool


@dataclass(frozen=True, slots=True)
class Poll(Generic[S]):
    """A long-polling GET of ``session``."""

    session: S


@dataclass(frozen=True, slots=True)
class Post(Generic[S]):
    """A long-polling POST of ``session``."""

    session: S


@dataclass(frozen=True, slots=True)
class Upgrade(Generic[S]):
    """A websocket that probes, then takes over, polling ``session``."""

    session: S


@dataclass(frozen=True, slots=True)
class Refuse:
    """An Engine.IO error. ``missing``: the sid no session here has (another node's, perhaps:
    the driver may forward the request before answering "Session ID unknown")."""

    code: int
    missing: str | None = None

    @property
    def status(self) -> int:
        if self.code == SHUTTING_DOWN:
            return 503
        return 403 if self.code == FORBIDDEN else 400

    @property
    def body(self) -> bytes:
        return error_body(self.code)


Route = Preflight | Handshake | Poll[S] | Post[S] | Upgrade[S] | Refuse

_REFUSALS: Final = {code: Refuse(code) for code in ERROR_MESSAGES}


def route_request(
    method: str,
    query: Mapping[str, str],
    *,
    upgrade: bool,
    origin: str | None,
    host: str,
    sessions: Mapping[str, S],
    cors: CorsPolicy,
    allow_eio3: bool,
    access_control_request_headers: str | None = None,
) -> Route[S]:
    """What to do with a request to the Engine.IO path.

    ``upgrade``: the request asks for a websocket (``Upgrade: websocket``; every ASGI websocket
    scope). The checks come in the order the reference server makes them.
    """
    if method == "OPTIONS":
        return Preflight(cors.preflight_headers(origin, access_control_request_headers))
    eio_text = query.get("EIO", "3")
    if eio_text == "4":
        eio = 4
    elif eio_text == "3" and allow_eio3:
        eio = 3
    else:
        return _REFUSALS[UNSUPPORTED_PROTOCOL_VERSION]
    transport = query.get("transport")
    if transport not in ("polling", "websocket"):
        return _REFUSALS[UNKNOWN_TRANSPORT]
    if "j" in query:  # JSONP polling is not offered
        return _REFUSALS[BAD_REQUEST]
    sid = query.get("sid")
    if transport == "websocket":
        if method != "GET" or not upgrade:
            return _REFUSALS[BAD_REQUEST]
        if not cors.websocket_allowed(origin, host):
            log.info("websocket refused: origin %.100r not in cors_origins", origin)
            return _REFUSALS[FORBIDDEN]
        if sid is None:
            return Handshake(eio, websocket=True)
        found = sessions.get(sid)
        if found is None:
            return Refuse(UNKNOWN_SID, missing=sid)
        if found.closed:
            return _REFUSALS[UNKNOWN_SID]
        if found.on_websocket or found.probing:
            return _REFUSALS[BAD_REQUEST]
        return Upgrade(found)
    if sid is None:
        if method != "GET":
            return _REFUSALS[BAD_HANDSHAKE_METHOD]
        return Handshake(eio, websocket=False)
    found = sessions.get(sid)
    if found is None:
        return Refuse(UNKNOWN_SID, missing=sid)
    if found.on_websocket:
        return _REFUSALS[BAD_REQUEST]
    if method == "GET":
        return Poll(found)
    if method == "POST":
        return Post(found)
    return _REFUSALS[BAD_REQUEST]
