"""Issue 13: closing a tab makes the others see the leave at once, on long-polling as on websocket.

"At once" means before any heartbeat could notice: both servers here wait ``PING_TIMEOUT_MS``
for a pong before they give a socket up, so a leave seen within half of that came from the
closed socket itself. (A fixed second was too tight for a loaded 2-core CI machine.)

The demo pages are forced onto one transport (as a proxy that blocks websockets forces polling)
by an init script wrapping ``io.connect``, which ``easyrtc.js`` calls with its options.
"""

from __future__ import annotations

import json

import pytest
from browserkit import Demos
from playwright.async_api import BrowserContext, expect

# Wraps socket.io's `io` (and `io.connect`) as soon as socket.io.js defines it, so that every
# connection uses only the given transports.
FORCE_TRANSPORTS = """(() => {
  const transports = %s;
  let wrapped;
  Object.defineProperty(window, "io", {
    configurable: true,
    get() { return wrapped; },
    set(real) {
      // easyrtc.js calls io.connect(null, options) when the page sets no server URL, and
      // socket.io then reads the options from the first argument
      const force = (fn) => function (url, options) {
        const merged = Object.assign({}, options || {}, { transports });
        return url == null ? fn.call(this, merged) : fn.call(this, url, merged);
      };
      wrapped = Object.assign(force(real), real);
      wrapped.connect = force(real.connect || real);
    },
  });
})();"""

TRANSPORT_NAME = "() => easyrtc.webSocket.io.engine.transport.name"

PING_TIMEOUT_MS = 10_000  # ours by default, and tests/reference/server.js


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_closed_tab_leaves_before_a_heartbeat_could(demos: Demos, transport: str) -> None:
    async def force(context: BrowserContext) -> None:
        await context.add_init_script(FORCE_TRANSPORTS % json.dumps([transport]))

    demos.context_setup.append(force)
    alice, bob = await demos.open_many("chat.html", "alice", "bob")
    alice_id, bob_id = await alice.my_id(), await bob.my_id()
    for page in (alice, bob):
        assert await page.page.evaluate(TRANSPORT_NAME) == transport
    await expect(alice.peer(bob_id, within="#people")).to_be_visible()
    await expect(bob.peer(alice_id, within="#people")).to_be_visible()

    await demos.close(bob)
    gone = alice.peer(bob_id, within="#people")
    await expect(gone).to_have_count(0, timeout=PING_TIMEOUT_MS // 2)
    assert demos.errors() == {}
