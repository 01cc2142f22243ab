"""The optional features and the distributions they need (the package's extras).

A feature whose extra is not installed is refused where it is asked for, by name: the option
check (``redis_url``, ``transport``) at start-up, and the first import of its module, with the
``pip install`` line that adds it. Nothing here imports an extra.
"""

from __future__ import annotations

import importlib.util
from typing import Final

EXTRAS: Final = {
    "cluster": ("redis",),
    "python-socketio": ("socketio", "engineio"),
}
"""Extra name -> the top-level modules it provides."""


class MissingExtra(ImportError):
    """A feature was asked for whose extra is not installed."""


def missing(extra: str) -> str | None:
    """Why ``extra`` cannot be used (a sentence with the install line), or None if it can."""
    absent = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if not absent:
        return None
    return (
        f"{', '.join(absent)} is not installed: "
        f"install the {extra!r} extra (pip install 'easyrtc-server[{extra}]')"
    )


def require(extra: str, feature: str) -> None:
    """Raise `MissingExtra` naming ``feature`` and the extra, unless the extra is installed."""
    reason = missing(extra)
    if reason is not None:
        raise MissingExtra(f"{feature} needs the {extra!r} extra; {reason}")
