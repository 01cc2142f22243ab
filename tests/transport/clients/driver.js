// Drives one real socket.io-client from Python, for the transport conformance tests.
//
//   node driver.js VERSION URL OPTIONS_JSON
//
// VERSION is 4 (socket.io-client 4.x, Engine.IO 4) or 2 (socket.io-client 2.4, Engine.IO 3).
// Commands arrive on stdin as JSON lines; what happens is printed on stdout as JSON lines:
//   {"cmd":"emit","id":N,"event":E,"data":D,"ack":true,"binary":false}
//       -> {"ev":"ack","id":N,"data":...} once acknowledged (binary: D is sent as a Buffer of D)
//   {"cmd":"disconnect"}   -> the client disconnects ({"ev":"disconnect",...} follows)
//   {"cmd":"transport"}    -> {"ev":"transport","name":...}
//   {"cmd":"exit"}
// OPTIONS_JSON may hold "burst": {"event":E,"count":N,"every":MS}: from the moment the socket
// connects, emit E with {"i": 0..N-1}, one every MS milliseconds (through the upgrade), then
// print {"ev":"burst_done"}.
// Events: ready, connect {id, transport}, upgrade {name}, message {event, data}, disconnect
// {reason}, connect_error {message}, reconnect_attempt.
"use strict";
const readline = require("readline");

const [version, url, optionsJson] = process.argv.slice(2);
const io = require(version === "2" ? "socket.io-client-v2" : "socket.io-client");
const given = JSON.parse(optionsJson || "{}");
const burst = given.burst;
delete given.burst;
const options = Object.assign({ reconnection: false, forceNew: true }, given);

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function transportName() {
  const engine = socket.io && socket.io.engine;
  return engine && engine.transport ? engine.transport.name : null;
}

const socket = io(url, options);

socket.io.on("open", () => {
  const engine = socket.io.engine;
  engine.on("upgrade", (t) => out({ ev: "upgrade", name: (t && t.name) || transportName() }));
});
socket.on("connect", () => {
  out({ ev: "connect", id: socket.id, transport: transportName() });
  if (burst) {
    let i = 0;
    const next = () => {
      if (i >= burst.count) {
        out({ ev: "burst_done" });
        return;
      }
      socket.emit(burst.event, { i: i++ });
      setTimeout(next, burst.every);
    };
    next();
  }
});
socket.on("disconnect", (reason) => out({ ev: "disconnect", reason }));
socket.on("connect_error", (err) => out({ ev: "connect_error", message: String(err && err.message || err) }));
socket.on("error", (err) => out({ ev: "error", message: String(err && err.message || err) }));
socket.on("reconnect_attempt", () => out({ ev: "reconnect_attempt" }));
for (const name of ["easyrtcCmd", "easyrtcMsg", "easyrtcResume", "pushed", "bcast", "streamed"]) {
  socket.on(name, (data, ack) => {
    out({ ev: "message", event: name, data });
    if (typeof ack === "function") ack({ msgType: "ack" }); // a push that asks to be confirmed
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  switch (cmd.cmd) {
    case "emit": {
      const data = cmd.binary ? Buffer.from(String(cmd.data)) : cmd.data;
      if (cmd.ack) {
        socket.emit(cmd.event, data, (reply) => out({ ev: "ack", id: cmd.id, data: reply }));
      } else {
        socket.emit(cmd.event, data);
      }
      break;
    }
    case "disconnect":
      socket.disconnect();
      break;
    case "transport": {
      const engine = socket.io && socket.io.engine;
      out({ ev: "transport", name: transportName(), sid: (engine && engine.id) || null });
      break;
    }
    case "exit":
      socket.close();
      process.exit(0);
  }
});
rl.on("close", () => process.exit(0));
out({ ev: "ready" });
