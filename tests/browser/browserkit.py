"""Helpers for the browser tests: where things are, how Chromium runs, and demo page handles.

Kept out of ``conftest.py`` so that test modules can import them (``from browserkit import ...``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Locator, Page, expect

from easyrtc_server.events import Listener
from easyrtc_server.protocol.core import Peer
from easyrtc_server.protocol.outcome import Outcome, Push
from easyrtc_server.transport import Link

ROOT = Path(__file__).resolve().parents[2]
DEMOS_DIR = ROOT / "src" / "easyrtc_server" / "demos"
ARTIFACTS = ROOT / "test-artifacts"

TIMEOUT_MS = 15_000  # for every wait on the pages; a healthy run needs a second or two

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream=fps=15",  # fewer frames to encode: 2-core CI
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

expect.set_options(timeout=TIMEOUT_MS)

# Init script: easyrtc.js logs what it does (signals sent and received, data channel events) to
# the console from the moment it loads, so a failed test's page logs tell the whole story.
EASYRTC_DEBUG = """(() => {
  // Composes with a watch already on ``window.easyrtc`` (ERROR_WATCH, added before this one).
  const previous = Object.getOwnPropertyDescriptor(window, "easyrtc");
  let client;
  Object.defineProperty(window, "easyrtc", {
    configurable: true,
    get() { return previous && previous.get ? previous.get() : client; },
    set(value) {
      if (previous && previous.set) previous.set(value);
      else client = value;
      if (value && typeof value.enableDebug === "function") {
        value.enableDebug(true);
      }
    },
  });
})();"""

# Init script: every error easyrtc.js shows the user (``easyrtc.showError``, whose default puts
# the "Error messages" box, ``#easyrtcErrorDialog``, on the page) and every ``alert`` is also
# noted in ``window.__errorsShown``; the dialog itself still appears, as for a user.
ERROR_WATCH = """(() => {
  window.__errorsShown = [];
  const alert = window.alert;
  window.alert = function (message) {
    window.__errorsShown.push(`alert: ${message}`);
    return alert.apply(this, arguments);
  };
  let client;
  Object.defineProperty(window, "easyrtc", {
    configurable: true,
    get() { return client; },
    set(value) {
      client = value;
      if (value && typeof value.showError === "function" && !value.showError.watched) {
        const show = value.showError;
        value.showError = function (code, text) {
          window.__errorsShown.push(`${code}: ${text}`);
          return show.apply(this, arguments);
        };
        value.showError.watched = true;
      }
    },
  });
})();"""

# JavaScript run in a page: the errors shown to the user so far (ERROR_WATCH, the error box).
ERRORS_SHOWN = """() => {
  const shown = [...(window.__errorsShown || [])];
  const box = document.getElementById("easyrtcErrorDialog");
  if (box && box.offsetParent !== null && !shown.length) shown.push("box: " + box.innerText);
  return shown;
}"""

# JavaScript run in a page: the state of the RTCPeerConnection to one peer ("none" if absent).
PEER_CONNECTION_STATE = """(peer) => {
    const pc = easyrtc.getPeerConnectionByUserId(peer);
    return pc ? pc.connectionState : "none";
}"""

# JavaScript run in a page: does this <video> show a live remote stream?
VIDEO_PLAYS = """(video) => video.videoWidth > 0 && video.srcObject !== null
    && video.srcObject.getVideoTracks().some((track) => track.readyState === "live")"""


class ServerLog(Listener):
    """What our server sent to whom, one line per push: saved with a failed test's page logs."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._start = time.monotonic()

    def _line(self, text: str) -> None:
        self.lines.append(f"{time.monotonic() - self._start:9.3f} {text}")

    def opened(self, peer: Peer, link: Link) -> None:
        self._line(f"{peer.easyrtcid} connected")

    def sent(self, out: Outcome) -> None:
        for send in out.sends:
            if isinstance(send, Push):
                body = send.body
                msg_type = body.get("msgType") if isinstance(body, dict) else None
                sender = body.get("senderEasyrtcid") if isinstance(body, dict) else None
                origin = f" from {sender}" if sender else ""
                self._line(f"{send.to} <- {send.event} {msg_type}{origin}")

    def closed(self, peer: Peer, reason: str) -> None:
        self._line(f"{peer.easyrtcid} closed {reason}".rstrip())


