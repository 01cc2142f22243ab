"""Debian's nginx as a plain round-robin load balancer in front of cluster nodes, for tests.

No stickiness: consecutive requests of one client go to the nodes in turn, which is what the
cluster's request forwarding must cope with. The configuration is generated in a temporary
directory that also holds the pid file, the logs and nginx's temp paths; nginx runs in the
foreground (``daemon off``). The access log has one line per request with its sid and the node
that served it (``requests()``), so a test can show that requests really crossed nodes;
``timed.log`` has the same with the time, every upstream tried and its status, for a failure's
record.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .ports import free_port

START_TIMEOUT = 60.0  # a bound on a hang, not a speed test (loaded machines)

CONFIG = """\
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams '$request_method $request_uri $status $upstream_addr';
    log_format timed '$msec $request_method $request_uri $status $upstream_addr '
                     '$upstream_status $request_time';
    access_log {dir}/access.log upstreams;
    access_log {dir}/timed.log timed;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}
    upstream easyrtc {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://easyrtc;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout http_503;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass(frozen=True, slots=True)
class Request:
    """One line of the access log."""

    method: str
    sid: str | None
    transport: str | None
    status: int
    upstream: str
    """``127.0.0.1:PORT`` of the node nginx passed the request to."""


class Nginx:
    """One nginx in front of ``upstreams`` (``host:port`` each), round-robin."""

    def __init__(self, upstreams: Sequence[str], port: int | None = None) -> None:
        self.upstreams = list(upstreams)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="easyrtc-nginx-"))
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        # max_fails=0 as the README's example: nginx's passive check would take a node that
        # refused one connection (restarting) for down, then let through one request per
        # fail_timeout until a request to it completes, which a websocket does only when it
        # closes: the clients of a drained node would come back two per 10 s.
        servers = "\n".join(
            f"        server {upstream} max_fails=0;" for upstream in self.upstreams
        )
        # As root, nginx's workers would run as nobody, who cannot write the temp dir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return CONFIG.format(user=user, dir=self.dir, servers=servers, port=self.port)

    async def start(self) -> None:
        (self.dir / "nginx.conf").write_text(self.config())
        self.process = await asyncio.create_subprocess_exec(
            nginx_binary(),
            "-p", str(self.dir),
            "-c", str(self.dir / "nginx.conf"),
            "-e", str(self.dir / "error.log"),
            "-g", "daemon off;",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,  # errors go to error.log (-e)
        )  # fmt: skip
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while not await self._accepts():
                    if self.process.returncode is not None:
                        break
                    await asyncio.sleep(0.05)  # polling for the port: nginx says nothing
        except TimeoutError:
            pass
        if self.process.returncode is not None or not await self._accepts():
            await self.stop()
            raise RuntimeError("nginx did not start:\n" + self.error_log())

    async def _accepts(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text() if path.exists() else ""

    def requests(self) -> list[Request]:
        """Every request so far, as the access log has it."""
        path = self.dir / "access.log"
        found: list[Request] = []
        if not path.exists():
            return found
        for line in path.read_text().splitlines():
            method, uri, status, upstream = line.split(" ", 3)
            query = parse_qs(urlsplit(uri).query)
            found.append(
                Request(
                    method,
                    query.get("sid", [None])[0],
                    query.get("transport", [None])[0],
                    int(status),
                    upstream,
                )
            )
        return found

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()  # nginx: fast shutdown
            await process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@asynccontextmanager
async def running_nginx(upstreams: Sequence[str]) -> AsyncIterator[Nginx]:
    """nginx balancing round-robin over ``upstreams`` for the duration of the block."""
    nginx = Nginx(upstreams)
    await nginx.start()
    try:
        yield nginx
    finally:
        await nginx.stop()
