"""The data channel page: a channel opens on request and carries text both ways."""

from __future__ import annotations

from browserkit import DemoPage, Demos
from playwright.async_api import expect


async def send(page: DemoPage, to: str, text: str) -> None:
    await page.page.select_option("#target", to)
    await page.page.fill("#message", text)
    await page.page.get_by_role("button", name="Send").click()


async def data_channel_exchange(alice: DemoPage, bob: DemoPage) -> None:
    """Alice opens a channel to Bob; text goes both ways over it (not through the server)."""
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await alice.peer(bob_id).get_by_role("button", name="Connect").click()
    # What comes up, in order, so that a failure names the step that did not: the peer
    # connection, then each side's channel (easyrtc.js calls a side's channel open once the other
    # side got its first message over the channel and said so through the server).
    await alice.wait_connected_to(bob_id)
    await bob.wait_connected_to(alice_id)
    await expect(alice.peer(bob_id)).to_have_attribute("data-channel", "open")
    await expect(bob.peer(alice_id)).to_have_attribute("data-channel", "open")

    await send(alice, bob_id, "hello bob")
    received = bob.page.locator(f'#messages li[data-from="{alice_id}"]')
    await expect(received.locator(".text")).to_have_text("hello bob")
    await expect(received).to_have_attribute("data-via", "datachannel")

    await send(bob, alice_id, "hi alice, got it")
    received = alice.page.locator(f'#messages li[data-from="{bob_id}"]')
    await expect(received.locator(".text")).to_have_text("hi alice, got it")
    await expect(received).to_have_attribute("data-via", "datachannel")


async def test_data_channel_opens_and_carries_messages_both_ways(demos: Demos) -> None:
    alice, bob = await demos.open_many("datachannel.html", "alice", "bob")
    await data_channel_exchange(alice, bob)
    await demos.screenshot(alice, "datachannel.png")
    assert demos.errors() == {}


async def test_channel_closes_when_the_other_page_goes(demos: Demos) -> None:
    alice, bob = await demos.open_many("datachannel.html", "alice", "bob")
    bob_id = await bob.my_id()
    await alice.my_id()
    await alice.peer(bob_id).get_by_role("button", name="Connect").click()
    await expect(alice.peer(bob_id)).to_have_attribute("data-channel", "open")

    await demos.close(bob)

    await expect(alice.peer(bob_id)).to_have_count(0)
    await expect(alice.page.get_by_role("button", name="Send")).to_be_disabled()
    assert demos.errors() == {}
