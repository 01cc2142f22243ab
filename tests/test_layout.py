"""The package's layout: what each subpackage may depend on, and the 0.1 import paths.

``protocol`` is the EasyRTC protocol sans I/O: it may read the options and nothing else of the
package (no transport, server, engine, cluster or operations), and no I/O library. Hook code
written against the 0.1 paths (``easyrtc_server.model``, ``easyrtc_server.metrics``, …) keeps
working for one release, with a warning naming the new path.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import easyrtc_server

PACKAGE = Path(easyrtc_server.__file__).parent

# The modules of the 0.1 layout that moved, as hook authors imported them (written out here,
# not read from the package, so that dropping one from the aliases fails this test).
OLD_PATHS = {
    **{
        f"easyrtc_server.{name}": f"easyrtc_server.protocol.{name}"
        for name in [
            "auth",
            "coalescing",
            "control",
            "core",
            "decisions",
            "delivery",
            "errors",
            "hold",
            "ice",
            "jsregex",
            "model",
            "outcome",
            "relay",
            "roomdata",
            "rooms",
            "state",
            "turn",
            "validation",
        ]
    },
    **{
        f"easyrtc_server.{name}": f"easyrtc_server.operations.{name}"
        for name in ("admin", "health", "metrics", "routes", "webhooks")
    },
}

IO_LIBRARIES = {"asyncio", "aiohttp", "redis", "socket", "selectors", "ssl", "threading", "uvloop"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def test_the_protocol_depends_on_nothing_but_the_options_and_does_no_io() -> None:
    protocol = sorted((PACKAGE / "protocol").glob("*.py"))
    assert len(protocol) > 10
    for path in protocol:
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top not in IO_LIBRARIES, f"{path.name} imports {name}"
            if top == "easyrtc_server":
                assert name.startswith(("easyrtc_server.protocol", "easyrtc_server.options")), (
                    f"{path.name} imports {name}"
                )


def test_no_module_of_the_package_uses_an_old_path() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        used = imports_of(path) & OLD_PATHS.keys()
        assert not used, f"{path.relative_to(PACKAGE)} imports {sorted(used)}"


def test_the_old_paths_give_the_moved_modules_with_a_warning() -> None:
    """In a fresh interpreter, so that no earlier import hides the warning."""
    script = """
import importlib, json, sys, warnings
old_paths = json.loads(sys.argv[1])
seen = {}
for old, new in old_paths.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    seen[old] = {
        "same": module is importlib.import_module(new),
        "warnings": [str(w.message) for w in caught if w.category is DeprecationWarning],
    }
from easyrtc_server.model import Peer
from easyrtc_server.protocol.model import Peer as NewPeer
seen["classes"] = Peer is NewPeer
print(json.dumps(seen))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(OLD_PATHS)],
        check=True,
        capture_output=True,
        text=True,
    )
    seen = json.loads(result.stdout)
    assert seen.pop("classes") is True
    for old, new in OLD_PATHS.items():
        assert seen[old]["same"], old
        assert any(new in message for message in seen[old]["warnings"]), (old, seen[old])


def test_a_name_that_never_existed_is_still_an_import_error() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import easyrtc_server.nosuchmodule"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr
