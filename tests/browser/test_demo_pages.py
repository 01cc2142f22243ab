"""Every demo page loads, connects and stays free of console errors; the index links to all."""

from __future__ import annotations

import pytest
from browserkit import Demos
from playwright.async_api import expect

DEMO_PAGES = ["video.html", "multiparty.html", "datachannel.html", "chat.html"]


async def test_index_links_to_every_demo(demos: Demos) -> None:
    index = await demos.open("")
    await index.page.goto(demos.server + "/")  # the root leads to the demos too

    links = index.page.locator("#demos a")
    hrefs = await links.evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
    assert sorted(hrefs) == sorted(DEMO_PAGES)
    for href in DEMO_PAGES:
        response = await index.page.request.get(f"{demos.server}/demos/{href}")
        assert response.ok, href
    await demos.screenshot(index, "index.png")
    assert demos.errors() == {}


@pytest.mark.parametrize("path", DEMO_PAGES)
async def test_demo_page_connects_without_console_errors(demos: Demos, path: str) -> None:
    page = await demos.open(path, name="solo")

    await page.my_id()
    await expect(page.page.locator("#status")).to_contain_text("Connected")
    await demos.screenshot(page, f"page-{path.removesuffix('.html')}.png")
    assert demos.errors() == {}
