"""A long-polling POST costs the server memory for what it may queue, not for what it carries.

Measured on a real server process from /proc: its peak RSS while it handles a 1 MB POST of
tiny packets, against its RSS before.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from support.polling import PollingClient, v3_payload

from .serverprocess import server_process, until_listening

MB = 1024 * 1024
BODY_LIMIT = 1_000_000
"""The default maximum POST body (``maxHttpBufferSize``)."""


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    """Make VmHWM (peak RSS) start again from the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _body_of(eio: int, size: int = BODY_LIMIT) -> bytes:
    if eio == 3:  # pings: each one queues a pong until the outbox bound closes the session
        return v3_payload("2") * (size // 3)
    return b"\x1e".join([b"6"] * (size // 2))  # noops: nothing queued, only decoded


@pytest.mark.parametrize("eio", [3, 4])
async def test_a_1_mb_post_of_tiny_packets_raises_rss_by_at_most_4_mb(eio: int) -> None:
    body = _body_of(eio)
    assert BODY_LIMIT - 3 <= len(body) <= BODY_LIMIT
    with server_process() as (proc, url):
        await until_listening(proc, url)
        async with aiohttp.ClientSession() as http:
            # a first session and POST of each kind, so that what every POST allocates once
            # (buffers, code paths) is in the baseline
            warm = PollingClient(http, url, eio)
            await warm.open()
            assert await warm.post_body(_body_of(eio, 3000)) == 200
            client = PollingClient(http, url, eio)
            await client.open()
            before = _status(proc.pid, "VmRSS")
            _reset_peak(proc.pid)
            status = await client.post_body(body)
            peak = _status(proc.pid, "VmHWM")
            assert status == 200
            if eio == 3:  # the pongs overflowed the outbox: the session is gone
                params = client.params()
                async with http.get(url + "/socket.io/", params=params) as r:
                    assert r.status == 400
    assert peak - before <= 4 * MB, f"RSS rose by {(peak - before) / MB:.1f} MB"
