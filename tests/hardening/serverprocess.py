"""``easyrtc-server`` as a real process on a free loopback port, for signal tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from support.ports import free_port

CLI = Path(sys.executable).with_name("easyrtc-server")
STARTUP = 60.0  # a bound on a hang, not a speed test: a loaded 2-core machine starts Python slowly


@contextmanager
def server_process(
    *args: str, env: dict[str, str] | None = None, command: Sequence[str] = (str(CLI),)
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start the server; yield the process and its URL; kill it if still running at the end."""
    port = free_port()
    proc = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--no-demos", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def until_listening(proc: subprocess.Popen[bytes], url: str) -> None:
    """Return once the server accepts connections (it prints nothing when it is ready)."""
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + STARTUP
    while True:
        assert proc.poll() is None, "the server exited at start"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # polling a port: there is no event to await
            continue
        writer.close()
        await writer.wait_closed()
        return


async def exit_code(proc: subprocess.Popen[bytes], within: float) -> int:
    return await asyncio.wait_for(asyncio.to_thread(proc.wait), within)
