"""Log lines a client cannot forge or flood.

Two things, installed once per process on the package's loggers (``install``):

- every argument of a log record that is not a number is shown escaped (control characters,
  newlines included, become ``\\n``-style escapes) and truncated to ``MAX_ARG`` characters, so a
  ``msgType`` of 1 MB with newlines is one short line;
- refusals of one client are rate-limited (``RefusalLog``): the first in a ``WINDOW`` is logged,
  the rest are counted, and the count is logged with the next one after the window, or when the
  socket closes. Refusals of sockets that have not logged in are logged at DEBUG.

Refusals come here as data (``refusals.note``, with whether the client has logged in), from the
server's events (``events``) and its guard (``limits``); this module knows nothing of the
server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

MAX_ARG: Final = 2000
"""Characters of one argument shown in a log line: enough for any line of the server's own,
few enough that a client's 1 MB ``msgType`` cannot flood the log (the core cuts it shorter)."""

WINDOW: Final = 10.0
"""Seconds during which further refusals of the same client are only counted."""

MAX_KEYS: Final = 10_000
"""Clients counted at once before the stale counts are dropped."""

ROOT_LOGGER: Final = "easyrtc_server"

_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
"""A backslash is left as it is: text escaped before (``repr``) is not escaped twice; what
matters is that no control character reaches the line."""


def shown(value: Any, limit: int = MAX_ARG) -> str:
    """``value`` as text fit for one log line: escaped, and cut to ``limit`` characters."""
    text = value if isinstance(value, str) else _text(value, limit)
    cut = len(text) > limit
    if cut:
        extra = len(text) - limit
        text = text[:limit]
    escaped = text if text.isprintable() else "".join(_escape(ch) for ch in text)
    return f"{escaped}…(+{extra} chars)" if cut else escaped


def redacted_url(url: str) -> str:
    """``url`` fit for a log line: scheme, host and port only. A webhook's path or query often
    is its token (``/services/T0/B0/SECRET``, ``?token=``), and user info is a password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<url>"
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    hidden = "/…" if len(rest) > len(host) or "@" in rest else ""
    return f"{scheme}://{host}{hidden}"


def _text(value: Any, limit: int) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: limit + 1]).decode("utf-8", "backslashreplace")
    try:
        return str(value)
    except Exception:  # a hostile object's __str__
        return f"<unprintable {type(value).__name__}>"


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class _Shown:
    """A log argument shown escaped, for both ``%s`` and ``%r``."""

    __slots__ = ("text",)

    def __init__(self, value: Any) -> None:
        self.text = shown(value)

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


_SCALARS: Final = (int, float, bool, type(None))


def _safe(arg: Any) -> Any:
    """A log argument made safe: numbers as they are, text escaped and cut (still a ``str``, so
    other filters can read it), anything else shown the same way."""
    if isinstance(arg, _SCALARS) or type(arg) is _Shown:
        return arg
    if type(arg) is str:
        return arg if len(arg) <= MAX_ARG and arg.isprintable() else shown(arg)
    return _Shown(arg)


class SafeArguments(logging.Filter):
    """Escapes and truncates the arguments (and a control-character-laden message) of a
    record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_safe(a) for a in args)
        elif isinstance(args, dict):
            record.args = {k: _safe(v) for k, v in args.items()}
        msg = record.msg
        if not isinstance(msg, str) or not msg.isprintable():
            # with arguments the text is a template: escape it but never cut a placeholder
            record.msg = shown(msg, len(msg) if args and isinstance(msg, str) else MAX_ARG)
        return True


@dataclass(slots=True)
class _Count:
    since: float
    suppressed: int = 0
    level: int = logging.INFO


class RefusalLog:
    """One line per client per ``WINDOW`` for its refusals, with a count of the ones not shown.

    A refusal of a client that has not logged in is logged at DEBUG.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.counts: dict[str, _Count] = {}
        self.logger = logging.getLogger(ROOT_LOGGER + ".refusals")

    def note(
        self,
        key: str,
        authenticated: bool,
        msg: str,
        *args: Any,
        logger: logging.Logger | None = None,
    ) -> None:
        """Log a refusal of client ``key`` (an easyrtcid or an address), throttled, on
        ``logger`` (default: ``easyrtc_server.refusals``)."""
        logger = logger or self.logger
        level = logging.INFO if authenticated else logging.DEBUG
        if not logger.isEnabledFor(level):
            return
        record = logger.makeRecord(logger.name, level, "(refusal)", 0, msg, args, None)
        record.args = tuple(_safe(a) for a in args)
        if self._pass(record, key, level):
            logger.handle(record)

    def throttled(self, logger: logging.Logger, key: str, level: int, msg: str, *args: Any) -> None:
        """Log ``msg`` on ``logger`` at most once per ``WINDOW`` for ``key`` (a line a client
        can cause by the request, such as a forwarded request's or a dropped webhook's), with
        the count of the ones not shown."""
        if not logger.isEnabledFor(level):
            return
        record = logger.makeRecord(logger.name, level, "(throttled)", 0, msg, args, None)
        record.args = tuple(_safe(a) for a in args)
        if self._pass(record, key, level):
            logger.handle(record)

    def _pass(self, record: logging.LogRecord, key: str, level: int) -> bool:
        now = self.clock()
        counts = self.counts
        if len(counts) > MAX_KEYS:
            self._prune(now)
        count = counts.get(key)
        if count is not None and now - count.since < WINDOW:
            count.suppressed += 1
            return False
        if count is not None and count.suppressed:
            record.msg = f"{record.msg} (and %d more refusals of %s in the last %.0f s)"
            record.args = (*(record.args or ()), count.suppressed, key, now - count.since)
        self.counts[key] = _Count(now, level=level)
        return True

    def _prune(self, now: float) -> None:
        """Drop the counts of clients not refused lately (keys that no close ever forgets,
        such as addresses, would otherwise pile up)."""
        for key, count in list(self.counts.items()):
            if now - count.since >= WINDOW:
                self.forget(key)

    def forget(self, key: str) -> None:
        """The client is gone: log the refusals still counted."""
        count = self.counts.pop(key, None)
        if count is not None and count.suppressed:
            self.logger.log(
                count.level,
                "%s: %d more refusals not logged before it closed",
                shown(key),
                count.suppressed,
            )


refusals = RefusalLog()
"""The process's refusal log (loggers are process-wide too)."""

_FILTER = SafeArguments()


def install() -> None:
    """Put the filter on every logger of the package (idempotent)."""
    names = [
        ROOT_LOGGER,
        *(name for name in logging.root.manager.loggerDict if name.startswith(ROOT_LOGGER + ".")),
    ]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
