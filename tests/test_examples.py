"""The examples in ``examples/`` run, and do what their docstrings say, with real clients.

aiohttp applications are served by ``support.ours.serving_app``; the ASGI one by uvicorn.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import uvicorn

from easyrtc_server.asgi import ASGIApp
from easyrtc_server.options import Options
from support.ours import clients_of, serving_app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def serving_asgi(app: ASGIApp) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this event loop, on a socket listening before it starts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def auth(**msg_data: Any) -> dict[str, Any]:
    return {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta", **msg_data}}


def rooms(*names: str) -> dict[str, Any]:
    return {name: {"roomName": name} for name in names}


async def test_jwt_server_accepts_its_tokens_only() -> None:
    jwt_server = example("jwt_server")
    async with serving_app(jwt_server.build_app()) as url, clients_of(url, 3) as clients:
        alice, eve, bob = clients
        lobby = jwt_server.make_token("alice", rooms=["lobby"])
        token = await alice.login(credential={"token": lobby}, roomJoin=rooms("lobby"))
        assert list(token["msgData"]["roomData"]) == ["lobby"]
        members = token["msgData"]["roomData"]["lobby"]["clientList"]
        assert members[alice.easyrtcid]["username"] == "alice"

        forged = jwt_server.make_token("alice", secret="x" * 40)
        refused = await eve.call("easyrtcAuth", auth(credential={"token": forged}))
        assert refused["msgData"]["errorCode"] == "LOGIN_BAD_AUTH"
        no_token = await bob.call("easyrtcAuth", auth())
        assert no_token["msgData"]["errorCode"] == "LOGIN_BAD_AUTH"


async def test_custom_rules_allowlist_and_echo_bot() -> None:
    custom = example("custom_rules")
    async with serving_app(custom.build_app()) as url, clients_of(url, 3) as clients:
        a, b, outsider = clients
        await a.login(roomJoin=rooms("lobby"))
        await b.login(roomJoin=rooms("lobby"))
        refused = await outsider.call("easyrtcAuth", auth(roomJoin=rooms("secret")))
        assert refused["msgData"]["errorCode"] == "LOGIN_BAD_ROOM"
        denied = await a.cmd("roomJoin", msgData={"roomJoin": rooms("secret")})
        assert denied["msgData"]["errorCode"] == "MSG_REJECT_BAD_ROOM"
        joined = await a.cmd("roomJoin", msgData={"roomJoin": rooms("support")})
        assert joined["msgData"]["roomData"]["support"]["roomStatus"] == "join"

        echo = await a.call("easyrtcMsg", {"msgType": "hello", "msgData": {"n": 1}})
        assert echo == {"msgType": "hello", "msgData": {"n": 1}}
        stats = await b.next_msg()  # pushed to the sender's rooms, so b hears it too
        assert stats["msgType"] == "botStats" and stats["msgData"] == {"answered": 1}
        assert stats["targetRoom"] == "lobby"


async def test_fastapi_app_serves_easyrtc_files_and_its_own_routes() -> None:
    fastapi_mount = example("fastapi_mount")
    # python-socketio's polling client waits out a heartbeat when it disconnects: keep it short
    options = Options(ping_interval=1, ping_timeout=2)
    async with serving_asgi(fastapi_mount.build_app(options)) as url:
        async with clients_of(url, 1, transport="polling") as (polling,):
            await polling.login()
        async with clients_of(url, 2) as (a, b), aiohttp.ClientSession(url) as http:
            await a.login()
            await b.login()
            async with http.get("/api/rooms") as response:
                assert await response.json() == {"app": "default", "rooms": {"default": 2}}
            params = {"text": "hi", "room": "default"}
            async with http.post("/api/announce", params=params) as response:
                assert await response.json() == {"sent": 2}
            announcement = await b.next_msg()
            assert announcement["msgType"] == "announcement"
            assert announcement["msgData"] == {"text": "hi"}

        async with aiohttp.ClientSession(url) as http:
            for path in (
                "/easyrtc/easyrtc.js",
                "/socket.io/socket.io.js",
                "/easyrtc/easyrtc_resume.js",
            ):
                async with http.get(path) as response:
                    assert response.status == 200, path
                    assert response.content_type == "application/javascript"
                    assert len(await response.read()) > 10_000
            async with http.get("/demos", allow_redirects=False) as response:
                assert response.status == 302 and response.headers["Location"] == "/demos/"
            async with http.get("/demos/") as response:
                assert response.status == 200 and response.content_type == "text/html"
            for sneaky in ("/easyrtc/..%2f..%2fpackage.json", "/easyrtc/%2e%2e/package.json"):
                async with http.get(aiohttp.client.URL(sneaky, encoded=True)) as response:
                    assert response.status == 404, sneaky
            async with http.get("/nowhere") as response:
                assert response.status == 404  # FastAPI's answer


async def test_aiohttp_sub_application_under_a_path() -> None:
    mounted = example("aiohttp_mount")
    async with (
        serving_app(mounted.build_app()) as url,
        clients_of(url, 1, socketio_path="rtc/socket.io") as (client,),
        aiohttp.ClientSession(url) as http,
    ):
        await client.login()
        async with http.get("/") as response:
            assert await response.json() == {"easyrtc": "/rtc/", "rooms": {"default": 1}}
        async with http.get("/rtc/easyrtc/easyrtc.js") as response:
            assert response.status == 200
        async with http.get("/rtc/socket.io/socket.io.js") as response:
            assert response.status == 200
