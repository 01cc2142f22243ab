"""JavaScript-compatible regular expressions for the reference's validation patterns.

EasyRTC options carry JavaScript regexps (``^(.){1,64}$`` with flag ``i``). Python's ``re`` differs
in ways clients would notice at the edges: ``.`` in JavaScript excludes ``\\r``, ``\\u2028`` and
``\\u2029`` too (and, with flag ``s``, nothing), ``$`` never matches before a final newline (with
flag ``m``, ``^`` and ``$`` match at every line terminator, ``\\r`` included), ``\\s`` takes in
Unicode's spaces, quantifiers count UTF-16 code units (an emoji is two), and case-insensitive
``[a-z]`` must not match the Kelvin sign. ``JsRegExp`` translates a pattern once so that ``test``
answers as JavaScript's ``RegExp.test`` does (``tests/core/test_jsregex.py`` checks a table of
patterns against Node's own answers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE_TERMINATORS = "\\n\\r\\u2028\\u2029"
_DOT = f"[^{_LINE_TERMINATORS}]"
_LINE_START = f"(?:^|(?<=[{_LINE_TERMINATORS}]))"
_LINE_END = f"(?=[{_LINE_TERMINATORS}]|\\Z)"
_SPACE = "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
"""JavaScript's ``\\s``: ASCII whitespace and Unicode's spaces, line terminators and BOM."""


def _translate(source: str, *, dotall: bool, multiline: bool) -> str:
    """Rewrite the JavaScript meanings of ``.``, ``^``, ``$`` and ``\\s`` that Python's differ
    from, outside and (for ``\\s``) inside character classes."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            escape = source[i : i + 2]
            if escape == "\\s":
                out.append(_SPACE if in_class else f"[{_SPACE}]")
            elif escape == "\\S" and not in_class:
                out.append(f"[^{_SPACE}]")
            else:
                out.append(escape)
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            out.append("\\[" if ch == "[" else ch)  # a literal [ in JavaScript, a set in Python
        elif ch == "[":
            negated = source.startswith("^", i + 1)
            i += 1 + negated
            if source.startswith("]", i):  # JavaScript's [] matches nothing, [^] anything
                out.append("[\\s\\S]" if negated else "(?!)")
            else:
                out.append("[^" if negated else "[")
                in_class = True
                continue
        elif ch == ".":
            out.append("." if dotall else _DOT)
        elif ch == "$":
            out.append(_LINE_END if multiline else "\\Z")
        elif ch == "^":
            out.append(_LINE_START if multiline else "^")
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
        if "s" in self.flags:
            py_flags |= re.DOTALL
        source = _translate(self.source, dotall="s" in self.flags, multiline="m" in self.flags)
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