class DemoPage:
    """One open demo page, plus every console error and uncaught exception it produced."""

    def __init__(self, page: Page, label: str) -> None:
        self.page = page
        self.label = label
        self.errors: list[str] = []
        self.log: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        self.log.append(f"{message.type}: {message.text}")
        if message.type == "error":
            self.errors.append(message.text)

    def _on_page_error(self, error: Exception) -> None:
        self.log.append(f"uncaught: {error}")
        self.errors.append(f"uncaught: {error}")

    async def my_id(self) -> str:
        """The page's easyrtcid, once it is connected and in its room."""
        await expect(self.page.locator("body")).to_have_attribute("data-state", "connected")
        easyrtcid = await self.page.locator("#my-id").get_attribute("data-easyrtcid")
        assert easyrtcid
        return easyrtcid

    def peer(self, easyrtcid: str, within: str = "#peers") -> Locator:
        """The list entry of another client in this page's list ``within``."""
        return self.page.locator(f'{within} li[data-easyrtcid="{easyrtcid}"]')

    async def wait_connected_to(self, peer: str) -> None:
        """Wait until this page's RTCPeerConnection to ``peer`` is ``connected``."""
        await self.page.wait_for_function(
            f"(peer) => ({PEER_CONNECTION_STATE})(peer) === 'connected'", arg=peer
        )

    async def wait_video_plays(self, video: Locator) -> None:
        """Wait until ``video`` shows a live stream with a picture size."""
        element = await video.element_handle()
        await self.page.wait_for_function(VIDEO_PLAYS, arg=element)


class Demos:
    """Opens demo pages on the server under test, each in its own browser context."""

    def __init__(
        self, browser: Browser, server: str, server_kind: str, server_log: ServerLog | None = None
    ) -> None:
        self.browser = browser
        self.server = server
        self.server_kind = server_kind
        self.server_log = server_log
        self.pages: list[DemoPage] = []
        self.opened = 0
        self.context_setup: list[Callable[[BrowserContext], Awaitable[None]]] = []
        """Run on every new page's context before it loads (e.g. ``context.route(...)``)."""

    async def open(self, path: str, **query: str) -> DemoPage:
        """Open ``/demos/PATH?QUERY``; peer connections use host candidates only (``ice=none``)."""
        query.setdefault("ice", "none")
        self.opened += 1
        label = f"{self.opened}-{Path(path).stem or 'index'}-{query.get('name', '')}".rstrip("-")
        context = await self.browser.new_context(viewport={"width": 1100, "height": 760})
        context.set_default_timeout(TIMEOUT_MS)
        await context.add_init_script(EASYRTC_DEBUG)
        for setup in self.context_setup:
            await setup(context)
        page = DemoPage(await context.new_page(), label)
        self.pages.append(page)
        await page.page.goto(f"{self.server}/demos/{path}?{urlencode(query)}")
        return page

    async def open_many(self, path: str, *names: str, **query: str) -> list[DemoPage]:
        """Open ``path`` once per username, all at the same time."""
        return list(await asyncio.gather(*(self.open(path, name=n, **query) for n in names)))

    async def close(self, page: DemoPage) -> None:
        """Close a page (the way a user closes a tab) and forget it."""
        self.pages.remove(page)
        await page.page.context.close()

    async def close_all(self) -> None:
        for page in list(self.pages):
            await self.close(page)

    async def screenshot(self, page: DemoPage, name: str) -> Path:
        """Save a screenshot as ``test-artifacts/<server>/<name>``."""
        path = ARTIFACTS / self.server_kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        await page.page.screenshot(path=path, full_page=True)
        return path

    def errors(self) -> dict[str, list[str]]:
        """Console errors and uncaught exceptions, by page, of the pages that had any."""
        return {page.label: page.errors for page in self.pages if page.errors}

    async def save_failure(self, test_name: str) -> None:
        """Screenshots and console logs of every open page (and what our server sent), for a
        failed test."""
        folder = ARTIFACTS / "failures" / re.sub(r"[^\w.-]+", "_", test_name)
        folder.mkdir(parents=True, exist_ok=True)
        if self.server_log is not None:
            (folder / "server.log").write_text("\n".join(self.server_log.lines) + "\n")
        for page in self.pages:
            (folder / f"{page.label}.log").write_text("\n".join(page.log) + "\n")
            if not page.page.is_closed():
                await page.page.screenshot(path=folder / f"{page.label}.png", full_page=True)
