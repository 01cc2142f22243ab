"""Issue 24 in Chromium: a video call with easyrtc_resume.js survives the signaling server's
crash and restart, and a network blip, without the pages noticing.

The server runs as a real process (``kill -9`` or SIGTERM, then started again on the same port,
with the same ``resume_secret``); the pages reach it through a TCP proxy that the blip test cuts
for 3 s. Throughout, each page samples its call every 100 ms: the RTCPeerConnection's state, the
call line, and the other page in its list.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from browserkit import ARTIFACTS, DemoPage, Demos
from playwright.async_api import BrowserContext, expect
from test_departure import FORCE_TRANSPORTS, TRANSPORT_NAME
from test_video_call import place_call

from support.serverprocess import ServerProcess
from support.tcpproxy import TcpProxy

BLIP_SECONDS = 3.0

WATCH = """(peer) => {
  const video = document.getElementById("remote-video");
  const seen = { samples: 0, notConnected: [], callStates: [], peerMissing: 0, pageStates: [] };
  window.__watch = seen;
  window.__watchTimer = setInterval(() => {
    seen.samples += 1;
    const pc = easyrtc.getPeerConnectionByUserId(peer);
    const state = pc ? pc.connectionState : "none";
    if (state !== "connected") seen.notConnected.push(state);
    const call = document.getElementById("call").dataset.state;
    if (call !== "connected") seen.callStates.push(call);
    if (!document.querySelector('#peers li[data-easyrtcid="' + peer + '"]')) seen.peerMissing += 1;
    const page = document.body.dataset.state;
    if (page !== "connected") seen.pageStates.push(page);
  }, 100);
  return video.currentTime;
}"""

REPORT = """() => {
  clearInterval(window.__watchTimer);
  return window.__watch;
}"""


@pytest.fixture
def server_kind() -> str:
    """These tests run against our server only (the reference has no resume)."""
    return "process"


@pytest_asyncio.fixture(loop_scope="session")
async def server_process() -> AsyncIterator[ServerProcess]:
    process = ServerProcess(env={"EASYRTC_RESUME_SECRET": secrets.token_hex(32)})
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(server_process: ServerProcess) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(server_process.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def server(proxy: TcpProxy) -> str:
    """The pages load (and signal) through the proxy."""
    return proxy.url


async def in_a_call(demos: Demos) -> tuple[DemoPage, str, DemoPage, str]:
    alice, bob = await demos.open_many("video.html", "alice", "bob", resume="1")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    await place_call(alice, bob, bob_id)
    for page, other in ((alice, bob_id), (bob, alice_id)):
        await page.wait_connected_to(other)
        await page.wait_video_plays(page.page.locator("#remote-video"))
    return alice, alice_id, bob, bob_id


async def metrics(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        return await response.text()


def errors_besides_the_outage(demos: Demos) -> dict[str, list[str]]:
    """Console errors, but for the failed requests of reconnecting while nothing answers."""
    return {
        label: kept
        for label, errors in demos.errors().items()
        if (kept := [e for e in errors if not e.startswith("Failed to load resource: net::")])
    }


async def watch(page: DemoPage, other: str) -> float:
    started: float = await page.page.evaluate(WATCH, other)
    return started


async def call_went_on(page: DemoPage, me: str, since: float) -> None:
    """After 2 s more of video and of watching: the call went on the whole time, and the page
    kept its easyrtcid and is connected."""
    await page.page.wait_for_function(
        "(t) => document.getElementById('remote-video').currentTime > t + 2", arg=since
    )
    await page.page.wait_for_function("() => window.__watch.samples > 20")  # 2 s watched
    report = await page.page.evaluate(REPORT)
    assert report["notConnected"] == []  # the RTCPeerConnection stayed connected
    assert report["callStates"] == []  # the call never ended
    assert report["peerMissing"] == 0  # the other page never left the list
    assert report["pageStates"] == []  # never shown disconnected
    assert await page.page.evaluate("() => easyrtc.myEasyrtcid") == me
    assert await page.my_id() == me
    assert await page.page.evaluate("() => easyrtc.webSocket.connected") is True


async def resumed_and_still_in_the_call(page: DemoPage, me: str, other: str, since: float) -> float:
    """The page resumed its easyrtcid, and its call went on the whole time; returns the time
    (ms) from the drop to the resume."""
    await page.page.wait_for_function("() => easyrtcResume.socket.resumes >= 1")
    await call_went_on(page, me, since)
    [took] = await page.page.evaluate("() => easyrtcResume.socket.resumeTimes")
    assert 0 < took < 30_000
    return float(took)


def note_resume_times(name: str, times: list[float]) -> None:
    """Kept for the record (``test-artifacts/process/``): how long the pages were without
    signaling."""
    path = ARTIFACTS / "process" / f"resume-times-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ms": times}) + "\n")


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
async def test_a_call_survives_a_server_restart(
    demos: Demos, server_process: ServerProcess, stop: str
) -> None:
    alice, alice_id, bob, bob_id = await in_a_call(demos)
    since = [await watch(alice, bob_id), await watch(bob, alice_id)]

    # kill -9: the process forgets everything; SIGTERM: it drops keyed sockets, tells no one
    await server_process.stop(kill=stop == "kill -9")
    await server_process.start()  # same port, same resume_secret

    times = await asyncio.gather(
        resumed_and_still_in_the_call(alice, alice_id, bob_id, since[0]),
        resumed_and_still_in_the_call(bob, bob_id, alice_id, since[1]),
    )
    note_resume_times(f"restart-{stop.replace(' ', '')}", list(times))
    # the new process gave both their easyrtcids back from their resume tokens
    assert "easyrtc_restores_total 2.0" in await metrics(server_process.url)
    assert errors_besides_the_outage(demos) == {}


async def test_a_call_survives_a_network_blip(demos: Demos, proxy: TcpProxy) -> None:
    alice, alice_id, bob, bob_id = await in_a_call(demos)
    since = [await watch(alice, bob_id), await watch(bob, alice_id)]

    await proxy.cut()
    await asyncio.sleep(BLIP_SECONDS)  # the outage itself: nothing to wait for
    await proxy.start()

    times = await asyncio.gather(
        resumed_and_still_in_the_call(alice, alice_id, bob_id, since[0]),
        resumed_and_still_in_the_call(bob, bob_id, alice_id, since[1]),
    )
    note_resume_times("blip", list(times))
    # the server held both (it saw the sockets drop) and both resumed
    text = await metrics(proxy.url)
    assert "easyrtc_holds_total 2.0" in text and "easyrtc_hold_expiries_total 0.0" in text
    assert errors_besides_the_outage(demos) == {}


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_a_closed_tab_still_leaves_at_once(demos: Demos, transport: str) -> None:
    """A keyed page that closes says goodbye on pagehide (on long-polling, where a closing
    tab only aborts a request, with a beacon too): it is not held."""

    async def force(context: BrowserContext) -> None:
        await context.add_init_script(FORCE_TRANSPORTS % json.dumps([transport]))

    demos.context_setup.append(force)
    alice, bob = await demos.open_many("video.html", "alice", "bob", resume="1")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    assert await bob.page.evaluate(TRANSPORT_NAME) == transport
    await expect(alice.peer(bob_id)).to_be_visible()

    await demos.close(bob)
    await expect(alice.peer(bob_id)).to_have_count(0, timeout=2_000)
    assert await alice.page.evaluate("() => easyrtc.myEasyrtcid") == alice_id
    assert errors_besides_the_outage(demos) == {}


# JavaScript run in a page: a stock easyrtc.js app that gives a resume key in its socket options
# (no client script) and connects; its easyrtcid.
CONNECT_WITH_KEY = """async (key) => {
  easyrtc.webSocket = null;  // after a drop easyrtc.js 2.1.8 keeps it, and will not connect again
  easyrtc.setSocketUrl(location.origin, {
    reconnection: false, forceNew: true, transports: ["websocket"],
    auth: { easyrtcResumeKey: key },
  });
  return await new Promise((ok, fail) => {
    easyrtc.connect("resume-stock-app", ok, (code, text) => fail(new Error(code + ": " + text)));
    setTimeout(() => fail(new Error("no answer to the login in 20 s")), 20000);
  });
}"""


async def test_a_stock_app_that_connects_again_gets_its_easyrtcid_back(
    demos: Demos, proxy: TcpProxy
) -> None:
    """Without the client script: easyrtc.js forgets its easyrtcid when its socket drops, and
    an app that connects again with the same key (clearing ``easyrtc.webSocket`` first, which
    easyrtc.js keeps after a drop) gets it back: the server held it."""
    context = await demos.browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(proxy.url + "/healthz")  # same origin as the server: the client files
        await page.add_script_tag(url="/socket.io/socket.io.js")
        await page.add_script_tag(url="/easyrtc/easyrtc.js")
        key = secrets.token_urlsafe(24)
        first = await page.evaluate(CONNECT_WITH_KEY, key)

        await proxy.cut()  # the socket drops without a goodbye: held
        await page.wait_for_function("() => !easyrtc.webSocketConnected && !easyrtc.myEasyrtcid")
        await proxy.start()

        again = await page.evaluate(CONNECT_WITH_KEY, key)
        assert again == first  # a new login would have been given a new easyrtcid
    finally:
        await context.close()
