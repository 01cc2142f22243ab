"""A node draining on SIGTERM hands its keyed clients over to the rest of the cluster quietly:
no ``disconnect`` hook runs for them there, no peer hears of them leaving, they resume on
another node with their easyrtcid, and a draining node refuses new sessions.

Two real nodes with the behaviour tests' hooks (``hooked_node``, which logs where each
``disconnect`` hook runs) on one Redis; python-socketio clients.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from support.client import Client
from support.nodes import Node, running_nodes
from support.redisserver import running_redis

pytestmark = pytest.mark.asyncio(loop_scope="module")

TESTS_DIR = Path(__file__).resolve().parents[1]
NODE_ENV = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
    "EASYRTC_SHUTDOWN_DRAIN_TIME": "5",
}
TIMEOUT = 30.0
"""Seconds for a node to drain and exit, or a client to be back (a loaded machine)."""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def nodes() -> AsyncIterator[list[Node]]:
    async with (
        running_redis() as redis,
        running_nodes(
            redis.url, 2, cluster="drain", env=NODE_ENV, module="cluster.hooked_node"
        ) as found,
    ):
        yield found


async def keyed(url: str, key: str) -> Client:
    client = Client()
    await client.sio.connect(
        url, transports=["websocket"], auth={"easyrtcResumeKey": key}, wait_timeout=10
    )
    return client


def removed(client: Client) -> set[str]:
    """Every easyrtcid the client was told left its rooms so far."""
    gone: set[str] = set()
    while not client.cmds.empty():
        msg = client.cmds.get_nowait()
        for room in (msg.get("msgData") or {}).get("roomData", {}).values():
            gone |= set((room.get("clientListDelta") or {}).get("removeClient") or {})
    return gone


async def test_a_drained_nodes_keyed_client_resumes_elsewhere_and_nobody_is_told(
    nodes: list[Node],
) -> None:
    draining, staying = nodes
    key = secrets.token_urlsafe(32)
    alice = await keyed(draining.url, key)
    token = await alice.login(applicationName="drain", roomJoin={"r": {"roomName": "r"}})
    alice_id = token["msgData"]["easyrtcid"]
    bob = Client()
    await bob.connect(staying.url)
    await bob.login(applicationName="drain", roomJoin={"r": {"roomName": "r"}})
    try:
        stopped = asyncio.create_task(draining.stop())  # SIGTERM: a drain
        async with asyncio.timeout(TIMEOUT):
            await alice.disconnected.wait()
        async with aiohttp.ClientSession() as http:  # while it drains: no new sessions
            params = {"EIO": "4", "transport": "polling"}
            try:
                async with http.get(draining.url + "/socket.io/", params=params) as response:
                    assert response.status == 503
            except aiohttp.ClientConnectionError:
                pass  # or it stopped listening already: a balancer goes on at once either way
        again = await keyed(staying.url, key)
        resumed = await again.login(applicationName="drain", roomJoin={"r": {"roomName": "r"}})
        assert resumed["msgData"]["easyrtcid"] == alice_id
        async with asyncio.timeout(TIMEOUT):
            assert await stopped == 0
        assert not any("hook disconnect" in line for line in draining.lines), draining.lines
        await bob.cmd("getRoomList")  # one more round trip: anything told by now has come
        assert alice_id not in removed(bob)
        await again.sio.disconnect()
    finally:
        await bob.sio.disconnect()
