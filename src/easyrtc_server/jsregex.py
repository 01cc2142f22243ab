"""JavaScript-compatible regular expressions for the reference's validation patterns.

EasyRTC options carry JavaScript regexps (``^(.){1,64}$`` with flag ``i``). Python's ``re`` differs
in ways clients would notice at the edges: ``.`` in JavaScript excludes ``\\r``, ``\\u2028`` and
``\\u2029`` too, ``$`` never matches before a final newline, quantifiers count UTF-16 code units
(an emoji is two), and case-insensitive ``[a-z]`` must not match the Kelvin sign. ``JsRegExp``
translates a pattern once so that ``test`` answers as JavaScript's ``RegExp.test`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DOT = "[^\\n\\r\\u2028\\u2029]"


def _translate(source: str) -> str:
    """Rewrite JavaScript-only meanings of ``.`` and ``$`` outside character classes."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            out.append(source[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == ".":
            out.append(_DOT)
        elif ch == "$":
            out.append("\\Z")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _as_utf16_units(text: str) -> str:
    """Split characters outside the BMP into surrogate pairs, as JavaScript strings hold them."""
    if text.isascii() or max(text) < "\U00010000":
        return text
    return "".join(
        chr(0xD800 + ((ord(ch) - 0x10000) >> 10)) + chr(0xDC00 + ((ord(ch) - 0x10000) & 0x3FF))
        if ord(ch) >= 0x10000
        else ch
        for ch in text
    )


@dataclass(frozen=True)
class JsRegExp:
    """A JavaScript regexp (source and flags), compiled to an equivalent Python pattern."""

    source: str
    flags: str = ""
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.flags) - {"i", "m", "s"}
        if unknown:
            raise ValueError(f"unsupported regexp flags {''.join(sorted(unknown))!r}")
        py_flags = re.ASCII  # JavaScript's \d, \w and [a-z]/i are ASCII-only without the u flag
        if "i" in self.flags:
            py_flags |= re.IGNORECASE
        if "m" in self.flags:
            py_flags |= re.MULTILINE
        source = self.source if "s" in self.flags else _translate(self.source)
        if "m" in self.flags:
            source = source.replace("\\Z", "$")
        try:
            compiled = re.compile(source, py_flags)
        except re.error as exc:
            raise ValueError(f"invalid regexp {self.source!r}: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)

    def test(self, value: str) -> bool:
        """True when ``value`` matches, as ``RegExp.prototype.test`` would say."""
        return self._compiled.search(_as_utf16_units(value)) is not None

    def __str__(self) -> str:
        return f"/{self.source}/{self.flags}"
