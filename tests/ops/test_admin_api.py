"""The admin API: every endpoint with real socket.io clients, and its authentication."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from easyrtc_server.options import Options, OptionsError
from easyrtc_server.protocol import control
from support.client import TIMEOUT, Client

from .opskit import clients, served

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def admin(**options: Any) -> AsyncIterator[tuple[Any, str, aiohttp.ClientSession]]:
    async with (
        served(admin_token=TOKEN, **options) as (server, url),
        aiohttp.ClientSession(base_url=url, headers=AUTH) as http,
    ):
        yield server, url, http


async def _get(http: aiohttp.ClientSession, path: str) -> Any:
    async with http.get("/admin/api" + path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _next(client: Client, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while True:
        push = await client.next_cmd()
        if accept(push):
            return push


async def test_lists_applications_rooms_and_occupants() -> None:
    async with admin() as (server, url, http), clients(url, 2) as (alice, bob):
        await alice.login(username="alice", roomJoin={"lobby": {"roomName": "lobby"}})
        await bob.login(username="bob", applicationName="other")
        await alice.cmd("setPresence", msgData={"setPresence": {"show": "away", "status": "brb"}})
        await server.set_room_field("default", "lobby", "topic", "ops")

        apps = await _get(http, "/applications")
        assert apps == {
            "applications": [
                {"name": "default", "rooms": 2, "connections": 1},
                {"name": "other", "rooms": 1, "connections": 1},
            ]
        }
        rooms = await _get(http, "/applications/default/rooms")
        assert rooms == {
            "rooms": [
                {"name": "default", "members": 0, "fields": {}},
                {"name": "lobby", "members": 1, "fields": {"topic": "ops"}},
            ]
        }
        lobby = await _get(http, "/applications/default/rooms/lobby")
        (occupant,) = lobby["occupants"]
        since = datetime.fromisoformat(occupant.pop("connectedSince"))
        assert abs(since.timestamp() - datetime.now().timestamp()) < 60
        assert occupant == {
            "easyrtcid": alice.easyrtcid,
            "app": "default",
            "username": "alice",
            "presence": {"show": "away", "status": "brb"},
            "rooms": ["lobby"],
            "remoteAddress": "127.0.0.1",
            "transport": "websocket",
        }
        bob_seen = await _get(http, f"/connections/{bob.easyrtcid}")
        assert (bob_seen["app"], bob_seen["username"], bob_seen["rooms"]) == (
            "other",
            "bob",
            ["default"],
        )
        for missing in (
            "/applications/nope/rooms",
            "/applications/default/rooms/nope",
            "/connections/nope",
        ):
            async with http.get("/admin/api" + missing) as response:
                assert response.status == 404
                assert "error" in await response.json()


async def test_kick_makes_peers_see_remove_client() -> None:
    async with admin() as (_, url, http), clients(url, 2) as (alice, bob):
        await alice.login()
        await bob.login()
        await alice.next_cmd()  # bob joined
        async with http.delete(f"/admin/api/connections/{bob.easyrtcid}") as response:
            assert (response.status, await response.json()) == (200, {"disconnected": True})
        await asyncio.wait_for(bob.disconnected.wait(), TIMEOUT)
        removed = await _next(alice, lambda p: p["msgType"] == "roomData")
        delta = removed["msgData"]["roomData"]["default"]["clientListDelta"]
        assert list(delta["removeClient"]) == [bob.easyrtcid]
        async with http.delete(f"/admin/api/connections/{bob.easyrtcid}") as response:
            assert response.status == 404


async def test_messages_to_a_connection_a_room_and_a_group() -> None:
    async with admin() as (server, url, http), clients(url, 2) as (alice, bob):
        await alice.login()
        await bob.login()
        control.add_to_group(server.core, bob.easyrtcid, "vip")

        async def post(body: dict[str, Any]) -> tuple[int, Any]:
            async with http.post("/admin/api/messages", json=body) as response:
                return response.status, await response.json()

        sent = {"msgType": "notice", "msgData": {"n": 1}, "easyrtcid": alice.easyrtcid}
        assert await post(sent) == (200, {"recipients": 1})
        got = await alice.next_msg()
        assert (got["msgType"], got["msgData"]) == ("notice", {"n": 1})
        assert "senderEasyrtcid" not in got  # from the server

        assert await post({"msgType": "all", "room": "default", "app": "default"}) == (
            200,
            {"recipients": 2},
        )
        for client in (alice, bob):
            assert (await client.next_msg())["targetRoom"] == "default"
        assert await post({"msgType": "vip", "group": "vip"}) == (200, {"recipients": 1})
        assert (await bob.next_msg())["targetGroup"] == "vip"
        assert alice.msgs.empty()

        assert (await post({"msgType": "x", "room": "nope"}))[0] == 404
        for bad in (
            {"room": "default"},
            {"msgType": "", "room": "default"},
            {"msgType": "x"},
            {"msgType": "x", "room": "default", "group": "vip"},
            {"msgType": "x", "room": 3},
        ):
            status, body = await post(bad)
            assert status == 400 and "error" in body, bad
        async with http.post("/admin/api/messages", data=b"{not json") as response:
            assert response.status == 400


async def test_set_room_field_reaches_members() -> None:
    async with admin() as (_, url, http), clients(url, 1) as (alice,):
        await alice.login()
        path = "/admin/api/applications/default/rooms/default/fields/topic"
        async with http.put(path, json={"value": {"t": "hello"}}) as response:
            assert response.status == 200
            assert await response.json() == {
                "name": "topic",
                "value": {"t": "hello"},
                "shared": True,
            }
        push = await _next(alice, lambda p: "field" in p["msgData"]["roomData"]["default"])
        assert push["msgData"]["roomData"]["default"]["field"]["topic"]["fieldValue"] == {
            "t": "hello"
        }
        rooms = await _get(http, "/applications/default/rooms")
        assert rooms["rooms"][0]["fields"] == {"topic": {"t": "hello"}}
        async with http.put(path.replace("topic", "bad%20!name"), json={"value": 1}) as response:
            assert response.status == 400
        async with http.put(path, json={"shared": True}) as response:
            assert response.status == 400
        async with http.put(
            path.replace("/default/fields", "/nope/fields"), json={"value": 1}
        ) as r:
            assert r.status == 404


async def test_refused_without_or_with_a_wrong_token_and_never_cors() -> None:
    async with admin() as (_, url, _http), aiohttp.ClientSession(base_url=url) as anon:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            for method, path in (
                ("GET", "/admin/api/applications"),
                ("GET", "/admin/api/openapi.json"),
                ("DELETE", "/admin/api/connections/x"),
                ("POST", "/admin/api/messages"),
            ):
                async with anon.request(method, path, headers=headers) as response:
                    assert response.status == 401, (method, path, headers)
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
        origin = {"Origin": "https://evil.example", **AUTH}
        async with anon.get("/admin/api/applications", headers=origin) as response:
            assert response.status == 200
            assert not any(h.lower().startswith("access-control") for h in response.headers)
        async with anon.options(
            "/admin/api/applications",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        ) as response:
            assert response.status == 405
            assert not any(h.lower().startswith("access-control") for h in response.headers)


async def test_off_without_a_token() -> None:
    async with served() as (_, url), aiohttp.ClientSession(base_url=url) as http:
        for path in ("/admin/api/applications", "/admin/api/openapi.json", "/admin/"):
            async with http.get(path, headers=AUTH) as response:
                assert response.status == 404


async def test_openapi_document_and_the_dashboard_page_are_served() -> None:
    async with admin() as (_, _url, http):
        document = await _get(http, "/openapi.json")
        async with http.get("/admin", allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (308, "admin/")
        async with http.get("/admin/", headers={"Authorization": ""}) as response:
            assert response.status == 200  # the page itself holds no secret
            assert "<title>EasyRTC admin</title>" in await response.text()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/applications",
        "/applications/{app}/rooms",
        "/applications/{app}/rooms/{room}",
        "/applications/{app}/rooms/{room}/fields/{field}",
        "/connections/{easyrtcid}",
        "/messages",
    }


async def test_no_page_can_frame_the_dashboard_or_the_api() -> None:
    async with admin() as (_, _url, http):
        for path in ("/admin/", "/admin/api/applications", "/admin/static/admin.js"):
            async with http.get(path) as response:
                assert response.status == 200, path
                assert response.headers["X-Frame-Options"] == "DENY", path
                assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"


def test_a_short_admin_token_is_refused_with_its_minimum() -> None:
    with pytest.raises(OptionsError) as refused:
        Options(admin_token="s3cret")
    assert str(refused.value) == (
        "option 'admin_token' is 6 characters long: it needs at least 20 "
        "(e.g. the output of `openssl rand -hex 32`)"
    )
    assert Options(admin_token="x" * 20).admin_token == "x" * 20
