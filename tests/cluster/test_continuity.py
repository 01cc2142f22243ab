"""Continuity in a cluster (issue 24): keyed clients keep their easyrtcid, their peers see no
leave and no message sent to them is lost or duplicated, through a ``kill -9`` of a node, a
SIGTERM drain of a node and a rolling restart of all three.

Three real nodes on one Redis behind a round-robin nginx; keyed socket.io-client 4 clients in
pairs (``clients/keyed_pairs.js``), a room per pair (a room holds 100 at the defaults,
``room_max_connection``), each sending its partner a numbered message every 300 ms. The
drop-to-resume times are printed (``-s``); ``bench/continuity.py`` runs the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from support.nginx import Nginx, running_nginx
from support.nodes import Node
from support.redisserver import running_redis

from .keyed_pairs import keyed_pairs, percentile, verdict

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLIENTS = 200
SOCKETS = 'easyrtc_connections_by_transport{transport="websocket"}'
SETTLE = 60.0
"""Seconds every dropped client may take to be back (nodes start slowly on a loaded machine)."""
ENV = {"EASYRTC_CLUSTER_ALIVE_TTL": "3", "EASYRTC_SHUTDOWN_DRAIN_TIME": "5"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "continuity"


class Three:
    def __init__(self, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.redis_url = redis_url
        self.env = ENV if env is None else env
        self.nodes = [Node(redis_url, cluster="continuity", env=self.env) for _ in range(3)]
        self.every = list(self.nodes)
        """Every node process so far, stopped ones too (their logs, on a failure)."""
        self.events: list[str] = []
        self.started = time.monotonic()
        self.nginx: Nginx | None = None

    def note(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:8.3f} {what}")

    async def restart(self, index: int, *, kill: bool) -> None:
        old = self.nodes[index]
        self.note(f"{'kill -9' if kill else 'SIGTERM'} node {index} (port {old.port})")
        await old.stop(kill=kill)
        self.note(f"node {index} exited")
        self.nodes[index] = Node(self.redis_url, cluster="continuity", env=self.env, port=old.port)
        self.every.append(self.nodes[index])

    async def start(self, index: int) -> None:
        self.note(f"starting node {index}")
        await self.nodes[index].start()
        self.note(f"node {index} started")

    def save(self, clients: list[str]) -> Path:
        """What the nodes, nginx and the clients logged, in ``test-artifacts/continuity``."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for n, node in enumerate(self.every):
            (ARTIFACTS / f"node-{n}-port-{node.port}.log").write_text("\n".join(node.lines))
        (ARTIFACTS / "test.log").write_text("\n".join(self.events))
        (ARTIFACTS / "clients.log").write_text("\n".join(clients))
        if self.nginx is not None:
            access = self.nginx.dir / "timed.log"
            if access.exists():
                (ARTIFACTS / "nginx-access.log").write_text(access.read_text())
            (ARTIFACTS / "nginx-error.log").write_text(self.nginx.error_log())
        return ARTIFACTS


async def sockets_on(node: Node) -> int:
    """The websockets a node holds (its metrics)."""
    async with aiohttp.ClientSession() as http, http.get(node.url + "/metrics") as response:
        text = await response.text()
    line = next(line for line in text.splitlines() if line.startswith(SOCKETS))
    return int(float(line.rsplit(" ", 1)[1]))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def three() -> AsyncIterator[tuple[Three, str]]:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(running_redis())
        cluster = Three(redis.url)
        await asyncio.gather(*(node.start() for node in cluster.nodes))
        for index in range(3):
            stack.push_async_callback(lambda i=index: cluster.nodes[i].stop())
        upstreams = [f"127.0.0.1:{node.port}" for node in cluster.nodes]
        nginx = await stack.enter_async_context(running_nginx(upstreams))
        cluster.nginx = nginx
        yield cluster, f"http://127.0.0.1:{nginx.port}"


async def test_kill_drain_and_rolling_restart_are_invisible_to_keyed_pairs(
    three: tuple[Three, str],
) -> None:
    cluster, url = three
    async with keyed_pairs(url, CLIENTS, rooms="pairs") as pairs:
        try:
            async with asyncio.timeout(SETTLE):
                await pairs.ready.wait()
        except TimeoutError:
            saved = cluster.save(pairs.lines)
            raise AssertionError(
                f"not every client logged in: {pairs.errors()} (logs in {saved})"
            ) from None

        async def bounce(index: int, *, kill: bool) -> None:
            before = pairs.dropped
            on_it = await sockets_on(cluster.nodes[index])
            await pairs.mark("kill" if kill else "drain")
            await cluster.restart(index, kill=kill)
            try:
                async with asyncio.timeout(SETTLE):
                    await pairs.settled_after(before + on_it)
            except TimeoutError:
                saved = cluster.save(pairs.lines)
                raise AssertionError(
                    f"node {index} {'killed' if kill else 'drained'}: {pairs.dropped} drops "
                    f"(before: {before}), {len(pairs.resumed)} resumes; {pairs.errors()} "
                    f"(logs in {saved})"
                ) from None
            await pairs.mark("settled")
            await cluster.start(index)

        await bounce(0, kill=True)  # kill -9
        await bounce(1, kill=False)  # SIGTERM: a drain
        for index in range(3):  # a rolling restart
            await bounce(index, kill=False)
        summary = await pairs.stop()

    seen = verdict(summary)
    times = pairs.resumed
    print(
        f"\n{CLIENTS} keyed clients, {len(times)} resumes: drop to resume "
        f"p50 {percentile(times, 0.5)} ms, p99 {percentile(times, 0.99)} ms, "
        f"max {max(times, default=0)} ms; {seen.accepted} messages acknowledged, "
        f"{seen.refused} refused, {seen.unacked} unacknowledged (sender dropped), "
        f"{len(seen.in_flight)} lost on their way to the killed node, "
        f"{seen.repeats} second copies dropped by their clients"
    )
    if seen.changed_ids or seen.removed_keyed or seen.duplicated or seen.lost or seen.in_flight:
        saved = cluster.save(pairs.lines)
        (saved / "summary.json").write_text(json.dumps(summary))
        print(f"logs and the clients' summary in {saved}")
    assert len(times) >= CLIENTS  # every client dropped at least once (the rolling restart)
    assert seen.changed_ids == []  # every client kept its easyrtcid
    assert seen.removed_keyed == []  # no peer heard of a keyed client leaving
    assert seen.duplicated == []
    assert seen.lost == []  # none lost in a drain or restart, nor after a kill was resumed
    # nor on its way to the killed node: kept by the sender's node until confirmed, sent again
    assert seen.in_flight == []
