"""Older EasyRTC apps: the demo pages running the easyrtc.js of open-easyrtc 2.0.20 on
socket.io-client 2.4, which speaks Engine.IO 3.

Our server serves both files itself (options ``client_dir`` and ``socketio_js``). The reference
serves its own socket.io 4 bundle and 2.1.8 client, so for it the pages get the legacy files by
route interception; its socket.io server accepts Engine.IO 3 (``allowEIO3`` in server.js).
Every page checks what it really runs: the bytes of both scripts, ``io.protocol`` (4 for
socket.io-client 2.x) and ``EIO=3`` on every Engine.IO request and on the WebSocket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from browserkit import ROOT, DemoPage, Demos
from playwright.async_api import BrowserContext, Page, Request, Response, Route, WebSocket, expect

LEGACY_API = ROOT / "node_modules" / "open-easyrtc-v2" / "api"
LEGACY_SOCKETIO = ROOT / "node_modules" / "socket.io-client-v2" / "dist" / "socket.io.js"
SCRIPTS = {
    "/easyrtc/easyrtc.js": LEGACY_API / "easyrtc.js",
    "/socket.io/socket.io.js": LEGACY_SOCKETIO,
}


def test_the_legacy_client_files_are_installed() -> None:
    """``script/setup`` installs the npm devDependencies these tests serve."""
    missing = [str(path) for path in SCRIPTS.values() if not path.is_file()]
    assert not missing, f"run `npm ci`: missing {missing}"


# JavaScript run in a page: what the socket.io connection of easyrtc really is.
ENGINE_INFO = """() => {
    const engine = easyrtc.webSocket.io.engine;
    return {
        socketioProtocol: io.protocol,
        eio: String(engine.transport.query.EIO),
        transport: engine.transport.name,
    };
}"""


@pytest.fixture
def server_options(server_kind: str) -> dict[str, Any]:
    """Ours serves the legacy files itself; the reference cannot be told to."""
    if server_kind == "ours":
        return {
            "client_dir": str(LEGACY_API),
            "socketio_js": str(LEGACY_SOCKETIO),
            "ping_interval": 1.0,  # Engine.IO 3 heartbeats come from the client: see them soon
        }
    return {}


class Wire:
    """Everything the pages fetched from the server: Engine.IO requests, WebSockets, scripts."""

    def __init__(self, server_kind: str) -> None:
        self.server_kind = server_kind
        self.engine_urls: list[str] = []
        self.websocket_urls: list[str] = []
        self.websockets: dict[Page, WebSocket] = {}
        self.scripts: list[Response] = []

    async def setup(self, context: BrowserContext) -> None:
        if self.server_kind == "reference":
            for path, file in SCRIPTS.items():
                await context.route(f"**{path}", _fulfill_from(file))
        context.on("request", self._on_request)
        context.on("response", self._on_response)
        context.on("page", self._on_page)

    def _on_request(self, request: Request) -> None:
        if urlsplit(request.url).path == "/socket.io/":
            self.engine_urls.append(request.url)

    def _on_response(self, response: Response) -> None:
        if urlsplit(response.url).path in SCRIPTS:
            self.scripts.append(response)

    def _on_page(self, page: Page) -> None:
        def on_websocket(websocket: WebSocket) -> None:
            self.websocket_urls.append(websocket.url)
            self.websockets[page] = websocket

        page.on("websocket", on_websocket)

    async def heartbeats(self, page: DemoPage, count: int) -> None:
        """Wait until the page's WebSocket has carried ``count`` more Engine.IO 3 heartbeats.
        In Engine.IO 3 the client pings (``2``) and the server answers (``3``); a server never
        sends ``3`` unasked, so each pong received is one heartbeat."""
        websocket = self.websockets[page.page]
        for _ in range(count):
            async with websocket.expect_event("framereceived", lambda frame: frame == "3"):
                pass

    async def check_legacy(self, *pages: DemoPage) -> None:
        """Each page runs the 2.0.20 client on socket.io-client 2.4, upgraded to a WebSocket,
        and nothing on the wire spoke anything but Engine.IO 3."""
        for page in pages:
            await page.page.wait_for_function(
                "() => easyrtc.webSocket && easyrtc.webSocket.io.engine.transport.name"
                " === 'websocket'"
            )
            info = await page.page.evaluate(ENGINE_INFO)
            assert info == {"socketioProtocol": 4, "eio": "3", "transport": "websocket"}
        assert len(self.scripts) == len(SCRIPTS) * len(pages)
        for response in self.scripts:
            assert response.ok
            assert await response.body() == SCRIPTS[urlsplit(response.url).path].read_bytes()
        assert len(self.websocket_urls) >= len(pages)
        assert self.engine_urls
        for url in self.engine_urls + self.websocket_urls:
            assert parse_qs(urlsplit(url).query).get("EIO") == ["3"], url


def _fulfill_from(file: Path) -> Callable[[Route], Awaitable[None]]:
    async def fulfill(route: Route) -> None:
        await route.fulfill(path=file, content_type="application/javascript")

    return fulfill


@pytest.fixture
def wire(demos: Demos, server_kind: str) -> Wire:
    """Watches (and, for the reference, supplies) what every page of ``demos`` loads."""
    wire = Wire(server_kind)
    demos.context_setup.append(wire.setup)
    return wire


async def test_chat_over_engineio_3(demos: Demos, wire: Wire) -> None:
    alice, bob = await demos.open_many("chat.html", "alice", "bob")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await wire.check_legacy(alice, bob)
    await expect(alice.peer(bob_id, within="#people")).to_contain_text("bob")
    await expect(bob.peer(alice_id, within="#people")).to_contain_text("alice")

    # relayed by the server: to one peer, then to the room
    await alice.page.select_option("#target", f"peer:{bob_id}")
    await alice.page.fill("#message", "just for bob")
    await alice.page.locator("#send").click()
    direct = bob.page.locator(f'#messages li[data-from="{alice_id}"]:not([data-room])')
    await expect(direct.locator(".text")).to_have_text("just for bob")

    await bob.page.select_option("#target", "room:default")
    await bob.page.fill("#message", "hello room")
    await bob.page.locator("#send").click()
    to_room = alice.page.locator(f'#messages li[data-from="{bob_id}"][data-room="default"]')
    await expect(to_room.locator(".text")).to_have_text("hello room")

    await demos.close(bob)
    await expect(alice.peer(bob_id, within="#people")).to_have_count(0)
    assert demos.errors() == {}


async def test_data_channel_over_engineio_3(demos: Demos, wire: Wire) -> None:
    alice, bob = await demos.open_many("datachannel.html", "alice", "bob")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await wire.check_legacy(alice, bob)

    await alice.peer(bob_id).get_by_role("button", name="Connect").click()
    await expect(alice.peer(bob_id)).to_have_attribute("data-channel", "open")
    await expect(bob.peer(alice_id)).to_have_attribute("data-channel", "open")
    await alice.wait_connected_to(bob_id)
    await bob.wait_connected_to(alice_id)

    await bob.page.select_option("#target", alice_id)
    await bob.page.fill("#message", "over the channel")
    await bob.page.get_by_role("button", name="Send").click()
    received = alice.page.locator(f'#messages li[data-from="{bob_id}"]')
    await expect(received.locator(".text")).to_have_text("over the channel")
    await expect(received).to_have_attribute("data-via", "datachannel")

    await demos.close(bob)
    await expect(alice.peer(bob_id)).to_have_count(0)
    assert demos.errors() == {}


async def test_video_call_over_engineio_3(demos: Demos, wire: Wire) -> None:
    alice, bob = await demos.open_many("video.html", "alice", "bob")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await wire.check_legacy(alice, bob)

    await alice.peer(bob_id).get_by_role("button", name="Call").click()
    await expect(bob.page.locator("#incoming")).to_be_visible()
    await bob.page.get_by_role("button", name="Accept").click()
    for page, other in ((alice, bob_id), (bob, alice_id)):
        await expect(page.page.locator("#call")).to_have_attribute("data-state", "connected")
        await page.wait_connected_to(other)
        await page.wait_video_plays(page.page.locator("#remote-video"))

    # the 2.0.x client hangs up with its own code path (no "reject" message yet)
    await bob.page.get_by_role("button", name="Hang up").click()
    await expect(alice.page.locator("#call")).to_have_attribute("data-state", "idle")
    await expect(bob.page.locator("#call")).to_have_attribute("data-state", "idle")

    # called again, then the callee's tab closes during the call
    await bob.peer(alice_id).get_by_role("button", name="Call").click()
    await expect(alice.page.locator("#incoming")).to_be_visible()
    await alice.page.get_by_role("button", name="Accept").click()
    await alice.wait_connected_to(bob_id)
    await demos.close(bob)
    await expect(alice.peer(bob_id)).to_have_count(0)
    await expect(alice.page.locator("#call")).to_have_attribute("data-state", "idle")
    assert demos.errors() == {}


async def test_heartbeats_then_explicit_disconnect(demos: Demos, wire: Wire) -> None:
    alice, bob = await demos.open_many("chat.html", "alice", "bob")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await wire.check_legacy(alice, bob)
    await expect(alice.peer(bob_id, within="#people")).to_be_visible()

    await wire.heartbeats(bob, 2)
    await bob.page.select_option("#target", f"peer:{alice_id}")
    await bob.page.fill("#message", "still here")
    await bob.page.locator("#send").click()
    received = alice.page.locator(f'#messages li[data-from="{bob_id}"]')
    await expect(received.locator(".text")).to_have_text("still here")

    await bob.page.evaluate("() => easyrtc.disconnect()")
    await expect(bob.page.locator("body")).to_have_attribute("data-state", "disconnected")
    await expect(alice.peer(bob_id, within="#people")).to_have_count(0)
    await expect(alice.page.locator("body")).to_have_attribute("data-state", "connected")
    assert demos.errors() == {}
