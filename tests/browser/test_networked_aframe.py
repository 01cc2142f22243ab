"""networked-aframe 0.14.3 (A-Frame 1.7.1), a real third-party EasyRTC app, against our server.

Two Chromium pages of a minimal scene (``apps/naf-scene.html``: one avatar per page, owned and
moved by it), with each of NAF's EasyRTC adapters: ``easyrtc`` (entity updates over data
channels) and ``wseasyrtc`` (NAF's default: relayed by the server). Each page shows the other's
avatar and sees it move; it goes away when its page closes; and no page shows an error, over
repeated loads. The bundles come from the npm tarballs of the exact versions in
``apps/packages.txt`` (``script/fetch-apps``, run by ``script/setup --test``).

A-Frame needs WebGL: the module's own Chromium renders on SwiftShader. Ours only: the
reference shows networked-aframe a MSG_REJECT_TARGET_ROOM dialog in a race of its own making
(README, Compatibility).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from browserkit import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    EASYRTC_DEBUG,
    ERROR_WATCH,
    ERRORS_SHOWN,
    TIMEOUT_MS,
    DemoPage,
    ServerLog,
)
from playwright.async_api import Browser, Dialog, async_playwright

from easyrtc_server.app import create_app
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.ours import serving_app

APPS_DIR = Path(__file__).parent / "apps"
BUNDLES = (
    APPS_DIR / "vendor" / "aframe" / "dist" / "aframe-v1.7.1.min.js",
    APPS_DIR / "vendor" / "networked-aframe" / "dist" / "networked-aframe.min.js",
)
GL_ARGS = [
    *(arg for arg in CHROMIUM_ARGS if arg != "--disable-gpu"),
    "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
]
LOADS = 2  # page pairs per adapter (fresh pages); the old dialogs showed on 5 to 8 pages of 8
_rooms = itertools.count()
GONE_WITHIN_MS = 45_000
"""How long a closed page's avatar may stay on the other page (see the test)."""

# JavaScript run in a page: x of the avatar owned by ``owner`` (null while there is none).
AVATAR_X = """(owner) => {
  const el = [...document.querySelectorAll("[networked]")].find(
    (e) => e.components.networked && e.components.networked.data.owner === owner);
  return el ? el.object3D.position.x : null;
}"""
# JavaScript run in a page: what its NAF knows of the others, for a failed test's logs.
OPEN_CHANNEL = "(o) => NAF.connection.activeDataChannels[o] === true"
"""NAF has the data channel to client ``o`` open (its ``dataChannelOpen``)."""
NAF_STATE = """() => ({
  me: NAF.clientId,
  occupants: Object.keys(NAF.connection.connectedClients || {}),
  dataChannels: NAF.connection.activeDataChannels,
  entities: Object.keys(NAF.entities.entities),
  time: Date.now(),
})"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gl_browser(chromium: str) -> AsyncIterator[Browser]:
    """One Chromium with WebGL (SwiftShader) for the module."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=GL_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def scene_server(options: Options, log: ServerLog) -> AsyncIterator[str]:
    missing = [str(path) for path in BUNDLES if not path.is_file()]
    if missing:
        pytest.fail(f"missing {missing}: run script/setup --test (or script/fetch-apps)")
    server = EasyRtcServer(options)
    server.events.add(log)
    async with serving_app(create_app(server=server)) as url:
        yield url


@pytest.fixture(scope="module")
def naf_log() -> ServerLog:
    return ServerLog()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def naf_server(naf_log: ServerLog) -> AsyncIterator[str]:
    """Our server, with the scene and the bundles at ``/demos/`` (``demos_dir``)."""
    async for url in scene_server(Options(demos_dir=APPS_DIR), naf_log):
        yield url


class Scene:
    """Open scene pages; each page's dialogs (alert, confirm) are noted and dismissed."""

    def __init__(self, browser: Browser, server: str, log: ServerLog | None = None) -> None:
        self.browser, self.server, self.log = browser, server, log
        self.pages: list[DemoPage] = []
        self.closed: list[DemoPage] = []
        self.dialogs: list[str] = []

    async def open(self, adapter: str, room: str) -> DemoPage:
        context = await self.browser.new_context(viewport={"width": 480, "height": 320})
        context.set_default_timeout(TIMEOUT_MS)
        await context.add_init_script(ERROR_WATCH)
        await context.add_init_script(EASYRTC_DEBUG)
        page = DemoPage(await context.new_page(), f"{len(self.pages) + 1}-{adapter}")
        page.page.on("dialog", self._on_dialog)
        self.pages.append(page)
        await page.page.goto(f"{self.server}/demos/naf-scene.html?adapter={adapter}&room={room}")
        return page

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    async def close(self, page: DemoPage) -> None:
        self.pages.remove(page)
        self.closed.append(page)
        await page.page.context.close()

    async def save_failure(self, name: str) -> Path:
        """Every page's console (easyrtc.js debug on), what each open page's NAF holds of the
        others, and what the server sent: for a failed test."""
        folder = ARTIFACTS / "failures" / name
        folder.mkdir(parents=True, exist_ok=True)
        if self.log is not None:
            (folder / "server.log").write_text("\n".join(self.log.lines) + "\n")
        for page in [*self.pages, *self.closed]:
            lines = list(page.log)
            if not page.page.is_closed():
                lines.append("NAF now: " + str(await page.page.evaluate(NAF_STATE)))
            (folder / f"{page.label}.log").write_text("\n".join(lines) + "\n")
        return folder

    async def errors_shown(self) -> dict[str, list[str]]:
        """What each open page showed its user as an error (and any page's dialogs)."""
        shown = {page.label: await page.page.evaluate(ERRORS_SHOWN) for page in self.pages}
        if self.dialogs:
            shown["dialogs"] = self.dialogs
        return {label: errors for label, errors in shown.items() if errors}


