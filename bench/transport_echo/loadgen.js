// Load generator: socket.io-client 4 over websocket, events with acks.
//
//   node bench/transport_echo/loadgen.js URL [--clients 20] [--window 20] [--seconds 10]
//                                            [--warmup 2] [--size 100] [--event echo]
//
// Each client keeps WINDOW emits in flight (emit, wait for the ack, emit again). Prints one JSON
// line: acknowledged messages per second over the measured period (after the warm-up).
"use strict";
const path = require("path");
const io = require(path.join(__dirname, "..", "..", "node_modules", "socket.io-client"));

const args = process.argv.slice(2);
const url = args[0];
function opt(name, dflt) {
  const i = args.indexOf("--" + name);
  return i >= 0 ? args[i + 1] : dflt;
}
const clients = Number(opt("clients", 20));
const windowSize = Number(opt("window", 20));
const seconds = Number(opt("seconds", 10));
const warmup = Number(opt("warmup", 2));
const size = Number(opt("size", 100));
const event = opt("event", "echo");

const payload = { msgType: "bench", msgData: "x".repeat(size) };
let acked = 0;
let running = true;
let connected = 0;
const sockets = [];

function pump(socket) {
  if (!running) return;
  socket.emit(event, payload, () => {
    acked++;
    pump(socket);
  });
}

function start() {
  for (const s of sockets) for (let i = 0; i < windowSize; i++) pump(s);
  setTimeout(() => {
    const base = acked;
    const t0 = process.hrtime.bigint();
    setTimeout(() => {
      const n = acked - base;
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      running = false;
      console.log(JSON.stringify({ url, clients, window: windowSize, size, seconds: dt,
                                   messages: n, msgPerSec: Math.round(n / dt), total: acked }));
      for (const s of sockets) s.close();
      process.exit(0);
    }, seconds * 1000);
  }, warmup * 1000);
}

for (let i = 0; i < clients; i++) {
  const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  s.on("connect", () => {
    if (++connected === clients) start();
  });
  s.on("connect_error", (e) => {
    console.error("connect_error", e.message);
    process.exit(1);
  });
  sockets.push(s);
}
