"""Structural predicates for incoming JSON, in the reference's terms.

The reference tests ``typeof x === "object"``, so where it wants an "object" a JSON array passes
too; ``null`` never does. Maps of names (rooms to join or leave) must be real JSON objects here.
"""

from __future__ import annotations

from typing import Any

MISSING: Any = object()
"""Stands for a key that is absent, which the protocol distinguishes from ``null``."""


def is_object(value: Any) -> bool:
    """A JSON object or array."""
    return isinstance(value, dict | list)


def is_nonempty_object(value: Any) -> bool:
    return isinstance(value, dict | list) and len(value) > 0


def as_map(value: Any) -> dict[str, Any] | None:
    """A JSON object as is, an array as JavaScript's ``for…in`` sees it (keys "0", "1", …)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return None


def is_empty_value(value: Any) -> bool:
    """What JavaScript's EasyRTC calls empty: absent, null, false, 0, "", {} or []."""
    if value is MISSING or value is None:
        return True
    if isinstance(value, dict | list | str):
        return len(value) == 0
    return True  # numbers and booleans have no keys


def utf16_length(text: str) -> int:
    """The length JavaScript reports for ``text`` (characters outside the BMP count twice)."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)
