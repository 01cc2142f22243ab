"""Log output: the human format or one JSON object a line, and a quieter access log.

``configure(options, server)`` sets up the root logger for the command line. In JSON mode each
record is ``{"time", "level", "logger", "message", ...}`` plus whatever the record carries as
extras (aiohttp's access log passes the request's fields) and, when the message names a
connection of the server, its ``easyrtcid``, ``app`` and ``rooms``: log lines name connections
by easyrtcid, so they are found in the server's state rather than threaded through every call.

The access log leaves out ``/socket.io/`` requests (a long-polling client makes one every few
seconds) unless ``access_log_enable`` is set.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp.web import BaseRequest, StreamResponse
from aiohttp.web_log import AccessLogger

from .transport.socketio import RESUME_KEY, RESUME_TOKEN

if TYPE_CHECKING:
    from .options import Options
    from .server import EasyRtcServer

HUMAN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SOCKETIO_PATH: Final = "/socket.io/"

_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
_TEXT_LIMIT: Final = 2000


class JsonFormatter(logging.Formatter):
    """One JSON object a line; extras become fields, exceptions a ``exception`` text."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message[:_TEXT_LIMIT],
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ConnectionFields(logging.Filter):
    """Adds ``easyrtcid``, ``app`` and ``rooms`` to records whose arguments name a connection."""

    def __init__(self, server: EasyRtcServer) -> None:
        super().__init__()
        self.server = server

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "easyrtcid") or not isinstance(record.args, tuple):
            return True
        peers = self.server.core.peers
        for arg in record.args:
            if type(arg) is str and arg in peers:
                record.easyrtcid = arg
                conn = peers[arg].connection
                if conn is not None:
                    record.app = conn.app.name
                    record.rooms = list(conn.rooms)
                break
        return True


SECRET_QUERY = (RESUME_KEY, RESUME_TOKEN)


class QuietAccessLogger(AccessLogger):
    """aiohttp's access log without the socket.io requests."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.path.startswith(SOCKETIO_PATH):
            return
        super().log(request, response, time)


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access log with the resume keys and tokens (``hold``) that socket.io-client
    2.x clients put in the query blanked out: secrets never reach a log."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        query = request.rel_url.query
        if any(name in query for name in SECRET_QUERY):
            hidden = {name: "redacted" for name in SECRET_QUERY if name in query}
            request = request.clone(rel_url=request.rel_url.update_query(hidden))
        super().log(request, response, time)


def access_logger_class(options: Options) -> type[AccessLogger]:
    return RedactingAccessLogger if options.access_log_enable else QuietAccessLogger


def configure(options: Options, server: EasyRtcServer | None = None) -> None:
    """Log to stderr at ``log_level`` in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    if options.log_format == "json":
        handler.setFormatter(JsonFormatter())
        if server is not None:
            handler.addFilter(ConnectionFields(server))
    else:
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(options.log_level.upper())
