"""Start the Node reference server (open-easyrtc) on a free loopback port, for comparison.

It listens on port 0 and prints the port it got, so no two servers can race for one port.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "reference" / "server.js"


@asynccontextmanager
async def reference_server(
    options: dict[str, Any] | None = None, *, demos_dir: Path | None = None
) -> AsyncIterator[str]:
    """Run the reference server; yield its base URL (``http://127.0.0.1:PORT``)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the reference server needs Node.js")
    if not (ROOT / "node_modules" / "open-easyrtc").is_dir():
        raise RuntimeError("npm packages missing: run `npm ci` in the repository root")
    env = dict(os.environ)
    if demos_dir is not None:
        env["DEMOS_DIR"] = str(demos_dir)
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        "0",
        json.dumps(options or {}),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    drain: asyncio.Task[None] | None = None
    try:
        output = []
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            if not line:
                raise RuntimeError("reference server exited:\n" + "".join(output))
            output.append(line.decode(errors="replace"))
            if line.startswith(b"listening "):
                port = int(line.split()[1])
                break
        drain = asyncio.create_task(_drain(proc.stdout))
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        if drain is not None:
            drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
