"""The reference's own demo pages (``open-easyrtc/demos``, unmodified), served by our server.

``easyrtc-server --demos-dir node_modules/open-easyrtc/demos`` serves them as the Node server
does; pairs of Chromium pages (fake camera and microphone) use each demo as its page says, and
no page shows its user an error (``easyrtc.showError``, whose default is the "Error messages"
box, or an ``alert``). ``demo_reconnect.html`` reports its own steps through ``showError`` with
the code ``xx``, ``demo_audio_video.html`` its login with ``noerror``: those are their output,
not errors.

Every other page is opened, connected and checked for errors
(``test_every_other_demo_connects_without_an_error``); the recording of ``demo_recording.html``
(``MediaRecorder`` into a file the user saves: nothing of the server's in it) is not run. Not
run at all: ``demo_screenshare.html``, broken in the package itself (it loads
``js/demo_multistream_no_iframe.js``, which open-easyrtc 2.1.8 does not ship, so its Connect
button calls an undefined ``connect``; the same on the reference server), and headless Chromium
could not share a screen anyway (``getDisplayMedia`` needs a screen and a user's choice).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from browserkit import (
    ERROR_WATCH,
    ERRORS_SHOWN,
    TIMEOUT_MS,
    VIDEO_PLAYS,
    DemoPage,
    Demos,
    ServerLog,
)
from playwright.async_api import Browser, BrowserContext, expect

from easyrtc_server.app import create_app
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.ours import serving_app

REFERENCE_DEMOS = Path(__file__).resolve().parents[2] / "node_modules" / "open-easyrtc" / "demos"

OTHER_DEMOS = [
    "demo_audio_only.html",
    "demo_video_only.html",
    "demo_audio_video.html",
    "demo_audio_video_simple_hd.html",
    "demo_lowbandwidth.html",
    "demo_ice_filter.html",
    "demo_statistics.html",
    "demo_multistream.html",
    "demo_instant_messaging_selfconnect.html",
    "demo_connector.html",
    "demo4.html",
    "demo_recording.html",  # connects; recording to a file is not run (see above)
]

# JavaScript run in a page: resolves once easyrtc.js is logged in and a round trip to the
# server after it came back (so every answer to what it sent before has arrived).
LOGGED_IN_ROUND_TRIP = """async () => {
  while (!(window.easyrtc && easyrtc.myEasyrtcid)) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await new Promise((resolve, reject) => easyrtc.getRoomList(resolve, reject));
  return easyrtc.myEasyrtcid;
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def demos_server() -> AsyncIterator[str]:
    """Our server with ``demos_dir`` the reference's demos folder."""
    server = EasyRtcServer(Options(demos_dir=REFERENCE_DEMOS))
    async with serving_app(create_app(server=server)) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def ref_demos(
    browser: Browser, demos_server: str, request: pytest.FixtureRequest
) -> AsyncIterator[Demos]:
    demos = Demos(browser, demos_server, "ours", ServerLog())

    async def watch_errors(context: BrowserContext) -> None:
        await context.add_init_script(ERROR_WATCH)

    demos.context_setup.append(watch_errors)
    yield demos
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        await demos.save_failure(request.node.name)
    await demos.close_all()


OWN_OUTPUT = ("noerror: logged in",)
"""What a demo shows through ``showError`` as its own news (demo_audio_video.html), not an
error."""


async def errors_shown(demos: Demos) -> dict[str, list[str]]:
    shown = {page.label: await page.page.evaluate(ERRORS_SHOWN) for page in demos.pages}
    shown = {label: [e for e in errors if e not in OWN_OUTPUT] for label, errors in shown.items()}
    return {label: errors for label, errors in shown.items() if errors}


async def my_id(page: DemoPage) -> str:
    """The page's easyrtcid, once logged in (from easyrtc.js, after a round trip)."""
    async with asyncio.timeout(TIMEOUT_MS / 1000):
        return str(await page.page.evaluate(LOGGED_IN_ROUND_TRIP))


async def pair(demos: Demos, path: str) -> tuple[DemoPage, str, DemoPage, str]:
    """Alice, then Bob (demos that call whoever is there need one to be first)."""
    alice = await demos.open(path, name="alice")
    alice_id = await my_id(alice)
    bob = await demos.open(path, name="bob")
    return alice, alice_id, bob, await my_id(bob)


async def test_instant_messaging(ref_demos: Demos) -> None:
    alice, alice_id, bob, bob_id = await pair(ref_demos, "demo_instant_messaging.html")
    await expect(bob.page.locator("#iam")).to_have_text(f"I am {bob_id}")
    await alice.page.fill("#sendMessageText", "hello bob")
    await alice.page.get_by_role("button", name=f"Send to {bob_id}").click()
    await expect(bob.page.locator("#conversation")).to_contain_text(f"{alice_id}: hello bob")
    await bob.page.fill("#sendMessageText", "hi alice")
    await bob.page.get_by_role("button", name=f"Send to {alice_id}").click()
    await expect(alice.page.locator("#conversation")).to_contain_text(f"{bob_id}: hi alice")
    assert await errors_shown(ref_demos) == {}


async def test_instant_messaging_with_rooms(ref_demos: Demos) -> None:
    pages = []
    for name in ("alice", "bob"):
        page = await ref_demos.open("demo_instant_messaging_rooms.html")
        await page.page.fill("#userNameField", name)
        await page.page.click("#connectButton")
        await my_id(page)
        await page.page.get_by_role("button", name=re.compile(r"^Join room1\(")).click()
        pages.append(page)
    alice, bob = pages
    # each sees the other in room1, by username
    await expect(alice.page.locator("#roomOccupant_room1")).to_contain_text("bob")
    await expect(bob.page.locator("#roomOccupant_room1")).to_contain_text("alice")
    await alice.page.fill("#sendMessageText", "hello room1")
    await alice.page.locator("#roomblock_room1 > button").click()
    await expect(bob.page.locator("#conversation")).to_contain_text("room=room1")
    await expect(bob.page.locator("#conversation")).to_contain_text("hello room1")
    assert await errors_shown(ref_demos) == {}


async def test_audio_video_simple_call(ref_demos: Demos) -> None:
    alice, _, bob, bob_id = await pair(ref_demos, "demo_audio_video_simple.html")
    await alice.page.locator("#otherClients button").filter(has_text=bob_id).click()
    await alice.wait_video_plays(alice.page.locator("#callerVideo"))
    await bob.wait_video_plays(bob.page.locator("#callerVideo"))
    await ref_demos.screenshot(alice, "reference-demo-audio-video-simple.png")
    assert await errors_shown(ref_demos) == {}


async def test_multiparty_newcomer_calls_the_room(ref_demos: Demos) -> None:
    alice, _, bob, _ = await pair(ref_demos, "demo_multiparty.html")
    for page in (alice, bob):
        await page.page.wait_for_function(VIDEO_PLAYS, arg=await page.page.query_selector("#box1"))
    assert await errors_shown(ref_demos) == {}


async def test_data_channel_messaging(ref_demos: Demos) -> None:
    alice, alice_id, bob, bob_id = await pair(ref_demos, "demo_data_channel_messaging.html")
    await alice.page.click(f"#connect_{bob_id}")
    await expect(alice.page.locator(f"#send_{bob_id}")).to_be_enabled()
    await alice.page.fill("#sendMessageText", "over the channel")
    await alice.page.click(f"#send_{bob_id}")
    await expect(bob.page.locator("#conversation")).to_contain_text(f"{alice_id}: over the channel")
    assert await errors_shown(ref_demos) == {}


async def test_data_channel_file_sharing(ref_demos: Demos, tmp_path: Path) -> None:
    alice, alice_id, bob, bob_id = await pair(ref_demos, "demo_data_channel_filesharing.html")
    await alice.page.click(f"#connectbutton_{bob_id}")
    zone = alice.page.locator(f"#peerzone_{bob_id}")
    await expect(zone.locator(".dragndropStatus")).to_have_text("Connection established")
    sent = tmp_path / "notes.txt"
    content = b"file sharing over a data channel\n" * 100
    await asyncio.to_thread(sent.write_bytes, content)
    await zone.locator(".fileInput").set_input_files(sent)
    receive = bob.page.locator(f"#receivearea_{alice_id}")
    await expect(receive).to_contain_text("notes.txt(3300 bytes)")
    async with bob.page.expect_download() as download_info:
        await receive.get_by_role("button", name="Accept").click()
    download = await download_info.value
    assert download.suggested_filename == "notes.txt"
    assert await asyncio.to_thread(Path(await download.path()).read_bytes) == content
    assert await errors_shown(ref_demos) == {}


async def test_reconnect(ref_demos: Demos) -> None:
    page = await ref_demos.open("demo_reconnect.html")
    await my_id(page)
    await expect(page.page.locator("#stateLabel")).to_contain_text("connected as")
    await page.page.get_by_role("button", name="manually disconnect").click()
    await page.page.wait_for_function("() => window.__errorsShown.length >= 2")
    await page.page.get_by_role("button", name="manually connect").click()
    await page.page.wait_for_function("() => window.__errorsShown.length >= 3")
    await page.page.get_by_role("button", name="verify connected").click()
    await page.page.wait_for_function("() => window.__errorsShown.length >= 4")
    assert await page.page.evaluate(ERRORS_SHOWN) == [
        "xx: login success",
        "xx: saw disconnect",
        "xx: login success",
        "xx: got fresh roomlist",
    ]


@pytest.mark.parametrize("path", OTHER_DEMOS)
async def test_every_other_demo_connects_without_an_error(ref_demos: Demos, path: str) -> None:
    page = await ref_demos.open(path, name="solo")
    connect = page.page.locator("#connectButton, #buttonImmediate")
    if await connect.count():  # the demos that wait for the user to connect
        await connect.click()
    await my_id(page)
    assert await errors_shown(ref_demos) == {}
