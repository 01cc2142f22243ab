"""``easyrtc_resume.js``'s handling of numbered messages (``delivery``), in Node with a fake
socket.io and a fake easyrtc.js, its timers driven by the test: each message confirmed at once,
passed on to easyrtc.js once, in order; one after a gap waits up to 2 s for the missing one,
then goes on (and the missing one, if it comes later, still goes on). The browser tests
(``tests/browser/test_keeping_calls_up*.py``) run the script with the real easyrtc.js."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "src" / "easyrtc_server" / "clientjs"

DRIVER = """
const timers = [];
global.setTimeout = (fn, ms) => { timers.push({ fn, ms }); return timers.length; };
global.clearTimeout = (id) => { if (id && timers[id - 1]) timers[id - 1].fn = null; };
global.window = {
  addEventListener() {}, sessionStorage: null, crypto: require("crypto").webcrypto,
  btoa: (s) => Buffer.from(s, "binary").toString("base64"),
};
require(process.argv[1] + "/easyrtc_resume.js");
const handlers = {};
let auth = null;
const io = (url, options) => {
  auth = options.auth;
  return { on(e, f) { handlers[e] = f; }, off() {}, emit() {}, close() {}, disconnect() {} };
};
io.protocol = 5;
const easyrtc = {
  useThisSocketConnection() {}, myEasyrtcid: "me", NOT_CONNECTED: 0, getConnectStatus: () => 0,
};
const socket = window.easyrtcResume.enable(easyrtc, { io });
const got = [];
let acks = 0;
socket.on("easyrtcMsg", (msg) => got.push(msg.msgData));
socket.on("connect", () => {});
const send = (origin, n) =>
  handlers.easyrtcMsg({ msgData: origin + n, easyrtcSeq: [origin, n] }, () => acks++);
const steps = [];
const note = (what) => steps.push([what, got.slice(), acks]);
send("a", 1); send("a", 3); note("gap");
send("a", 2); send("a", 2); send("b", 1); note("filled");
send("a", 5); note("second gap");
for (const t of timers.splice(0)) if (t.fn && t.ms === 2000) t.fn();
note("waited");
send("a", 4); send("a", 1); note("late");
handlers.easyrtcMsg({ msgData: "plain" }, null); note("unnumbered");
console.log(JSON.stringify({ auth, steps }));
"""


def test_numbered_messages_are_passed_on_once_in_order_and_all_confirmed() -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    done = subprocess.run(
        [node, "-e", DRIVER, str(SCRIPT)], capture_output=True, text=True, timeout=30, check=True
    )
    result = json.loads(done.stdout)
    assert result["auth"]["easyrtcResumeAcks"] == "1"  # it asks for confirmed delivery
    steps = {what: (got, acks) for what, got, acks in result["steps"]}
    assert steps["gap"] == (["a1"], 2)  # a3 waits for a2, confirmed all the same
    assert steps["filled"] == (["a1", "a2", "a3", "b1"], 5)  # the copy of a2: confirmed, dropped
    assert steps["second gap"] == (["a1", "a2", "a3", "b1"], 6)
    assert steps["waited"] == (["a1", "a2", "a3", "b1", "a5"], 6)  # a4 never came: on after 2 s
    assert steps["late"] == (["a1", "a2", "a3", "b1", "a5", "a4"], 8)  # late, not lost
    assert steps["unnumbered"][0][-1] == "plain"
