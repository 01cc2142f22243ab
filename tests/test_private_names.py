"""No module of the package uses another module's private names (`_x`).

A private name is a promise that only its module depends on it: a module that imports one,
reads one off an imported module, or reads one off an object whose class is written elsewhere
breaks silently when that module is changed. The check is by reading the source with `ast`:

- `from m import _x` (any module, ours or a library's);
- `m._x` where `m` is a name bound by an import;
- `obj._x` where `obj` is not `self`/`cls`: inside a class, unless that class defines `_x` (an
  attribute it assigns on `self`, a slot, a method or a class attribute: another instance of
  the same class); outside any class, unless this module defines `_x`;
- `getattr(obj, "_x")` and friends, the same reach spelled as a string.
"""

from __future__ import annotations

import ast
from pathlib import Path

import easyrtc_server

PACKAGE = Path(easyrtc_server.__file__).parent

# Private names of the standard library that are documented for use.
DOCUMENTED = {("os", "_exit"), ("sys", "_getframe")}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def defined_here(tree: ast.Module) -> set[str]:
    """Private names this module defines (so it may use them on any object)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg is not None:
            # dataclass fields built with field(...)/slots named in keywords are rare; fine.
            pass
    return {name for name in names if is_private(name)}


def imported_modules(tree: ast.Module) -> dict[str, str]:
    """Local names bound by `import m` / `from p import m` -> the module text."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module or ''}.{alias.name}"
    return bound


def defined_by_class(cls: ast.ClassDef) -> set[str]:
    """Private members a class defines: its methods, class attributes, slots, `self._x = …`."""
    names: set[str] = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__slots__":
                        names.update(
                            c.value
                            for c in ast.walk(node.value)
                            if isinstance(c, ast.Constant) and isinstance(c.value, str)
                        )
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.add(node.attr)
    return {name for name in names if is_private(name)}


def enclosing_classes(tree: ast.Module) -> dict[ast.AST, ast.ClassDef]:
    """Each node inside a class body -> the innermost class around it."""
    around: dict[ast.AST, ast.ClassDef] = {}

    def visit(node: ast.AST, cls: ast.ClassDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if cls is not None:
                around[child] = cls
            visit(child, child if isinstance(child, ast.ClassDef) else cls)

    visit(tree, None)
    return around


def findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    own = defined_here(tree)
    modules = imported_modules(tree)
    around = enclosing_classes(tree)
    members = {cls: defined_by_class(cls) for cls in set(around.values())}
    where = path.relative_to(PACKAGE.parent)
    found: list[str] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
        ):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if is_private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name):
                if owner.id in ("self", "cls"):
                    continue
                if owner.id in modules:
                    if (modules[owner.id].rsplit(".", 1)[-1], node.attr) in DOCUMENTED:
                        continue
                    found.append(f"{where}:{node.lineno}: {owner.id}.{node.attr} (module)")
                    continue
            cls = around.get(node)
            if node.attr in (members[cls] if cls is not None else own):
                continue
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in findings(path)]
    assert found == []


def test_the_check_sees_each_kind_of_reach(tmp_path: Path) -> None:
    # The check must be able to fail: one module with each kind of reach.
    sample = PACKAGE / "_sample_for_test.py"
    sample.write_text(
        "from .core import _hidden\n"
        "from . import core\n"
        "core._table\n"
        "def f(link):\n"
        "    return link._engine, getattr(link, '_engine')\n"
        "class A:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def same(self, other):\n"
        "        return other._mine\n"
        "class B:\n"
        "    def peek(self, a):\n"
        "        return a._mine\n"
    )
    try:
        found = findings(sample)
    finally:
        sample.unlink()
    assert [line.split(": ", 1)[1] for line in found] == [
        "from core import _hidden",
        "core._table (module)",
        "link._engine",
        "getattr(link, '_engine')",
        "a._mine",
    ]
