"""The transport knows sockets and framing, not EasyRTC: it imports none of the server's
protocol modules (errors, the core, the model), so a wire meaning never hides in it."""

from __future__ import annotations

import ast
from pathlib import Path

import easyrtc_server.transport

SERVER_SIDE = {"errors", "core", "model", "outcome", "decisions", "server", "engine"}


def server_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level >= 2:
            if (node.module or "").split(".")[0] in SERVER_SIDE:
                found.append(f"{path.name}:{node.lineno}: from ..{node.module}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("easyrtc_server"):
            parts = (node.module or "").split(".")
            if len(parts) > 1 and parts[1] in SERVER_SIDE:
                found.append(f"{path.name}:{node.lineno}: from {node.module}")
    return found


def test_transport_imports_no_easyrtc_protocol_module() -> None:
    package = Path(easyrtc_server.transport.__file__).parent
    assert [line for path in sorted(package.glob("*.py")) for line in server_imports(path)] == []
