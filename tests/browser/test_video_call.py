"""The one-to-one video call page: the room list, calling, media, hanging up, leaving."""

from __future__ import annotations

from browserkit import DemoPage, Demos
from playwright.async_api import expect


async def open_two(demos: Demos) -> tuple[DemoPage, str, DemoPage, str]:
    alice, bob = await demos.open_many("video.html", "alice", "bob")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await expect(alice.peer(bob_id)).to_be_visible()
    return alice, alice_id, bob, bob_id


async def place_call(caller: DemoPage, callee: DemoPage, callee_id: str) -> None:
    await caller.peer(callee_id).get_by_role("button", name="Call").click()
    await expect(callee.page.locator("#incoming")).to_be_visible()
    await callee.page.get_by_role("button", name="Accept").click()


async def test_two_pages_see_each_other(demos: Demos) -> None:
    alice, alice_id, bob, bob_id = await open_two(demos)

    await expect(alice.peer(bob_id)).to_contain_text("bob")
    await expect(bob.peer(alice_id)).to_contain_text("alice")
    await expect(alice.page.locator("#peers li")).to_have_count(1)
    await expect(bob.page.locator("#peers li")).to_have_count(1)
    assert demos.errors() == {}


async def test_accepted_call_connects_and_carries_media(demos: Demos) -> None:
    alice, alice_id, bob, bob_id = await open_two(demos)

    await place_call(alice, bob, bob_id)

    for page, other in ((alice, bob_id), (bob, alice_id)):
        await expect(page.page.locator("#call")).to_have_attribute("data-state", "connected")
        await expect(page.page.locator("#call")).to_have_attribute("data-peer", other)
        await page.wait_connected_to(other)
        await page.wait_video_plays(page.page.locator("#remote-video"))
    await demos.screenshot(alice, "video-call.png")
    assert demos.errors() == {}


async def test_hangup_is_seen_by_the_other_side(demos: Demos) -> None:
    alice, _alice_id, bob, bob_id = await open_two(demos)
    await place_call(alice, bob, bob_id)
    await expect(bob.page.locator("#call")).to_have_attribute("data-state", "connected")

    await bob.page.get_by_role("button", name="Hang up").click()

    await expect(alice.page.locator("#call")).to_have_attribute("data-state", "idle")
    await expect(bob.page.locator("#call")).to_have_attribute("data-state", "idle")
    await alice.page.wait_for_function(
        "() => document.getElementById('remote-video').srcObject === null"
    )
    await expect(alice.peer(bob_id).get_by_role("button", name="Call")).to_be_enabled()
    assert demos.errors() == {}


async def test_rejected_call_returns_both_to_idle(demos: Demos) -> None:
    alice, _alice_id, bob, bob_id = await open_two(demos)

    await alice.peer(bob_id).get_by_role("button", name="Call").click()
    await expect(bob.page.locator("#incoming")).to_be_visible()
    await bob.page.get_by_role("button", name="Reject").click()

    await expect(alice.page.locator("#call")).to_have_attribute("data-state", "idle")
    await expect(bob.page.locator("#call")).to_have_attribute("data-state", "idle")
    assert demos.errors() == {}


async def test_closed_page_leaves_the_others_list_and_ends_the_call(demos: Demos) -> None:
    alice, _alice_id, bob, bob_id = await open_two(demos)
    await place_call(alice, bob, bob_id)
    await expect(alice.page.locator("#call")).to_have_attribute("data-state", "connected")

    await demos.close(bob)

    await expect(alice.peer(bob_id)).to_have_count(0)
    await expect(alice.page.locator("#call")).to_have_attribute("data-state", "idle")
    assert demos.errors() == {}
