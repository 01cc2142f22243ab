"""Free loopback ports for test servers.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the same range every
outgoing connection takes its source port from: between our choosing it and the server binding
it, a node's Redis connection or a browser's socket can take it ("port already in use", seen in
CI). So ports are chosen below that range, where only a listener asks for a port by number, and
never handed out twice by one test process.
"""

import random
import socket
from pathlib import Path

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range."""
    top = _ephemeral_start()
    if top - _LOWEST >= 1_000:
        for _ in range(200):
            port = random.randrange(_LOWEST, top)
            if port not in _given and _free(port):
                _given.add(port)
                return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _given.add(port)
    return port
