"""Issue 24 in Chromium, in a cluster: a video call with easyrtc_resume.js survives the loss of
the node holding one page's socket (``kill -9`` or a SIGTERM drain), then a rolling restart of
both nodes, without either page noticing.

Two nodes on one Redis behind the README's round-robin nginx; both pages load and signal through
nginx. The node holding a page's socket is the one whose id starts its Engine.IO sid. Throughout,
each page samples its call every 100 ms (``test_keeping_calls_up.WATCH``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from browserkit import ARTIFACTS, DemoPage, Demos
from test_keeping_calls_up import (
    call_went_on,
    errors_besides_the_outage,
    note_resume_times,
    watch,
)
from test_video_call import place_call

from support.nginx import Nginx, running_nginx
from support.nodes import Node
from support.redisserver import running_redis

BACK_MS = 45_000
"""How long a page may take to be back after its node went (a bound on a hang: with both cores
busy, a node's start alone took 12 s)."""
ENGINE_SID = "() => easyrtcResume.socket.real.io.engine.id"
"""The Engine.IO sid of the page's current socket (the resume script's, under easyrtc.js's)."""
STARTED = "cluster node "


@dataclass
class Cluster:
    redis_url: str
    nodes: list[Node]
    nginx: Nginx | None = None
    stopped: list[Node] = field(default_factory=list)
    """Nodes stopped by ``restart``, kept for their logs."""

    def write_logs(self, name: str) -> None:
        """Every node's log (stopped ones first) and nginx's, for a failed test."""
        folder = ARTIFACTS / "failures" / f"cluster-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for n, node in enumerate([*self.stopped, *self.nodes]):
            (folder / f"node-{n}-port-{node.port}.log").write_text("\n".join(node.lines))
        if self.nginx is not None:
            (folder / "nginx-error.log").write_text(self.nginx.error_log())

    async def restart(self, index: int, *, kill: bool) -> None:
        """Stop node ``index`` (``kill -9`` or SIGTERM) and start a new one on its port."""
        old = self.nodes[index]
        await old.stop(kill=kill)
        self.stopped.append(old)
        self.nodes[index] = Node(self.redis_url, cluster="browser-keep", port=old.port)
        await self.nodes[index].start()

    async def node_id(self, index: int) -> str:
        """Node ``index``'s id, as its start-up line gives it."""
        line = await self.nodes[index].wait_for_line(STARTED)
        return line.split(STARTED, 1)[1].split()[0]

    async def holding(self, page: DemoPage) -> int:
        """The index of the node that holds ``page``'s socket."""
        await page.page.wait_for_function("() => easyrtc.webSocket.connected", timeout=BACK_MS)
        sid: str = await page.page.evaluate(ENGINE_SID)
        ids = [await self.node_id(i) for i in range(len(self.nodes))]
        return ids.index(sid.split(".", 1)[0])


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(running_redis())
        found = Cluster(redis.url, [Node(redis.url, cluster="browser-keep") for _ in range(2)])
        for index in range(2):
            stack.push_async_callback(lambda i=index: found.nodes[i].stop())
        for node in found.nodes:
            await node.start()
        upstreams = [f"127.0.0.1:{node.port}" for node in found.nodes]
        found.nginx = await stack.enter_async_context(running_nginx(upstreams))
        yield found


@pytest.fixture
def server_kind() -> str:
    """These tests run against the cluster only (the reference has no resume)."""
    return "cluster"


@pytest_asyncio.fixture(loop_scope="session")
async def server(cluster: Cluster) -> str:
    assert cluster.nginx is not None
    return cluster.nginx.url


async def resumes(page: DemoPage) -> int:
    count: int = await page.page.evaluate("() => easyrtcResume.socket.resumes")
    return count


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
async def test_a_call_survives_its_node_and_a_rolling_restart(
    demos: Demos, cluster: Cluster, stop: str
) -> None:
    alice, bob = await demos.open_many(
        "video.html", "alice", "bob", resume="1", app=f"keep-{stop.replace(' ', '')}"
    )
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await place_call(alice, bob, bob_id)
    for page, other in ((alice, bob_id), (bob, alice_id)):
        await page.wait_connected_to(other)
        await page.wait_video_plays(page.page.locator("#remote-video"))
    since = [await watch(alice, bob_id), await watch(bob, alice_id)]
    pages = {alice_id: alice, bob_id: bob}

    async def bounce(index: int, *, kill: bool) -> None:
        """Restart node ``index``; every page it held resumes (on either node)."""
        on_it = {cid: await resumes(page) for cid, page in pages.items()
                 if await cluster.holding(page) == index}  # fmt: skip
        await cluster.restart(index, kill=kill)
        for cid, before in on_it.items():
            await pages[cid].page.wait_for_function(
                "(n) => easyrtcResume.socket.resumes > n", arg=before, timeout=BACK_MS
            )

    try:
        await bounce(await cluster.holding(alice), kill=stop == "kill -9")
        assert await resumes(alice) >= 1
        for index in range(len(cluster.nodes)):  # a rolling restart
            await bounce(index, kill=False)

        await call_went_on(alice, alice_id, since[0])
        await call_went_on(bob, bob_id, since[1])
    except BaseException:
        cluster.write_logs(stop.replace(" ", ""))
        raise
    times = [
        float(t)
        for page in (alice, bob)
        for t in await page.page.evaluate("() => easyrtcResume.socket.resumeTimes")
    ]
    assert all(0 < t < 30_000 for t in times)
    note_resume_times(f"cluster-{stop.replace(' ', '')}", times)
    assert errors_besides_the_outage(demos) == {}
