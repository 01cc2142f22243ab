"""The admin dashboard in headless Chromium, next to two chat demo pages."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from .opskit import served

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ours"
TOKEN = "dashboard-token-0123456789"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

expect.set_options(timeout=15_000)


@pytest.fixture
def chromium() -> str:
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Chromium not found: `apt-get install -y chromium` or set $CHROMIUM")
    return executable


@pytest_asyncio.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _page(browser: Browser, url: str) -> Page:
    context = await browser.new_context(viewport={"width": 1100, "height": 700})
    page = await context.new_page()
    await page.goto(url)
    return page


async def _chat(browser: Browser, base: str, name: str) -> tuple[Page, str]:
    page = await _page(browser, f"{base}/demos/chat.html?name={name}&ice=none")
    await expect(page.locator("body")).to_have_attribute("data-state", "connected")
    easyrtcid = await page.locator("#my-id").get_attribute("data-easyrtcid")
    assert easyrtcid
    return page, easyrtcid


async def test_dashboard_lists_updates_messages_and_kicks(browser: Browser) -> None:
    async with served(admin_token=TOKEN) as (_, url):
        alice, alice_id = await _chat(browser, url, "alice")
        bob, bob_id = await _chat(browser, url, "bob")
        await alice.evaluate(
            """() => { window.fromServer = [];
                easyrtc.setServerListener((t, d) => window.fromServer.push([t, d])); }"""
        )

        admin = await _page(browser, url + "/admin/")
        await expect(admin.locator("body")).to_have_attribute("data-state", "signed-out")
        await admin.fill("#token", "not-the-token")
        await admin.locator("#sign-in button").click()
        await expect(admin.locator("#status")).to_have_text("The token was refused.")
        await admin.fill("#token", TOKEN)
        await admin.locator("#sign-in button").click()
        await expect(admin.locator("body")).to_have_attribute("data-state", "signed-in")

        room = admin.locator('[data-app="easyrtc.demo.chat"] article[data-room="default"]')
        alice_item = room.locator(f'li[data-easyrtcid="{alice_id}"]')
        bob_item = room.locator(f'li[data-easyrtcid="{bob_id}"]')
        await expect(alice_item.locator(".who")).to_have_text("alice")
        await expect(bob_item.locator(".who")).to_have_text("bob")
        await expect(bob_item).to_have_attribute("data-show", "chat")
        await expect(alice_item.locator(".meta")).to_contain_text("127.0.0.1")

        # presence changes on a demo page show up without reloading
        await bob.select_option("#show", "away")
        await bob.fill("#status-text", "at lunch")
        await bob.locator("#set-presence").click()
        await expect(bob_item).to_have_attribute("data-show", "away")
        await expect(bob_item.locator(".presence")).to_have_text("away \u2014 at lunch")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await admin.screenshot(path=ARTIFACTS / "admin-dashboard.png", full_page=True)

        # a server message to alice
        await alice_item.locator("button.message").click()
        await admin.fill("#message-type", "notice")
        await admin.fill("#message-data", '{"text": "maintenance at 5"}')
        await admin.locator("#message-send").click()
        await expect(admin.locator("#message-result")).to_have_text("Sent to 1 connection(s).")
        received = await alice.wait_for_function("() => window.fromServer.length > 0")
        assert await received.json_value()
        assert await alice.evaluate("() => window.fromServer") == [
            ["notice", {"text": "maintenance at 5"}]
        ]

        # kick bob: the dashboard and alice's page both drop him
        await bob_item.locator("button.kick").click()
        await expect(bob_item).to_have_count(0)
        await expect(alice.locator(f'#people li[data-easyrtcid="{bob_id}"]')).to_have_count(0)
        await expect(bob.locator("body")).not_to_have_attribute("data-state", "connected")

        # alice closes her tab: she leaves, and the application (made by the demo) goes with her
        await alice.context.close()
        await expect(alice_item).to_have_count(0)
        await expect(admin.locator('[data-app="easyrtc.demo.chat"]')).to_have_count(0)
        await expect(admin.locator('[data-app="default"] .empty')).to_have_text("nobody here")
        await admin.screenshot(path=ARTIFACTS / "admin-dashboard-empty.png", full_page=True)

        # the token lives in the tab's sessionStorage, never in what the server sent
        html = await admin.evaluate("() => document.documentElement.outerHTML")
        assert TOKEN not in html
        stored = await admin.evaluate("() => sessionStorage.getItem('easyrtc-admin-token')")
        assert stored == TOKEN
        await admin.locator("#sign-out").click()
        await expect(admin.locator("body")).to_have_attribute("data-state", "signed-out")
        assert await admin.evaluate("() => sessionStorage.length") == 0
        await bob.context.close()
        await admin.context.close()
