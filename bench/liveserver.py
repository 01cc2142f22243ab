"""Starting a server process for the long runs (``fuzz.py``, ``soak.py``): a free port, and
waiting until it listens."""

from __future__ import annotations

import asyncio
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until ``proc`` accepts connections on ``port``; exits if it dies or takes over 20 s."""
    for _ in range(400):
        if proc.poll() is not None:
            raise SystemExit("the server exited at start")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise SystemExit("the server did not start")
