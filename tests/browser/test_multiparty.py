"""The multi-party page: everyone in the room gets connected to everyone, with video."""

from __future__ import annotations

from browserkit import Demos
from playwright.async_api import expect


async def test_three_pages_connect_each_to_each(demos: Demos) -> None:
    pages = await demos.open_many("multiparty.html", "ann", "ben", "cat", room="party")
    ids = [await page.my_id() for page in pages]

    for page, me in zip(pages, ids, strict=True):
        others = [other for other in ids if other != me]
        for other in others:
            await expect(page.peer(other)).to_have_attribute("data-link", "connected")
            await page.wait_connected_to(other)
            await page.wait_video_plays(
                page.page.locator(f'#grid [data-easyrtcid="{other}"] video')
            )
        await expect(page.page.locator("#grid figure[data-easyrtcid]")).to_have_count(2)
    await demos.screenshot(pages[0], "multiparty.png")
    assert demos.errors() == {}


async def test_leaving_participant_disappears_from_the_grid(demos: Demos) -> None:
    ann, ben = await demos.open_many("multiparty.html", "ann", "ben", room="party")
    ann_id, ben_id = await ann.my_id(), await ben.my_id()
    await expect(ann.peer(ben_id)).to_have_attribute("data-link", "connected")
    await expect(ben.peer(ann_id)).to_have_attribute("data-link", "connected")

    await demos.close(ben)

    await expect(ann.peer(ben_id)).to_have_count(0)
    await expect(ann.page.locator("#grid figure[data-easyrtcid]")).to_have_count(0)
    assert demos.errors() == {}
