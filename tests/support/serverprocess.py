"""Our server as a real process (``python -m easyrtc_server``) on a fixed loopback port, which a
test may ``kill -9`` and start again on the same port, as a crash and a restart would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping

from .ports import free_port

START_TIMEOUT = 60.0  # a bound on a hang, not a speed test (loaded machines)
LISTENING = "listening on "


class ServerProcess:
    """One single-process server; ``env`` adds ``EASYRTC_*`` settings (secrets never in argv)."""

    def __init__(self, env: Mapping[str, str] | None = None, port: int | None = None) -> None:
        self.env = dict(env or {})
        self.port = port or free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, "EASYRTC_LOGIN_TIMEOUT": "0", **self.env}
        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "easyrtc_server", "--host", "127.0.0.1", "--port", str(self.port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            while line := await process.stdout.readline():
                self.lines.append(line.decode(errors="replace").rstrip())
                if LISTENING in self.lines[-1]:
                    break
            else:
                raise RuntimeError("server did not start:\n" + "\n".join(self.lines))
        self._reader = asyncio.create_task(self._drain(process.stdout))

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def stop(self, *, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        async with asyncio.timeout(START_TIMEOUT):
            await process.wait()
            if self._reader is not None:
                await self._reader
