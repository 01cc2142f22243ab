"""Names say one thing: no two public classes of the package share a name (a reader who meets
``State`` or ``Reply`` must not have to find out which one)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import easyrtc_server

PACKAGE = Path(easyrtc_server.__file__).parent


def test_no_two_public_classes_share_a_name() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(PACKAGE)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
