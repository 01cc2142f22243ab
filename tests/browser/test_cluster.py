"""Issue 11 in Chromium: the real easyrtc.js against a two-node cluster, with no sticky sessions.

Two nodes share one Redis; a plain round-robin nginx sits in front of them. Pages loaded through
nginx make their requests to both nodes in turn (the node holding a session gets them forwarded),
on long-polling and on websocket after the upgrade; pages loaded straight from two different
nodes talk to each other across the cluster. Each test runs in its own EasyRTC application.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from browserkit import ARTIFACTS, DemoPage, Demos
from playwright.async_api import BrowserContext, expect
from test_datachannel import data_channel_exchange
from test_departure import FORCE_TRANSPORTS, TRANSPORT_NAME
from test_video_call import place_call

from support.nginx import Nginx, running_nginx
from support.nodes import Node, running_nodes
from support.redisserver import running_redis

ENGINE_SID = "() => easyrtc.webSocket.io.engine.id"


@dataclass
class Cluster:
    nodes: list[Node]
    nginx: Nginx

    async def write_logs(self, name: str) -> None:
        """The nodes' logs and inbox counters, nginx's timed access log and error log, for a
        failed test (the data-channel flake of issue 18 came back here once without them)."""
        folder = ARTIFACTS / "failures" / f"cluster-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        async with aiohttp.ClientSession() as http:
            for n, node in enumerate(self.nodes):
                (folder / f"node-{n}-port-{node.port}.log").write_text("\n".join(node.lines))
                async with http.get(node.url + "/metrics") as response:
                    kept = [
                        line
                        for line in (await response.text()).splitlines()
                        if "inbox" in line or "forward" in line or "relayed" in line
                    ]
                (folder / f"node-{n}-metrics.txt").write_text("\n".join(kept))
        timed = self.nginx.dir / "timed.log"
        if timed.exists():
            (folder / "nginx-access.log").write_text(timed.read_text())
        (folder / "nginx-error.log").write_text(self.nginx.error_log())


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    async with (
        running_redis() as redis,
        running_nodes(redis.url, 2, cluster="browser") as nodes,
        running_nginx([f"127.0.0.1:{node.port}" for node in nodes]) as nginx,
    ):
        yield Cluster(nodes, nginx)


@pytest.fixture
def server_kind() -> str:
    """These tests run against the cluster only (not the reference)."""
    return "cluster"


@pytest_asyncio.fixture(loop_scope="session")
async def server(cluster: Cluster) -> str:
    """Pages load through the round-robin nginx unless a test opens them on a node."""
    return cluster.nginx.url


def force(demos: Demos, mode: str) -> None:
    """``polling``: the pages never upgrade; ``upgrade``: socket.io's default (polling, then
    websocket)."""
    if mode == "polling":

        async def setup(context: BrowserContext) -> None:
            await context.add_init_script(FORCE_TRANSPORTS % json.dumps(["polling"]))

        demos.context_setup.append(setup)


async def check_transport(pages: tuple[DemoPage, ...], mode: str) -> None:
    expected = "polling" if mode == "polling" else "websocket"
    for page in pages:
        await page.page.wait_for_function(f"() => ({TRANSPORT_NAME})() === '{expected}'")


async def served_by_both_nodes(cluster: Cluster, page: DemoPage) -> None:
    """The page's session had requests passed to each node by nginx, all answered."""
    sid = await page.page.evaluate(ENGINE_SID)
    requests = [r for r in cluster.nginx.requests() if r.sid == sid]
    assert {r.upstream for r in requests} == {f"127.0.0.1:{n.port}" for n in cluster.nodes}
    assert all(r.status == 200 for r in requests), requests


async def video_call(alice: DemoPage, bob: DemoPage) -> None:
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await expect(alice.peer(bob_id)).to_be_visible()
    await place_call(alice, bob, bob_id)
    for page, other in ((alice, bob_id), (bob, alice_id)):
        await expect(page.page.locator("#call")).to_have_attribute("data-state", "connected")
        await page.wait_connected_to(other)
        await page.wait_video_plays(page.page.locator("#remote-video"))


# -- through round-robin nginx --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["polling", "upgrade"])
async def test_data_channel_through_round_robin(demos: Demos, cluster: Cluster, mode: str) -> None:
    force(demos, mode)
    pages = await demos.open_many("datachannel.html", "alice", "bob", app=f"rr-data-{mode}")
    try:
        await data_channel_exchange(*pages)
    except BaseException:
        await cluster.write_logs(f"data-{mode}")
        raise
    await check_transport(tuple(pages), mode)
    if mode == "polling":
        for page in pages:
            await served_by_both_nodes(cluster, page)
    assert demos.errors() == {}


@pytest.mark.parametrize("mode", ["polling", "upgrade"])
async def test_video_call_through_round_robin(demos: Demos, cluster: Cluster, mode: str) -> None:
    force(demos, mode)
    pages = await demos.open_many("video.html", "alice", "bob", app=f"rr-video-{mode}")
    await video_call(*pages)
    await check_transport(tuple(pages), mode)
    if mode == "polling":
        for page in pages:
            await served_by_both_nodes(cluster, page)
    assert demos.errors() == {}


# -- straight to two different nodes --------------------------------------------------------------


async def open_on_each_node(demos: Demos, cluster: Cluster, path: str, app: str) -> list[DemoPage]:
    pages = []
    for node, name in zip(cluster.nodes, ("alice", "bob"), strict=True):
        demos.server = node.url
        pages.append(await demos.open(path, name=name, app=app))
    return pages


async def test_pages_on_two_nodes_complete_a_video_call(demos: Demos, cluster: Cluster) -> None:
    alice, bob = await open_on_each_node(demos, cluster, "video.html", "nodes-video")
    await video_call(alice, bob)
    assert demos.errors() == {}


async def test_pages_on_two_nodes_open_a_data_channel(demos: Demos, cluster: Cluster) -> None:
    alice, bob = await open_on_each_node(demos, cluster, "datachannel.html", "nodes-data")
    await data_channel_exchange(alice, bob)
    assert demos.errors() == {}


async def test_closed_tab_on_polling_leaves_at_once_through_round_robin(
    demos: Demos, cluster: Cluster
) -> None:
    """A held poll forwarded to the owner: when the tab closes, nginx drops its connection to
    the node that took the poll, and that node drops the forwarded poll, so the owner sees the
    client go as if it had held the poll itself."""
    force(demos, "polling")
    alice, bob = await demos.open_many("chat.html", "alice", "bob", app="rr-leave")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await expect(alice.peer(bob_id, within="#people")).to_be_visible()
    await expect(bob.peer(alice_id, within="#people")).to_be_visible()

    await demos.close(bob)
    await expect(alice.peer(bob_id, within="#people")).to_have_count(0, timeout=1500)
    assert demos.errors() == {}
