"""The ASGI app hosts what the aiohttp app does: under a real uvicorn process it serves the
probes, the metrics (with byte counts) and the admin API, and SIGTERM drains every client."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from easyrtc_server.asgi import create_asgi_app
from easyrtc_server.config import ConfigError
from easyrtc_server.options import Options
from support.client import TIMEOUT, Client
from support.nodes import Node

from .opskit import scrape, value
from .test_webhooks import receiver

TESTS_DIR = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
TOKEN = "asgi-admin-token-0123456789"
DRAIN = 5.0


@asynccontextmanager
async def asgi_process(**env: str) -> AsyncIterator[Node]:
    """``create_asgi_app`` under uvicorn in its own process (``support.asgi_node``)."""
    node = Node(
        None,
        module="support.asgi_node",
        env={
            "PYTHONPATH": PYTHONPATH,
            "EASYRTC_DEMOS_ENABLE": "false",
            **env,
        },
    )  # fmt: skip
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def _logged_in(url: str, count: int, transport: str = "websocket") -> list[Client]:
    clients = [Client(transport) for _ in range(count)]
    for client in clients:
        await client.connect(url)
        await client.login()
    return clients


async def test_probes_metrics_and_admin_api_under_uvicorn() -> None:
    async with asgi_process(EASYRTC_ADMIN_TOKEN=TOKEN) as node, aiohttp.ClientSession() as http:
        a, b = await _logged_in(node.url, 1) + await _logged_in(node.url, 1, "polling")
        async with http.get(node.url + "/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}
        async with http.get(node.url + "/readyz") as response:
            assert response.status == 200
        _, samples = await scrape(node.url + "/metrics")
        assert value(samples, "easyrtc_connections", state="authenticated") == 2
        assert value(samples, "easyrtc_received_bytes_total") > 0  # the ASGI driver counts too
        assert value(samples, "easyrtc_sent_bytes_total") > 0

        api = node.url + "/admin/api"
        async with http.get(api + "/applications") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(api + "/applications", headers=auth) as response:
            assert response.status == 200
            body = await response.json()
        assert {"name": "default", "rooms": 1, "connections": 2} in body["applications"]
        async with http.get(api + f"/connections/{b.easyrtcid}", headers=auth) as response:
            assert (await response.json())["transport"] == "polling"
        async with http.post(
            api + "/messages", headers=auth, json={"msgType": "hello", "easyrtcid": a.easyrtcid}
        ) as response:
            assert await response.json() == {"recipients": 1}
        assert (await a.next_msg())["msgType"] == "hello"
        async with http.delete(api + f"/connections/{a.easyrtcid}", headers=auth) as response:
            assert await response.json() == {"disconnected": True}
        await asyncio.wait_for(a.disconnected.wait(), TIMEOUT)
        async with http.get(node.url + "/admin/", headers=auth) as response:
            assert response.status == 200
            assert "<html" in (await response.text()).lower()
        await b.sio.disconnect()


async def test_webhooks_under_uvicorn() -> None:
    async with (
        receiver() as (hook, hook_url),
        asgi_process(
            EASYRTC_WEBHOOK_URLS=hook_url, EASYRTC_WEBHOOK_SECRET="whsec-test-0123456789"
        ) as node,
    ):
        lobby = {"lobby": {"roomName": "lobby"}}
        (alice,) = await _logged_in(node.url, 1)
        await alice.cmd("roomJoin", msgData={"roomJoin": lobby})
        events = [(await hook.next())[1] for _ in range(4)]
        await alice.sio.disconnect()
    joined = [(e["event"], e["room"]) for e in events if e["event"] == "participant_joined"]
    assert ("participant_joined", "lobby") in joined


def _removed(pushes: list[dict[str, Any]]) -> set[str]:
    gone: set[str] = set()
    for push in pushes:
        if push["msgType"] == "roomData":
            for room in push["msgData"]["roomData"].values():
                gone.update(room.get("clientListDelta", {}).get("removeClient", {}))
    return gone


async def _pushes_until_closed(client: Client) -> list[dict[str, Any]]:
    await asyncio.wait_for(client.disconnected.wait(), TIMEOUT)
    pushes = []
    while not client.cmds.empty():
        pushes.append(client.cmds.get_nowait())
    return pushes


async def test_sigterm_drains_every_client_under_uvicorn() -> None:
    async with asgi_process(EASYRTC_SHUTDOWN_DRAIN_TIME=str(DRAIN)) as node:
        clients = await _logged_in(node.url, 3) + await _logged_in(node.url, 1, "polling")
        for client in clients:  # only what the shutdown sends is left
            while not client.cmds.empty():
                client.cmds.get_nowait()
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
        pushes = [await _pushes_until_closed(client) for client in clients]
        async with asyncio.timeout(DRAIN + 5):
            code = await node.process.wait()
    # uvicorn re-raises the signal it handled once the server has stopped
    assert code in (0, -signal.SIGTERM)
    ids = [client.easyrtcid for client in clients]
    for i, got in enumerate(pushes):
        # each was told why it goes, after it heard every earlier one leave
        errors = [p["msgData"]["errorCode"] for p in got if p["msgType"] == "error"]
        assert errors == ["SERVER_SHUTDOWN"]
        assert _removed(got) >= set(ids[:i])
    assert any("shutting down: closing 4 sockets" in line for line in node.lines)


@pytest.mark.parametrize(
    ("options", "named"),
    [({"workers": 2}, "workers"), ({"access_log_enable": True}, "access_log_enable")],
)
def test_options_an_asgi_server_cannot_honour_are_refused_by_name(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        create_asgi_app(Options.from_mapping(options))