@pytest_asyncio.fixture(loop_scope="session")
async def scene(gl_browser: Browser, naf_server: str, naf_log: ServerLog) -> AsyncIterator[Scene]:
    scene = Scene(gl_browser, naf_server, naf_log)
    yield scene
    for page in list(scene.pages):
        await scene.close(page)


@pytest_asyncio.fixture(loop_scope="session")
async def strict_scene(gl_browser: Browser) -> AsyncIterator[Scene]:
    """The scene on a server of its own with ``strict_errors``."""
    async for url in scene_server(Options(demos_dir=APPS_DIR, strict_errors=True), ServerLog()):
        scene = Scene(gl_browser, url)
        yield scene
        for page in list(scene.pages):
            await scene.close(page)


async def client_id(page: DemoPage) -> str:
    """NAF's client id: set once the page is connected and in its room."""
    handle = await page.page.wait_for_function("() => window.NAF && NAF.clientId")
    return str(await handle.json_value())


async def wait_avatar_moves(page: DemoPage, owner: str) -> None:
    """``page`` shows the avatar of ``owner``, and it moves."""
    handle = await page.page.wait_for_function(f"(o) => ({AVATAR_X})(o) !== null", arg=owner)
    await handle.dispose()
    first = await page.page.evaluate(AVATAR_X, owner)
    await page.page.wait_for_function(
        f"([o, x]) => {{ const now = ({AVATAR_X})(o); return now !== null && now !== x; }}",
        arg=[owner, first],
    )


@pytest.mark.parametrize("load", range(LOADS), ids=lambda n: f"load{n + 1}")
@pytest.mark.parametrize("adapter", ["easyrtc", "wseasyrtc"])
async def test_two_pages_see_each_other_move_and_no_error_is_shown(
    scene: Scene, adapter: str, load: int
) -> None:
    room = f"naf{next(_rooms)}"
    alice, bob = await asyncio.gather(scene.open(adapter, room), scene.open(adapter, room))
    alice_id, bob_id = await client_id(alice), await client_id(bob)

    await wait_avatar_moves(alice, bob_id)
    await wait_avatar_moves(bob, alice_id)
    if adapter == "easyrtc":
        # NAF removes a client's entities when its data channel closes; until the channel is
        # open the updates travel through the server (NAF's fallback), and a peer that leaves
        # before it opened leaves its avatar behind on the other page, whatever the server (a
        # NAF limitation; a loaded CI machine closed Bob 0.1 s after ICE connected). A user's
        # page is open for longer than that: wait for the channels, as a user would have.
        await alice.page.wait_for_function(OPEN_CHANNEL, arg=bob_id)
        await bob.page.wait_for_function(OPEN_CHANNEL, arg=alice_id)

    await scene.close(bob)
    try:
        # Within a second when the page says goodbye; the bound also covers a page that
        # vanished without a word (the server's ping timeout, 15 s, and ICE's consent check).
        await alice.page.wait_for_function(
            f"(o) => ({AVATAR_X})(o) === null", arg=bob_id, timeout=GONE_WITHIN_MS
        )
    except BaseException:
        await scene.save_failure(f"naf-{adapter}-load{load + 1}")
        raise
    assert await scene.errors_shown() == {}


async def test_strict_errors_show_networked_aframe_its_dialogs(strict_scene: Scene) -> None:
    """What the default spares NAF's users (and what this module would catch): with
    ``strict_errors`` the updates it sends before its login get MSG_REJECT_NO_AUTH, and those it
    sends between its token and its roomJoin MSG_REJECT_TARGET_ROOM (as from the reference),
    each one shown in easyrtc.js's error box."""
    room = f"naf{next(_rooms)}"
    pages = await asyncio.gather(*(strict_scene.open("wseasyrtc", room) for _ in range(2)))
    for page in pages:
        await client_id(page)  # connected: every answer to what it sent before has arrived
    shown = await strict_scene.errors_shown()
    codes = {error.split(":")[0] for errors in shown.values() for error in errors}
    assert codes & {"MSG_REJECT_NO_AUTH", "MSG_REJECT_TARGET_ROOM"}, shown
    boxes = [await page.page.locator("#easyrtcErrorDialog").count() for page in pages]
    assert sum(boxes) >= 1  # the box a user sees
