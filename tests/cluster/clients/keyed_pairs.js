// Keyed EasyRTC clients in pairs, in one Node process (socket.io-client 4, websocket), for the
// cluster continuity tests and bench/continuity.py.
//
// usage: node keyed_pairs.js URL COUNT INTERVAL_MS [ROOMS: one (default) | pairs]
// Each client gives a resume key (CONNECT auth) and asks to confirm relayed messages
// (easyrtcResumeAcks: it acknowledges each and drops a second copy), logs in to room "r", reconnects with backoff
// when its socket drops and logs in again with the same key. Once every client is in, each
// sends its partner (2k <-> 2k+1) a numbered easyrtcMsg every INTERVAL_MS while it is logged in.
// stdout, JSON lines: {ev:"ready"} once all are in; {ev:"dropped"} per drop, {ev:"resumed", ms}
// per login after one;
// {ev:"login-failed"|"connect-error", index, error} when a login or a connection fails;
// {ev:"summary", marks, clients:[...]} after the line "stop" on stdin (sending stops, then 1 s of
// quiet). A line "mark NAME" on stdin notes the time (marks: [[NAME, ms], ...]); each client
// reports when it sent each message (sentAt[n], ms) and its drops ([dropped, resumed] ms).
"use strict";
const crypto = require("crypto");
const readline = require("readline");
const { io } = require("socket.io-client");

const [url, countArg, intervalArg, roomsArg] = process.argv.slice(2);
const count = Number(countArg);
const interval = Number(intervalArg || 300);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
// ROOMS "one": every client in room "r" (each hears of every other leaving); "pairs": a room
// per pair, as calls are (no member-list storm of N joins to N members at the start)
const perPair = roomsArg === "pairs";
function auth(index) {
  const room = perPair ? "p" + (index >> 1) : "r";
  return { msgType: "authenticate", msgData: { apiVersion: "1.1.1-beta", roomJoin: { [room]: { roomName: room } } } };
}

let sending = false;
const clients = [];

// A stamped message ([origin, n], server's delivery.py) is new unless its number was seen from
// that origin: the second copy of a message sent again after a resume is dropped.
function firstTime(c, stamp) {
  if (!Array.isArray(stamp)) return true;
  const [origin, n] = stamp;
  let seen = c.seen.get(origin);
  if (!seen) c.seen.set(origin, (seen = { last: 0, above: new Set() }));
  if (n <= seen.last || seen.above.has(n)) return false;
  seen.above.add(n);
  while (seen.above.has(seen.last + 1)) seen.above.delete(++seen.last);
  return true;
}

function makeClient(index) {
  const key = crypto.randomBytes(24).toString("base64url");
  const c = {
    index, ids: [], resumes: [], removed: [], accepted: [], refused: [], unacked: [], received: [],
    loggedIn: false, droppedAt: null, next: 0, errors: [], sentAt: [], spans: [],
    seen: new Map(), repeats: 0,
  };
  const socket = io(url, {
    transports: ["websocket"], forceNew: true, auth: { easyrtcResumeKey: key, easyrtcResumeAcks: true },
    reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 1000, randomizationFactor: 0.5,
    timeout: 5000,
  });
  c.socket = socket;
  socket.on("connect", () => {
    socket.timeout(10000).emit("easyrtcAuth", auth(index), (err, token) => {
      if (err || !token || token.msgType !== "token") {
        c.errors.push(String(err || JSON.stringify(token)));
        out({ ev: "login-failed", index, error: String(err || JSON.stringify(token)).slice(0, 200) });
        socket.disconnect();  // again after a while: a refused login storm must not feed itself
        setTimeout(() => socket.connect(), 250 + Math.random() * 750);
        return;
      }
      const id = token.msgData.easyrtcid;
      if (c.ids[c.ids.length - 1] !== id) c.ids.push(id);
      c.loggedIn = true;
      if (c.droppedAt !== null) {
        const ms = Date.now() - c.droppedAt;
        c.resumes.push(ms);
        c.spans.push([c.droppedAt, Date.now()]);
        c.droppedAt = null;
        out({ ev: "resumed", index, ms });
      }
      maybeReady();
    });
  });
  socket.on("disconnect", (reason) => {
    c.loggedIn = false;
    if (c.droppedAt === null) {
      c.droppedAt = Date.now();
      out({ ev: "dropped", index, reason });
    }
    if (reason === "io server disconnect") socket.connect();
  });
  socket.on("connect_error", (err) => {
    if (c.errors.length < 5) c.errors.push("connect_error " + String(err && err.message));
    out({ ev: "connect-error", index, error: String(err && err.message).slice(0, 200) });
  });
  socket.on("easyrtcMsg", (msg, ack) => {
    if (ack) ack({ msgType: "ack" }); // confirmed: the server stops keeping it
    if (!firstTime(c, msg && msg.easyrtcSeq)) { c.repeats += 1; return; }
    if (msg && msg.msgType === "seq") c.received.push(msg.msgData);
  });
  socket.on("easyrtcCmd", (msg) => {
    const rooms = msg && msg.msgData && msg.msgData.roomData;
    for (const name in rooms || {}) {
      const delta = rooms[name].clientListDelta;
      for (const gone in (delta && delta.removeClient) || {}) c.removed.push(gone);
    }
  });
  return c;
}

let readyTold = false;
function maybeReady() {
  if (readyTold || clients.length < count || !clients.every((c) => c.loggedIn)) return;
  readyTold = true;
  sending = true;
  out({ ev: "ready", ids: clients.map((c) => c.ids[0]) });
}

function tick() {
  if (!sending) return;
  for (const c of clients) {
    const partner = clients[c.index ^ 1];
    if (!c.loggedIn || !partner) continue;
    const n = c.next++;
    c.sentAt.push(Date.now());
    const target = partner.ids[0];
    c.socket.timeout(10000).emit("easyrtcMsg", { msgType: "seq", targetEasyrtcid: target, msgData: n }, (err, reply) => {
      if (err) c.unacked.push(n);
      else if (reply && reply.msgType === "ack") c.accepted.push(n);
      else c.refused.push([n, reply && reply.msgData]);
    });
  }
}

// connect in steps of 20 every 100 ms: a start, not a login storm
for (let i = 0; i < count; i++) setTimeout(() => clients.push(makeClient(i)), 100 * Math.floor(i / 20));
setInterval(tick, interval);
out({ ev: "started" });

const marks = [];
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.startsWith("mark ")) marks.push([line.slice(5).trim(), Date.now()]);
  if (line.trim() !== "stop") return;
  sending = false;
  setTimeout(() => {
    out({
      ev: "summary",
      marks,
      clients: clients.map((c) => ({
        index: c.index, ids: c.ids, resumes: c.resumes, removed: c.removed, accepted: c.accepted,
        refused: c.refused, unacked: c.unacked, received: c.received, loggedIn: c.loggedIn,
        sentAt: c.sentAt, spans: c.spans, repeats: c.repeats,
        errors: c.errors.slice(0, 5),
      })),
    });
    for (const c of clients) c.socket.close();
    setTimeout(() => process.exit(0), 200);
  }, 1500);
});
