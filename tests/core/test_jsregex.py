"""``JsRegExp.test`` answers as JavaScript's ``RegExp.prototype.test``: a table of patterns and
inputs is run through Node (the truth) and through ours."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from easyrtc_server.protocol.jsregex import JsRegExp

LINES = ["a\nb", "a\rb", "a\r\nb", "a\u2028b", "a\u2029b", "ab\n", "ab\r", "\nab", "ab"]

# (source, flags, inputs)
TABLE: list[tuple[str, str, list[str]]] = [
    ("^a.b$", "", LINES),
    ("^a.b$", "s", LINES),
    ("^a.b$", "m", LINES),
    ("^a.b$", "ms", LINES),
    ("^ab$", "", LINES),
    ("^ab$", "s", LINES),
    ("^ab$", "m", LINES),
    ("^b", "m", LINES),
    ("a$", "m", LINES),
    ("^b$", "m", ["a\nb", "a\rb", "a\r\nb", "a\u2028b\u2029", "b", "ab"]),
    ("^(.){1,64}$", "i", ["", "x", "x" * 64, "x" * 65, "😀" * 32, "😀" * 33, "a\nb", "tab\there"]),
    ("^(.){0,255}$", "", ["", "a\rb", "é" * 255, "\u2028"]),
    ("^[a-z0-9_.-]{1,32}$", "i", ["Room_1", "K", "\u212a", "\u017f", "room name", "x" * 33]),
    ("^(away|chat|dnd|xa)$", "", ["away", "Away", "chat\n", "xa"]),
    ("^\\s+$", "", [" ", "\t", "\u00a0", "\u2003", "\ufeff", "\u3000", "\u0085", "x"]),
    ("^\\S+$", "", ["ab", "a b", "a\u00a0b", "\u0085"]),
    ("^[\\s]$", "", ["\u00a0", "\u2028", "x"]),
    ("^[^\\s]$", "", ["\u00a0", "x"]),
    ("a[]b", "", ["ab", "a]b"]),
    ("^a[^]b$", "", ["a\nb", "axb", "ab"]),
    ("^[[]$", "", ["[", "]"]),
    ("^\\d+$", "", ["123", "١٢٣"]),
    ("^\\w+$", "i", ["abc_1", "é"]),
    ("^a.c$", "s", ["a\u2029c", "a😀c"]),
    ("[.]", "", ["x", "."]),
    ("\\.", "s", ["x", "."]),
    ("\\$", "m", ["a$", "a"]),
]

CASES = [(source, flags, text) for source, flags, texts in TABLE for text in texts]

NODE_SCRIPT = """
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(cases.map(([s, f, t]) => new RegExp(s, f).test(t))));
"""


@pytest.fixture(scope="module")
def node_answers() -> list[bool]:
    node = shutil.which("node")
    assert node is not None, "node is needed to know what JavaScript answers"
    done = subprocess.run(
        [node, "-e", NODE_SCRIPT],
        input=json.dumps(CASES),  # ensure_ascii: \\u escapes, lone surrogates included
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    answers: list[bool] = json.loads(done.stdout)
    return answers


def test_every_pattern_answers_as_node(node_answers: list[bool]) -> None:
    ours = [JsRegExp(source, flags).test(text) for source, flags, text in CASES]
    wrong = [
        f"/{source}/{flags} on {text!r}: node {js}, ours {py}"
        for (source, flags, text), js, py in zip(CASES, node_answers, ours, strict=True)
        if js != py
    ]
    assert not wrong, "\n".join(wrong)


def test_the_table_covers_both_answers_for_each_flag(node_answers: list[bool]) -> None:
    for flag in ("", "s", "m"):
        seen = {js for (_, flags, _), js in zip(CASES, node_answers, strict=True) if flag in flags}
        assert seen == {True, False}, flag
