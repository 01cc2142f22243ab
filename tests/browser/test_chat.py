"""The instant messaging page: server-relayed messages, presence, and the room list."""

from __future__ import annotations

from browserkit import DemoPage, Demos
from playwright.async_api import expect


async def send(page: DemoPage, target: str, text: str) -> None:
    """Send ``text`` to ``room:NAME`` or ``peer:EASYRTCID``."""
    await page.page.select_option("#target", target)
    await page.page.fill("#message", text)
    await page.page.locator("#send").click()


async def test_message_goes_to_one_peer_or_to_the_room(demos: Demos) -> None:
    alice, bob, carol = await demos.open_many("chat.html", "alice", "bob", "carol")
    alice_id, bob_id, carol_id = [await page.my_id() for page in (alice, bob, carol)]
    await expect(alice.peer(bob_id, within="#people")).to_be_visible()
    await expect(alice.peer(carol_id, within="#people")).to_be_visible()

    await send(alice, f"peer:{bob_id}", "just for bob")
    direct = bob.page.locator(f'#messages li[data-from="{alice_id}"]:not([data-room])')
    await expect(direct.locator(".text")).to_have_text("just for bob")
    await expect(alice.page.locator("#messages li.mine")).to_have_count(1)

    await send(alice, "room:default", "hello room")
    for page in (bob, carol):
        to_room = page.page.locator(f'#messages li[data-from="{alice_id}"][data-room="default"]')
        await expect(to_room.locator(".text")).to_have_text("hello room")
    # carol got the room message only; the sender never gets its own room message back
    await expect(carol.page.locator("#messages li")).to_have_count(1)
    await expect(alice.page.locator("#messages li:not(.mine)")).to_have_count(0)

    await demos.screenshot(bob, "chat.png")
    assert demos.errors() == {}


async def test_presence_change_is_seen_by_others(demos: Demos) -> None:
    alice, bob = await demos.open_many("chat.html", "alice", "bob")
    await alice.my_id()
    bob_id = await bob.my_id()
    bob_for_alice = alice.peer(bob_id, within="#people")
    await expect(bob_for_alice).to_have_attribute("data-show", "chat")

    await bob.page.select_option("#show", "away")
    await bob.page.fill("#status-text", "out for lunch")
    await bob.page.locator("#set-presence").click()

    await expect(bob_for_alice).to_have_attribute("data-show", "away")
    await expect(bob_for_alice).to_have_attribute("data-status", "out for lunch")
    await expect(bob_for_alice.locator(".presence")).to_have_text("away \u2014 out for lunch")
    assert demos.errors() == {}


async def test_room_list_join_talk_and_leave(demos: Demos) -> None:
    alice, bob = await demos.open_many("chat.html", "alice", "bob")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await expect(alice.page.locator('#rooms li[data-room="default"]')).to_have_attribute(
        "data-joined", "true"
    )

    # alice opens a new room; bob finds it in the room list and joins
    await alice.page.fill("#new-room", "side")
    await alice.page.locator("#new-room-form button").click()
    side_for_alice = alice.page.locator('#rooms li[data-room="side"]')
    await expect(side_for_alice).to_have_attribute("data-joined", "true")
    await bob.page.locator("#refresh-rooms").click()
    side_for_bob = bob.page.locator('#rooms li[data-room="side"]')
    await expect(side_for_bob).to_have_attribute("data-members", "1")
    await side_for_bob.get_by_role("button", name="Join").click()
    await expect(side_for_bob).to_have_attribute("data-joined", "true")
    await expect(side_for_bob).to_have_attribute("data-members", "2")
    await expect(alice.peer(bob_id, within='#people [data-room="side"]')).to_be_visible()

    # a message to the side room arrives marked with that room
    await send(bob, "room:side", "psst")
    in_side = alice.page.locator(f'#messages li[data-from="{bob_id}"][data-room="side"]')
    await expect(in_side.locator(".text")).to_have_text("psst")

    # bob leaves: alice no longer sees him there, but still in the default room
    await side_for_bob.get_by_role("button", name="Leave").click()
    await expect(side_for_bob).to_have_attribute("data-joined", "false")
    await expect(bob.page.locator('#people [data-room="side"]')).to_have_count(0)
    await expect(alice.peer(bob_id, within='#people [data-room="side"]')).to_have_count(0)
    await expect(alice.peer(bob_id, within='#people [data-room="default"]')).to_be_visible()
    await expect(bob.peer(alice_id, within='#people [data-room="default"]')).to_be_visible()
    assert demos.errors() == {}
