"""Helpers for the operations tests: serve a server, scrape and parse its metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from easyrtc_server.events import Listener
from easyrtc_server.hooks import Hooks
from easyrtc_server.options import Options
from easyrtc_server.protocol.core import Peer
from easyrtc_server.server import EasyRtcServer
from support.client import TIMEOUT, Client
from support.ours import serving

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@asynccontextmanager
async def served(
    hooks: Hooks | None = None, **options: Any
) -> AsyncIterator[tuple[EasyRtcServer, str]]:
    """A server with ``options`` on a free loopback port: (server, base URL)."""
    server = EasyRtcServer(Options.from_mapping(options), hooks=hooks)
    async with serving(server) as url:
        yield server, url


@asynccontextmanager
async def clients(
    url: str, count: int, transport: str = "websocket"
) -> AsyncIterator[list[Client]]:
    made = [Client(transport) for _ in range(count)]
    for client in made:
        await client.connect(url)
    try:
        yield made
    finally:
        await asyncio.gather(*(c.sio.disconnect() for c in made if c.sio.connected))


async def scrape(url: str) -> tuple[str, Samples]:
    """The text at ``url`` and its samples by (name, labels); it must parse."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


class Closes(Listener):
    """Counts sockets the server has closed and cleaned up; ``wait(n)`` awaits the n-th."""

    def __init__(self, server: EasyRtcServer) -> None:
        self.count = 0
        self._changed = asyncio.Event()
        server.events.add(self)

    def closed(self, peer: Peer, reason: str) -> None:
        self.count += 1
        self._changed.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()
