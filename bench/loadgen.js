// EasyRTC load generator (not a test): drives one running server through one scenario and prints
// one JSON line with the results on stdout (progress goes to stderr).
//
//   node bench/loadgen.js --url http://127.0.0.1:PORT --scenario NAME [--pid SERVER_PID]
//                         [--params '{"clients":200}'] [--clk-tck 100]
//
// Scenarios (params and defaults in DEFAULTS below):
//   connect     connect + authenticate rate, each client in a room of its own
//   relay       candidate relay between pairs (A -> B with acks, WINDOW in flight per pair)
//   broadcast   easyrtcMsg to targetRoom, rooms of ROOMSIZE, SENDERS per room, WINDOW in flight
//   storm       join storm: CLIENTS authenticate into one room; time until every list holds all
//               (and after the last token); PROCS worker processes share the clients (forked
//               with --worker, pinned like this one); HOLD seconds idle afterwards to count
//               clients the server dropped; server RSS and peak RSS
//   rooms-storm the storm into many small rooms (issue 23): client i authenticates into room
//               r{i // ROOMSIZE}; time until every list holds exactly its room. PLACEMENT says
//               which URL each client takes: `affine` (every member of room r on urls[r % n], a
//               balancer hashing the room), `random` (a node drawn per client from SEED), or
//               `roundrobin` (urls[i % n]: a room's members on as many nodes as it can), or
//               `first` (every client on urls[0]: the others serve none, their cost is the
//               replica's alone). With
//               REDIS (host:port) and LOGKEY, Redis's egress (INFO total_net_output_bytes) and
//               the entries appended to the log (XINFO entries-added) from the start until
//               convergence. With QUIET (seconds, at most), the same figures again once every
//               --pid idles after convergence (the work of a replica that lags, `*_quiet`)
//   idle        CLIENTS idle authenticated connections in rooms of ROOMSIZE; server RSS per conn;
//               server CPU % over max(IDLESECONDS, PINGINTERVALS × the server's ping interval)
//   disconnect  CLIENTS converged in one room; half disconnect; time until the rest converge;
//               then the half comes back (new sockets) and time until all converge again
//
// With --pid, the server's CPU seconds (/proc/PID/stat utime+stime) and RSS (/proc/PID/status
// VmRSS) are read at the edges of each measured phase: every rate is given per wall-clock
// second (`*_per_s`) and per server CPU-second (`*_per_cpu_s`). Every loop is bounded by a
// deadline.
"use strict";
const fs = require("fs");
const path = require("path");
const { performance } = require("perf_hooks");

function requireFrom(name) {
  const bases = [__dirname, path.join(__dirname, "..")];
  return require(require.resolve(name, { paths: bases }));
}
const io = requireFrom("socket.io-client");

// ------------------------------------------------------------------------------------------
// Arguments

const argv = process.argv.slice(2);
function opt(name, dflt) {
  const i = argv.indexOf("--" + name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
}
const URL_ = opt("url", "http://127.0.0.1:8080");
const SCENARIO = opt("scenario", "connect");
const PID = opt("pid", null);
// A cluster: --url takes a comma-separated list, client i connects to URLS[i % length] (repeat
// a URL to put pairs on one node); --pid takes a list, whose CPU and RSS are summed.
const URLS = URL_.split(",");
const PIDS = PID ? PID.split(",") : [];
const CLK_TCK = Number(opt("clk-tck", 100));
const PARAMS = JSON.parse(opt("params", "{}"));

const DEFAULTS = {
  connect: { clients: 500, concurrency: 50, timeout: 60 },
  relay: { pairs: 20, window: 8, warmup: 1, seconds: 3, concurrency: 50, timeout: 60 },
  broadcast: {
    rooms: 10, roomSize: 10, senders: 1, window: 4, warmup: 1, seconds: 3,
    concurrency: 50, size: 100, timeout: 60,
  },
  storm: { clients: 200, concurrency: 100, procs: 1, hold: 0, timeout: 60 },
  "rooms-storm": {
    clients: 4000, roomSize: 4, placement: "affine", seed: 1, concurrency: 100, procs: 1, hold: 0,
    timeout: 120, redis: null, logKey: null, quiet: 0, nodeByNode: false,
  },
  idle: {
    clients: 2000, roomSize: 100, concurrency: 100, idleSeconds: 5, pingIntervals: 0, settle: 1,
    timeout: 120,
  },
  disconnect: { clients: 400, concurrency: 100, timeout: 60 },
};
if (!DEFAULTS[SCENARIO]) {
  console.error(`unknown scenario ${SCENARIO}; one of ${Object.keys(DEFAULTS).join(", ")}`);
  process.exit(2);
}
const P = Object.assign({}, DEFAULTS[SCENARIO], PARAMS);
const WORKER = opt("worker", null); // a storm worker's share: {offset, count, total, concurrency}
const SLACK = (P.hold || 0) + (P.quiet || 0) + (P.idleSeconds || 0) + 5 * (P.pingIntervals || 0);
const HARD_DEADLINE = performance.now() + (P.timeout + SLACK + 60) * 1000;
// Whatever happens, this process ends by itself.
setTimeout(() => {
  console.error("loadgen: hard deadline reached, exiting");
  console.log(JSON.stringify({ scenario: SCENARIO, params: P, error: "hard deadline" }));
  process.exit(3);
}, (P.timeout + SLACK + 90) * 1000).unref();

function log(...a) {
  console.error(`[loadgen ${SCENARIO}]`, ...a);
}

// ------------------------------------------------------------------------------------------
// Server process probes

/**
 * The server's CPU time so far: {ticks} from /proc/PID/stat (utime + stime of every thread,
 * dead ones included, in 1/CLK_TCK s) and, finer, {ns, tids} summed over the live threads'
 * /proc/PID/task/TID/schedstat (nanoseconds on CPU). A 0.2 s phase is 20 ticks: 5 % steps.
 */
function serverCpuSample() {
  if (!PID) return null;
  const samples = PIDS.map(processCpuSample);
  if (samples.some((x) => x === null)) return null;
  return samples.reduce((a, b) => ({
    ticks: a.ticks + b.ticks,
    ns: a.ns !== null && b.ns !== null ? a.ns + b.ns : null,
    tids: a.tids !== null && b.tids !== null ? a.tids + ";" + b.tids : null,
  }));
}
function processCpuSample(PID) {
  try {
    const stat = fs.readFileSync(`/proc/${PID}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const sample = { ticks: Number(f[11]) + Number(f[12]), ns: null, tids: null }; // fields 14, 15
    try {
      const tids = fs.readdirSync(`/proc/${PID}/task`).sort();
      let ns = 0;
      for (const tid of tids) {
        ns += Number(fs.readFileSync(`/proc/${PID}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      }
      sample.ns = ns;
      sample.tids = tids.join(",");
    } catch (e) {
      // a thread ended between the listing and the read, or no schedstat: ticks only
    }
    return sample;
  } catch (e) {
    return null;
  }
}
/** CPU seconds the server used between two samples: nanoseconds when the same threads lived
 * at both ends (a thread that ended would take its time with it), else clock ticks. */
function serverCpuBetween(a, b) {
  if (a === null || b === null) return null;
  if (a.ns !== null && b.ns !== null && a.tids === b.tids) return (b.ns - a.ns) / 1e9;
  return (b.ticks - a.ticks) / CLK_TCK;
}
function serverRssKb() {
  if (!PID) return null;
  let sum = 0;
  for (const PID of PIDS) {
    const kb = serverRssKbOf(PID);
    if (kb === null) return null;
    sum += kb;
  }
  return sum;
}
function serverRssKbOf(PID) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${PID}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch (e) {
    return null;
  }
}
function serverPeakRssKb() {
  if (!PID) return null;
  let sum = 0;
  for (const PID of PIDS) {
    const kb = serverPeakRssKbOf(PID);
    if (kb === null) return null;
    sum += kb;
  }
  return sum;
}
function serverPeakRssKbOf(PID) {
  try {
    const m = /VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${PID}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch (e) {
    return null;
  }
}
function selfCpu() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
/** A measured phase: wall time, server CPU, generator CPU. */
function phase() {
  const t0 = performance.now(), c0 = serverCpuSample(), g0 = selfCpu();
  const each0 = PID ? PIDS.map(processCpuSample) : [];
  return {
    end() {
      const wall = (performance.now() - t0) / 1000;
      return {
        wall,
        serverCpu: serverCpuBetween(c0, serverCpuSample()),
        // each --pid's own share (a cluster: every node and Redis), in the order given
        serverCpuByPid: PID ? PIDS.map((pid, i) => round(serverCpuBetween(each0[i], processCpuSample(pid)), 4)) : [],
        genCpu: selfCpu() - g0,
      };
    },
  };
}

function percentile(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}
function latencyStats(arr) {
  const s = Float64Array.from(arr).sort();
  const r = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return { p50: r(percentile(s, 0.5)), p99: r(percentile(s, 0.99)), max: r(s.length ? s[s.length - 1] : null), n: s.length };
}
function round(x, d = 3) {
  if (x === null || x === undefined || !isFinite(x)) return null;
  const k = 10 ** d;
  return Math.round(x * k) / k;
}
/** A count per second of `seconds` (server CPU seconds, or wall-clock seconds). */
function rate(count, seconds) {
  return seconds ? round(count / seconds, 1) : null;
}
/** CPU seconds over wall-clock seconds, in % of one core: 100 means a saturated core. */
function pct(cpu, wall) {
  return cpu === null || !wall ? null : round((100 * cpu) / wall, 1);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------
// Clients

let errors = 0;
const errorSamples = [];
function noteError(what) {
  errors++;
  if (errorSamples.length < 10) errorSamples.push(String(what));
}

let pushesTotal = 0; // roomData pushes received by all clients
let dropped = 0; // sockets the server closed (or lost) while the scenario held them
let stopStarting = false; // set when a storm worker is told to finish before all have started

/**
 * One EasyRTC client: a socket.io socket that authenticates into ROOM and, with `track`, keeps
 * its room's member set up to date from the token and the roomData deltas.
 */
class Client {
  constructor(index, room, { track = false, onChange = null } = {}) {
    this.index = index;
    this.room = room;
    this.track = track;
    this.onChange = onChange;
    this.id = null;
    this.members = null; // Set of easyrtcids, from the token on
    this.pending = []; // deltas received before the token; null once it came
    this.converged = false;
    this.closedByUs = false;
    this.sock = null;
    this.url = URLS[index % URLS.length]; // a scenario may place it elsewhere
  }

  /** Connect and authenticate; resolves with the auth latency in ms. */
  start(timeoutMs) {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const timer = setTimeout(() => {
        reject(new Error("connect/auth timeout"));
        this.close();
      }, timeoutMs);
      const sock = io(this.url, {
        transports: ["websocket"],
        forceNew: true,
        reconnection: false,
        timeout: timeoutMs,
      });
      this.sock = sock;
      sock.on("easyrtcCmd", (msg) => this.onCmd(msg));
      sock.on("disconnect", (reason) => {
        if (this.closedByUs) return;
        dropped++;
        noteError(`client ${this.index} disconnected: ${reason}`);
      });
      sock.on("connect_error", (e) => {
        clearTimeout(timer);
        reject(new Error("connect_error " + e.message));
      });
      sock.on("connect", () => {
        const msgData = { apiVersion: "1.1.1-beta", applicationName: "bench" };
        if (this.room) msgData.roomJoin = { [this.room]: { roomName: this.room } };
        sock.emit("easyrtcAuth", { msgType: "authenticate", msgData }, (reply) => {
          clearTimeout(timer);
          if (!reply || reply.msgType !== "token") {
            reject(new Error("auth failed: " + JSON.stringify(reply).slice(0, 200)));
            return;
          }
          this.id = reply.msgData.easyrtcid;
          if (this.track) {
            const rd = reply.msgData.roomData && reply.msgData.roomData[this.room];
            this.setMembers(rd && rd.clientList ? Object.keys(rd.clientList) : []);
            for (const d of this.pending) this.apply(d);
            this.pending = null;
            if (this.onChange) this.onChange(this);
          }
          resolve(performance.now() - t0);
        });
      });
    });
  }

  onCmd(msg) {
    if (!msg || msg.msgType !== "roomData") return;
    pushesTotal++;
    if (!this.track) return;
    const rd = msg.msgData && msg.msgData.roomData && msg.msgData.roomData[this.room];
    if (!rd) return;
    if (this.pending !== null) {
      this.pending.push(rd);
      return;
    }
    this.apply(rd);
    if (this.onChange) this.onChange(this);
  }

  apply(rd) {
    if (rd.clientList) this.setMembers(Object.keys(rd.clientList));
    const delta = rd.clientListDelta;
    if (delta) {
      if (delta.updateClient) for (const id of Object.keys(delta.updateClient)) this.addMember(id);
      if (delta.removeClient) for (const id of Object.keys(delta.removeClient)) this.removeMember(id);
    }
  }

  setMembers(ids) {
    this.members = new Set(ids);
  }
  addMember(id) {
    this.members.add(id);
  }
  removeMember(id) {
    this.members.delete(id);
  }

  close() {
    this.closedByUs = true;
    if (this.sock) this.sock.close();
  }
}

/**
 * Start clients made by make(i) for i in [0, n), at most `concurrency` connecting at once.
 * Resolves with {clients, latencies, failed}.
 */
async function startMany(n, concurrency, make, timeoutMs) {
  const clients = new Array(n);
  const latencies = [];
  let failed = 0;
  let next = 0;
  async function worker() {
    while (next < n && performance.now() < HARD_DEADLINE && !stopStarting) {
      const i = next++;
      const c = make(i);
      clients[i] = c;
      try {
        latencies.push(await c.start(timeoutMs));
      } catch (e) {
        failed++;
        noteError(e.message);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { clients: clients.filter((c) => c && c.id), latencies, failed };
}

function closeAll(clients) {
  for (const c of clients) if (c) c.close();
}

/** Wait until pred() holds, polling every `every` ms, at most timeoutMs. Returns pred(). */
async function waitFor(pred, timeoutMs, every = 5) {
  const end = Math.min(performance.now() + timeoutMs, HARD_DEADLINE);
  while (!pred() && performance.now() < end) await sleep(every);
  return pred();
}

/** Wait until every --pid idles: under 5 % of a core over 250 ms (bounded by timeoutMs). */
async function waitIdle(timeoutMs) {
  const end = Math.min(performance.now() + timeoutMs, HARD_DEADLINE);
  while (performance.now() < end) {
    const before = PIDS.map(processCpuSample);
    await sleep(250);
    const used = PIDS.map((pid, i) => serverCpuBetween(before[i], processCpuSample(pid)));
    if (used.every((cpu) => cpu !== null && cpu < 0.0125)) return true;
  }
  return false;
}

/** Wait until no roomData push arrived for quietMs (bounded by timeoutMs). */
async function waitQuiet(quietMs, timeoutMs) {
  const end = Math.min(performance.now() + timeoutMs, HARD_DEADLINE);
  let last = pushesTotal, since = performance.now();
  while (performance.now() < end) {
    await sleep(50);
    if (pushesTotal !== last) {
      last = pushesTotal;
      since = performance.now();
    } else if (performance.now() - since >= quietMs) return true;
  }
  return false;
}

/**
 * Convergence tracking for a set of clients that share one room: each is converged when its
 * member set equals `expected` (a Set of ids) or, while expected is null, holds `size` members.
 */
class Convergence {
  constructor() {
    this.expected = null;
    this.size = 0;
    this.pendingCount = 0;
    this.doneAt = null;
    this.watch = new Set();
  }
  reset(clients, { size, expected = null }) {
    this.size = size;
    this.expected = expected;
    this.watch = new Set(clients);
    this.doneAt = null;
    for (const c of clients) c.converged = false;
    this.pendingCount = clients.length;
    for (const c of clients) if (c.members) this.check(c);
  }
  check(c) {
    if (!this.watch.has(c) || c.converged || !c.members) return;
    if (c.members.size !== this.size) return;
    if (this.expected) for (const id of c.members) if (!this.expected.has(id)) return;
    c.converged = true;
    if (--this.pendingCount === 0) this.doneAt = performance.now();
  }
  /** Exact check at the end: how many watched clients do not hold exactly `expected`. */
  mismatches(expected) {
    let bad = 0;
    for (const c of this.watch) {
      if (!c.members || c.members.size !== expected.size) { bad++; continue; }
      for (const id of c.members) if (!expected.has(id)) { bad++; break; }
    }
    return bad;
  }
}

// ------------------------------------------------------------------------------------------
// Scenarios

async function scenarioConnect() {
  const timeoutMs = P.timeout * 1000;
  const ph = phase();
  const { clients, latencies, failed } = await startMany(
    P.clients, P.concurrency, (i) => new Client(i, `c${i}`), timeoutMs);
  const m = ph.end();
  const rss = serverRssKb();
  closeAll(clients);
  const lat = latencyStats(latencies);
  return {
    metrics: {
      conn_per_s: round(clients.length / m.wall, 1),
      auth_p50_ms: lat.p50,
      auth_p99_ms: lat.p99,
      conn_per_cpu_s: rate(clients.length, m.serverCpu),
      server_cpu_pct: pct(m.serverCpu, m.wall),
      gen_cpu_pct: pct(m.genCpu, m.wall),
    },
    detail: { ok: clients.length, failed, wall_s: round(m.wall), server_cpu_s: round(m.serverCpu),
              gen_cpu_s: round(m.genCpu), server_rss_kb_after: rss, latency: lat },
  };
}

function candidate(seq) {
  return {
    type: "candidate",
    label: 0,
    id: String(seq),
    candidate: "candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 " +
      "ufrag zOWr network-id 1 network-cost 10 raddr 0.0.0.0 rport 0 tcptype passive x",
  };
}

async function scenarioRelay() {
  const timeoutMs = P.timeout * 1000;
  const n = P.pairs * 2;
  const { clients, failed } = await startMany(
    n, P.concurrency, (i) => new Client(i, `p${i >> 1}`), timeoutMs);
  if (clients.length !== n) throw new Error(`only ${clients.length}/${n} clients authenticated`);
  await waitQuiet(200, 5000);
  const RING = 1 << 16;
  let measuring = false, running = true;
  let delivered = 0, acked = 0, sentTotal = 0, deliveredTotal = 0;
  const lat = [];
  const pairs = [];
  for (let p = 0; p < P.pairs; p++) {
    const a = clients[2 * p], b = clients[2 * p + 1];
    const pair = { a, b, seq: 0, sent: new Float64Array(RING) };
    pairs.push(pair);
    b.sock.on("easyrtcCmd", (msg) => {
      if (msg.msgType !== "candidate") return;
      deliveredTotal++;
      if (!measuring) return;
      if (msg.senderEasyrtcid !== a.id) { noteError("wrong sender"); return; }
      const seq = Number(msg.msgData.id);
      lat.push(performance.now() - pair.sent[seq & (RING - 1)]);
      delivered++;
    });
  }
  function send(pair, onAck) {
    const seq = pair.seq++;
    pair.sent[seq & (RING - 1)] = performance.now();
    sentTotal++;
    pair.a.sock.emit("easyrtcCmd",
      { msgType: "candidate", targetEasyrtcid: pair.b.id, msgData: candidate(seq) },
      (reply) => {
        if (!reply || reply.msgType !== "ack") noteError("relay ack " + JSON.stringify(reply).slice(0, 200));
        if (measuring) acked++;
        if (onAck) onAck();
      });
  }
  function pump(pair) {
    if (running) send(pair, () => pump(pair));
  }
  let ticker = null;
  if (P.rate) {
    // fixed offered load: P.rate messages per second in all, spread over the pairs, every 5 ms
    let due = 0, next = 0;
    const t0 = performance.now();
    ticker = setInterval(() => {
      if (!running) return;
      due = Math.floor(((performance.now() - t0) / 1000) * P.rate);
      for (; next < due; next++) send(pairs[next % pairs.length], null);
    }, 5);
  } else {
    for (const pair of pairs) for (let w = 0; w < P.window; w++) pump(pair);
  }
  await sleep(P.warmup * 1000);
  const ph = phase();
  measuring = true;
  await sleep(P.seconds * 1000);
  measuring = false;
  const m = ph.end();
  running = false;
  if (ticker) clearInterval(ticker);
  await waitFor(() => deliveredTotal >= sentTotal, 5000);
  const lost = sentTotal - deliveredTotal;
  closeAll(clients);
  const l = latencyStats(lat);
  return {
    metrics: {
      msg_per_s: round(delivered / m.wall, 1),
      p50_ms: l.p50,
      p99_ms: l.p99,
      msg_per_cpu_s: rate(delivered, m.serverCpu),
      server_cpu_pct: pct(m.serverCpu, m.wall),
      gen_cpu_pct: pct(m.genCpu, m.wall),
    },
    detail: { pairs: P.pairs, window: P.window, rate: P.rate || null, delivered, acked, failed, undelivered: lost,
              wall_s: round(m.wall), server_cpu_s: round(m.serverCpu), gen_cpu_s: round(m.genCpu),
              server_cpu_s_by_pid: m.serverCpuByPid, latency: l },
  };
}

async function scenarioBroadcast() {
  const timeoutMs = P.timeout * 1000;
  const n = P.rooms * P.roomSize;
  const { clients, failed } = await startMany(
    n, P.concurrency, (i) => new Client(i, `b${Math.floor(i / P.roomSize)}`), timeoutMs);
  if (clients.length !== n) throw new Error(`only ${clients.length}/${n} clients authenticated`);
  await waitQuiet(300, 10000);
  const RING = 1 << 16;
  let measuring = false, running = true;
  let delivered = 0, sends = 0;
  const lat = [];
  const senders = [];
  for (let r = 0; r < P.rooms; r++) {
    for (let s = 0; s < P.senders; s++) {
      senders.push({ c: clients[r * P.roomSize + s], room: `b${r}`, seq: 0, sent: new Float64Array(RING) });
    }
  }
  const pad = "x".repeat(P.size);
  for (const c of clients) {
    c.sock.on("easyrtcMsg", (msg) => {
      if (!measuring) return;
      const d = msg.msgData;
      const s = senders[d.s];
      lat.push(performance.now() - s.sent[d.q & (RING - 1)]);
      delivered++;
    });
  }
  function pump(si) {
    if (!running) return;
    const s = senders[si];
    const seq = s.seq++;
    s.sent[seq & (RING - 1)] = performance.now();
    s.c.sock.emit("easyrtcMsg", { msgType: "bench", targetRoom: s.room, msgData: { s: si, q: seq, pad } },
      (reply) => {
        if (!reply || reply.msgType !== "ack") noteError("msg ack " + JSON.stringify(reply).slice(0, 200));
        if (measuring) sends++;
        pump(si);
      });
  }
  for (let si = 0; si < senders.length; si++) for (let w = 0; w < P.window; w++) pump(si);
  await sleep(P.warmup * 1000);
  const ph = phase();
  measuring = true;
  await sleep(P.seconds * 1000);
  measuring = false;
  const m = ph.end();
  running = false;
  await sleep(300);
  closeAll(clients);
  const l = latencyStats(lat);
  return {
    metrics: {
      deliveries_per_s: round(delivered / m.wall, 1),
      p50_ms: l.p50,
      p99_ms: l.p99,
      deliveries_per_cpu_s: rate(delivered, m.serverCpu),
      server_cpu_pct: pct(m.serverCpu, m.wall),
      gen_cpu_pct: pct(m.genCpu, m.wall),
    },
    detail: { rooms: P.rooms, room_size: P.roomSize, senders_per_room: P.senders, window: P.window,
              sends_acked: sends, delivered, failed, wall_s: round(m.wall),
              server_cpu_s: round(m.serverCpu), gen_cpu_s: round(m.genCpu), latency: l },
  };
}

// Join storm into one room. The coordinator (this process) forks `procs` worker processes (the
// same file with --worker), each holding its share of the clients: one Node process does not
// hold 10,000 socket.io clients that each track a 10,000-member list comfortably. Workers inherit
// the coordinator's CPU pinning, so they all share the generator core. Times are taken on
// CLOCK_MONOTONIC (process.hrtime), which every process on the machine shares.

function nowMs() {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The easyrtcids this process has seen, each with a small index: member sets are bitsets. */
const idIndex = new Map();
function indexOfId(id) {
  let i = idIndex.get(id);
  if (i === undefined) {
    i = idIndex.size;
    idIndex.set(id, i);
  }
  return i;
}

/** A storm client: its member set is a bitset over idIndex (10,000 × 10,000 members: 12.5 MB). */
class StormClient extends Client {
  constructor(index, room, total, onChange) {
    super(index, room, { track: true, onChange });
    this.bits = new Uint8Array((total >> 3) + 1);
    this.count = 0;
  }
  setMembers(ids) {
    this.bits.fill(0);
    this.count = 0;
    for (const id of ids) this.addMember(id);
  }
  addMember(id) {
    const i = indexOfId(id);
    if (i >> 3 >= this.bits.length) {
      const grown = new Uint8Array(Math.max(this.bits.length * 2, (i >> 3) + 1));
      grown.set(this.bits);
      this.bits = grown;
    }
    const bit = 1 << (i & 7);
    if (!(this.bits[i >> 3] & bit)) {
      this.bits[i >> 3] |= bit;
      this.count++;
    }
  }
  removeMember(id) {
    const i = idIndex.get(id);
    if (i === undefined || i >> 3 >= this.bits.length) return;
    const bit = 1 << (i & 7);
    if (this.bits[i >> 3] & bit) {
      this.bits[i >> 3] &= ~bit;
      this.count--;
    }
  }
  holdsExactly(expectedIndexes) {
    if (this.count !== expectedIndexes.length) return false;
    for (const i of expectedIndexes) if (!(this.bits[i >> 3] & (1 << (i & 7)))) return false;
    return true;
  }
}

// Rooms storm (issue 23): client i in room r{i // roomSize}, on the node P.placement gives it.
const ROOMS = SCENARIO === "rooms-storm";
const PLACEMENTS = ["affine", "random", "roundrobin", "first"];
function roomOf(i) {
  return Math.floor(i / P.roomSize);
}
/** How many members room r has once every client joined (the last room may be short). */
function roomMembers(r) {
  return Math.min(P.roomSize, P.clients - r * P.roomSize);
}
/** A hash of (seed, i) in [0, 1): every worker draws the same node for client i. */
function draw(seed, i) {
  let h = (Math.imul(seed, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}
/** The index in URLS of client i's node. */
function nodeOf(i) {
  const n = URLS.length;
  if (P.placement === "affine") return roomOf(i) % n;
  if (P.placement === "roundrobin") return i % n;
  if (P.placement === "first") return 0;
  return Math.floor(draw(P.seed, i) * n); // random
}
/** The easyrtcids room r must hold, from the coordinator's index -> id list (null: failed). */
function roomIds(byIndex, r) {
  return byIndex.slice(r * P.roomSize, r * P.roomSize + roomMembers(r));
}

/**
 * The client indexes of [offset, offset + count) in the order they log in: by index, or with
 * `nodeByNode` every client of the first node, then every one of the second...: each node's
 * share of the storm then runs while the other nodes idle, its CPU as on a machine of its own
 * (on this 2-core machine the nodes otherwise take turns on the cores).
 */
function loginOrder(offset, count) {
  const order = Array.from({ length: count }, (_, k) => offset + k);
  if (ROOMS && P.nodeByNode) order.sort((a, b) => nodeOf(a) - nodeOf(b) || a - b);
  return order;
}

/** A rooms-storm client: a small room, its members in the base class's Set. */
class RoomClient extends Client {
  constructor(index, onChange) {
    super(index, `r${roomOf(index)}`, { track: true, onChange });
    this.url = URLS[nodeOf(index)];
  }
  get count() {
    return this.members ? this.members.size : 0;
  }
  holdsExactly(ids) {
    if (!this.members || this.members.size !== ids.length) return false;
    for (const id of ids) if (id === null || !this.members.has(id)) return false;
    return true;
  }
}

// One command to Redis over a fresh connection, for the rooms storm's egress and log counts.
const net = require("net");
function redisCommand(hostPort, args) {
  return new Promise((resolve, reject) => {
    const [host, port] = hostPort.split(":");
    const sock = net.connect(Number(port), host);
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("redis timeout"));
    }, 5000);
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parseResp(buf, 0);
      if (r) {
        clearTimeout(timer);
        sock.end();
        resolve(r.value);
      }
    });
    sock.write(args.reduce((a, x) => a + `$${Buffer.byteLength(x)}\r\n${x}\r\n`, `*${args.length}\r\n`));
  });
}
/** One RESP2 value at `at` in buf: {value, end}, or null while incomplete. */
function parseResp(buf, at) {
  const eol = buf.indexOf("\r\n", at);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[at]);
  const line = buf.toString("utf8", at + 1, eol);
  const next = eol + 2;
  if (type === "+") return { value: line, end: next };
  if (type === "-") return { value: new Error(line), end: next };
  if (type === ":") return { value: Number(line), end: next };
  if (type === "$") {
    const n = Number(line);
    if (n < 0) return { value: null, end: next };
    if (buf.length < next + n + 2) return null;
    return { value: buf.toString("utf8", next, next + n), end: next + n + 2 };
  }
  if (type === "*") {
    const out = [];
    let pos = next;
    for (let k = 0; k < Number(line); k++) {
      const r = parseResp(buf, pos);
      if (!r) return null;
      out.push(r.value);
      pos = r.end;
    }
    return { value: out, end: pos };
  }
  throw new Error(`RESP type ${type}`);
}
/** Redis's bytes out and in so far, the entries ever appended to the log (P.logKey), and every
 * XADD (the partition logs' appends, whichever stream). */
async function redisSample() {
  if (!P.redis) return null;
  try {
    const info = await redisCommand(P.redis, ["INFO", "stats"]);
    const field = (name) => {
      const m = new RegExp(`^${name}:(\\d+)`, "m").exec(info);
      return m ? Number(m[1]) : null;
    };
    let entries = null;
    if (P.logKey) {
      const x = await redisCommand(P.redis, ["XINFO", "STREAM", P.logKey]);
      const k = Array.isArray(x) ? x.indexOf("entries-added") : -1;
      if (k >= 0) entries = x[k + 1];
      else if (x instanceof Error && /no such key/i.test(x.message)) entries = 0; // no entry yet
    }
    const stats = await redisCommand(P.redis, ["INFO", "commandstats"]);
    const calls = (cmd) => {
      const m = new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, "m").exec(String(stats));
      return m ? Number(m[1]) : 0;
    };
    const commands = {};
    for (const m of String(stats).matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) commands[m[1]] = Number(m[2]);
    return {
      out: field("total_net_output_bytes"), in: field("total_net_input_bytes"), entries, commands,
      xreads: calls("xread"),
      xadds: calls("xadd"), // the XADDs of scripts count too: every partition log's appends
    };
  } catch (e) {
    noteError(`redis sample: ${e.message}`);
    return null;
  }
}
function redisBetween(a, b, key) {
  return a === null || b === null || a[key] === null || b[key] === null ? null : b[key] - a[key];
}

/** Worker side: start this share of the clients on "go", report tokens and convergence; on
 * "final" (whenever it comes: the coordinator's deadline may fall mid-storm), check every list
 * against the ids the coordinator sends, report, close. */
async function stormWorker(W) {
  const timeoutMs = P.timeout * 1000;
  const clients = [];
  let convergedCount = 0;
  let onGo;
  const go = new Promise((r) => (onGo = r));
  let progress = null;
  const tokens = () => clients.filter((c) => c.id).length;
  function finish(m) {
    stopStarting = true;
    clearInterval(progress);
    let mismatched = null;
    if (m.ids && ROOMS) {
      mismatched = clients.filter((c) => !c.id || !c.holdsExactly(roomIds(m.ids, roomOf(c.index)))).length;
    } else if (m.ids) {
      const expected = m.ids.map(indexOfId);
      mismatched = clients.filter((c) => !c.id || !c.holdsExactly(expected)).length;
    }
    process.send({
      t: "final", tokens: tokens(), converged: convergedCount, mismatched, pushes: pushesTotal,
      dropped, errors, errorSamples, genCpu: selfCpu(),
    });
    closeAll(clients);
    setTimeout(() => process.exit(0), 300);
  }
  process.on("message", (m) => {
    if (m.t === "go") onGo();
    else if (m.t === "final") finish(m);
  });
  process.on("disconnect", () => process.exit(4)); // the coordinator is gone
  process.send({ t: "ready" });
  await go;
  const cpuAtGo = selfCpu();
  progress = setInterval(() => {
    process.send({ t: "progress", tokens: tokens(), converged: convergedCount });
  }, 5000);
  const complete = ROOMS ? (c) => c.count === roomMembers(roomOf(c.index)) : (c) => c.count === W.total;
  const onChange = (c) => {
    if (c.converged || !complete(c)) return;
    c.converged = true;
    if (++convergedCount === W.count) {
      process.send({ t: "converged", at: nowMs(), cpu: selfCpu() - cpuAtGo });
    }
  };
  const order = loginOrder(W.offset, W.count);
  const res = await startMany(W.count, W.concurrency, (i) => {
    const c = ROOMS ? new RoomClient(order[i], onChange) : new StormClient(W.offset + i, "storm", W.total, onChange);
    clients.push(c);
    return c;
  }, timeoutMs);
  if (stopStarting) return;
  process.send({
    t: "tokens", last: nowMs(), ids: res.clients.map((c) => c.id), idx: res.clients.map((c) => c.index),
    failed: res.failed,
    latencies: res.latencies,
  });
}

/** Coordinator side: fork the workers, time the storm, read the server's CPU and memory. */
async function scenarioStorm() {
  const { fork } = require("child_process");
  if (ROOMS && !PLACEMENTS.includes(P.placement)) throw new Error(`placement: one of ${PLACEMENTS}`);
  const procs = Math.max(1, Math.min(P.procs, P.clients));
  const workers = [];
  const state = { ready: 0, tokens: [], converged: [], finals: [], exited: [], progress: [] };
  for (let k = 0; k < procs; k++) {
    const offset = Math.floor((P.clients * k) / procs);
    const count = Math.floor((P.clients * (k + 1)) / procs) - offset;
    const W = { offset, count, total: P.clients, concurrency: Math.max(1, Math.ceil(P.concurrency / procs)) };
    const w = fork(__filename, [
      "--url", URL_, "--scenario", SCENARIO, "--params", JSON.stringify(P), "--worker", JSON.stringify(W),
    ], { execArgv: ["--max-old-space-size=4096"], stdio: ["ignore", "ignore", "inherit", "ipc"] });
    w.on("message", (m) => {
      if (m.t === "ready") state.ready++;
      else if (m.t === "tokens") state.tokens.push(m);
      else if (m.t === "converged") state.converged.push(m);
      else if (m.t === "final") state.finals.push(m);
      else if (m.t === "progress") state.progress[k] = m;
    });
    w.on("exit", (code) => state.exited.push(code));
    workers.push(w);
  }
  const alive = () => state.exited.length === 0;
  const converged0 = () => state.converged.length === procs;
  if (!(await waitFor(() => state.ready === procs || !alive(), 30000))) throw new Error("workers not ready");
  if (!alive()) throw new Error(`a worker exited before the start (${state.exited})`);
  const redis0 = await redisSample();
  const t0 = nowMs();
  const ph = phase();
  for (const w of workers) w.send({ t: "go" });
  const progress = setInterval(() => {
    const sum = (key) => state.progress.reduce((a, p) => a + (p ? p[key] : 0), 0);
    log(`${round((nowMs() - t0) / 1000, 1)} s: ${sum("tokens")} tokens, ${sum("converged")} lists ` +
      `complete of ${P.clients}; server RSS ${serverRssKb()} kB`);
  }, 10000);
  const timeoutMs = P.timeout * 1000;
  await waitFor(() => state.tokens.length === procs || !alive(), timeoutMs);
  const ok = await waitFor(
    () => state.converged.length === procs || !alive(), timeoutMs - (nowMs() - t0));
  const m = ph.end();
  const redis1 = await redisSample();
  let mq = null, redis2 = null, quietReached = null;
  if (P.quiet && converged0()) {
    quietReached = await waitIdle(P.quiet * 1000);
    mq = ph.end();
    redis2 = await redisSample();
  }
  clearInterval(progress);
  const rss = serverRssKb();
  const peak = serverPeakRssKb();
  const converged = ok && converged0();
  if (P.hold && alive()) {
    log(`converged: ${converged}; holding ${P.hold} s to see whether any client is dropped`);
    await sleep(P.hold * 1000);
  }
  // every list is checked against every id, once every id is known
  let ids = null;
  if (state.tokens.length === procs && ROOMS) {
    ids = new Array(P.clients).fill(null); // by client index
    for (const t of state.tokens) t.idx.forEach((index, k) => (ids[index] = t.ids[k]));
  } else if (state.tokens.length === procs) {
    ids = state.tokens.flatMap((t) => t.ids);
  }
  for (const w of workers) if (w.connected) w.send({ t: "final", ids });
  await waitFor(() => state.finals.length + state.exited.length >= procs, 60000);
  await waitFor(() => state.exited.length >= procs, 5000);
  for (const w of workers) if (w.exitCode === null) w.kill("SIGKILL");
  const sum = (key) => state.finals.reduce((a, f) => a + f[key], 0);
  const lastToken = Math.max(...state.tokens.map((t) => t.last));
  const convergedAt = converged ? Math.max(...state.converged.map((c) => c.at)) : null;
  // the generator's CPU until convergence: the workers' (from "go") and ours
  const genCpu = converged ? state.converged.reduce((a, c) => a + c.cpu, m.genCpu) : null;
  const pushes = sum("pushes");
  const okClients = sum("tokens");
  const wallToConverge = converged ? (convergedAt - t0) / 1000 : null;
  errors += sum("errors");
  for (const f of state.finals) for (const e of f.errorSamples) if (errorSamples.length < 10) errorSamples.push(e);
  const lat = latencyStats(state.tokens.flatMap((t) => t.latencies));
  const lostWorkers = procs - state.finals.length;
  const note = converged ? undefined : (
    `not every list complete within ${P.timeout} s: ${okClients} of ${P.clients} joined, ` +
    `${sum("converged")} lists complete` + (lostWorkers ? `, ${lostWorkers} workers lost` : ""));
  return {
    note,
    metrics: {
      // a client may hold every member a moment before another process has its last token
      converge_after_last_token_s: converged ? round(Math.max(0, convergedAt - lastToken) / 1000) : null,
      all_tokens_s: state.tokens.length === procs ? round((lastToken - t0) / 1000) : null,
      converge_s: round(wallToConverge),
      joins_per_s: state.tokens.length === procs ? round(okClients / ((lastToken - t0) / 1000), 1) : null,
      joins_per_cpu_s: rate(okClients, m.serverCpu),
      pushes_per_s: converged ? round(pushes / wallToConverge, 1) : null,
      pushes_per_cpu_s: rate(pushes, m.serverCpu),
      server_cpu_s: round(m.serverCpu),
      server_cpu_pct: pct(m.serverCpu, m.wall),
      gen_cpu_pct: pct(genCpu, m.wall),
      server_rss_mb: rss === null ? null : round(rss / 1024, 1),
      dropped: lostWorkers ? null : sum("dropped"),
    },
    detail: {
      clients: P.clients, concurrency: P.concurrency, procs, hold_s: P.hold || 0, converged,
      tokens: okClients, converged_clients: sum("converged"),
      mismatched: ids === null ? null : sum("mismatched"),
      failed: state.tokens.reduce((a, t) => a + t.failed, 0),
      lost_workers: lostWorkers, worker_exit_codes: state.exited, pushes,
      converged_minus_last_token_ms: converged ? round(convergedAt - lastToken) : null,
      wall_s: round(m.wall), server_cpu_s: round(m.serverCpu), server_cpu_s_each: m.serverCpuByPid,
      coordinator_cpu_s: round(m.genCpu), workers_cpu_s: round(state.finals.reduce((a, f) => a + f.genCpu, 0)),
      server_rss_kb_at_converge: rss, server_peak_rss_kb: peak, auth_latency: lat,
      ...(ROOMS ? roomsDetail(okClients, redis0, redis1) : {}),
      ...(mq ? {
        quiet_s: round(mq.wall), quiet_reached: quietReached, server_cpu_s_each_quiet: mq.serverCpuByPid,
        redis_out_bytes_quiet: redisBetween(redis0, redis2, "out"),
        log_entries_quiet: redisBetween(redis0, redis2, "entries"),
        log_reads_quiet: redisBetween(redis0, redis2, "xreads"),
        xadds_quiet: redisBetween(redis0, redis2, "xadds"),
      } : {}),
    },
  };
}

/** The rooms storm's placement and what Redis did from the start until convergence. */
function roomsDetail(tokens, redis0, redis1) {
  const rooms = Math.ceil(P.clients / P.roomSize);
  const perNode = new Array(URLS.length).fill(0);
  let spread = 0; // nodes per room, summed
  for (let r = 0; r < rooms; r++) {
    const nodes = new Set();
    for (let i = r * P.roomSize; i < r * P.roomSize + roomMembers(r); i++) {
      nodes.add(nodeOf(i));
      perNode[nodeOf(i)]++;
    }
    spread += nodes.size;
  }
  return {
    rooms, room_size: P.roomSize, placement: P.placement, nodes_per_room: round(spread / rooms),
    clients_per_node: perNode,
    // a login and a room join per client that got its token
    state_changes: 2 * tokens,
    redis_out_bytes: redisBetween(redis0, redis1, "out"),
    redis_in_bytes: redisBetween(redis0, redis1, "in"),
    log_entries: redisBetween(redis0, redis1, "entries"),
    log_reads: redisBetween(redis0, redis1, "xreads"),
    xadds: redisBetween(redis0, redis1, "xadds"),
    redis_calls: callsBetween(redis0, redis1),
  };
}

/** Redis's calls of each command from sample ``a`` to ``b`` (``INFO commandstats``). */
function callsBetween(a, b) {
  if (a === null || b === null) return null;
  const calls = {};
  for (const [cmd, n] of Object.entries(b.commands)) {
    const d = n - (a.commands[cmd] || 0);
    if (d > 0) calls[cmd] = d;
  }
  return calls;
}

async function scenarioIdle() {
  const timeoutMs = P.timeout * 1000;
  const rss0 = serverRssKb();
  const ph = phase();
  const { clients, latencies, failed } = await startMany(
    P.clients, P.concurrency, (i) => new Client(i, `i${Math.floor(i / P.roomSize)}`), timeoutMs);
  const tConnect = ph.end();
  const quiet = await waitQuiet(P.settle * 1000, timeoutMs);
  const setup = ph.end();
  await sleep(500);
  const rss1 = serverRssKb();
  // The server's ping interval, from the Engine.IO handshake: the idle window spans
  // `pingIntervals` of them when asked, so that heartbeats are what it measures.
  const engine = clients.length ? clients[0].sock.io.engine : null;
  const pingMs = engine && engine._pingInterval > 0 ? engine._pingInterval : null;
  const idleMs = Math.max(P.idleSeconds * 1000, pingMs ? P.pingIntervals * pingMs : 0);
  const dropped0 = dropped;
  const idle = phase();
  await sleep(idleMs);
  const im = idle.end();
  const rss2 = serverRssKb();
  const n = clients.length;
  closeAll(clients);
  const perConn = rss0 !== null && rss1 !== null && n ? (rss1 - rss0) / n : null;
  return {
    metrics: {
      rss_kb_per_conn: round(perConn, 2),
      conn_per_s: round(n / tConnect.wall, 1),
      conn_per_cpu_s: rate(n, setup.serverCpu),
      idle_cpu_pct: pct(im.serverCpu, im.wall),
      setup_cpu_s: round(setup.serverCpu),
      dropped_idle: dropped - dropped0,
    },
    detail: { clients: n, requested: P.clients, room_size: P.roomSize, failed, quiet,
              ping_interval_s: pingMs === null ? null : pingMs / 1000, dropped_total: dropped,
              rss_kb_before: rss0, rss_kb_after: rss1, rss_kb_after_idle: rss2,
              connect_wall_s: round(tConnect.wall), setup_wall_s: round(setup.wall),
              setup_server_cpu_s: round(setup.serverCpu), setup_gen_cpu_s: round(setup.genCpu),
              idle_s: round(im.wall), idle_server_cpu_s: round(im.serverCpu),
              pushes: pushesTotal, auth_latency: latencyStats(latencies) },
  };
}

async function scenarioDisconnect() {
  const timeoutMs = P.timeout * 1000;
  const N = P.clients;
  const conv = new Convergence();
  conv.size = N;
  conv.pendingCount = N;
  const all = [];
  const res = await startMany(N, P.concurrency, (i) => {
    const c = new Client(i, "dc", { track: true, onChange: (x) => conv.check(x) });
    conv.watch.add(c);
    all.push(c);
    return c;
  }, timeoutMs);
  if (res.clients.length !== N) throw new Error(`only ${res.clients.length}/${N} clients authenticated`);
  const joined = await waitFor(() => conv.doneAt !== null, timeoutMs);
  if (!joined) throw new Error("setup join did not converge");
  await waitQuiet(300, 10000);

  // Phase 1: half of them go away at once.
  const leaving = all.filter((c) => c.index % 2 === 1);
  const staying = all.filter((c) => c.index % 2 === 0);
  const expected = new Set(staying.map((c) => c.id));
  conv.reset(staying, { size: staying.length, expected });
  let pushes0 = pushesTotal;
  const ph1 = phase();
  closeAll(leaving);
  const ok1 = await waitFor(() => conv.doneAt !== null, timeoutMs);
  const m1 = ph1.end();
  const pushes1 = pushesTotal - pushes0;
  const bad1 = conv.mismatches(expected);

  // Phase 2 (recovery): as many new clients join again.
  pushes0 = pushesTotal;
  const ph2 = phase();
  const rejoin = [];
  conv.size = N;
  conv.expected = null;
  conv.doneAt = null;
  conv.pendingCount = N;
  conv.watch = new Set();
  for (const c of staying) {
    c.converged = false;
    conv.watch.add(c);
  }
  const res2 = await startMany(leaving.length, P.concurrency, (i) => {
    const c = new Client(N + i, "dc", { track: true, onChange: (x) => conv.check(x) });
    conv.watch.add(c);
    rejoin.push(c);
    return c;
  }, timeoutMs);
  for (const c of staying) conv.check(c);
  const ok2 = await waitFor(() => conv.doneAt !== null, timeoutMs);
  const m2 = ph2.end();
  const pushes2 = pushesTotal - pushes0;
  const expected2 = new Set([...staying, ...res2.clients].map((c) => c.id));
  const bad2 = conv.mismatches(expected2);
  closeAll(staying);
  closeAll(rejoin);
  return {
    metrics: {
      leave_converge_s: ok1 ? round(m1.wall) : null,
      rejoin_converge_s: ok2 ? round(m2.wall) : null,
      leave_pushes_per_s: rate(pushes1, m1.wall),
      leave_pushes_per_cpu_s: rate(pushes1, m1.serverCpu),
      rejoin_pushes_per_s: rate(pushes2, m2.wall),
      rejoin_pushes_per_cpu_s: rate(pushes2, m2.serverCpu),
      rejoin_joins_per_s: rate(res2.clients.length, m2.wall),
      rejoin_joins_per_cpu_s: rate(res2.clients.length, m2.serverCpu),
    },
    detail: { clients: N, left: leaving.length, leave_converged: ok1, leave_mismatched: bad1,
              leave_pushes: pushes1, leave_server_cpu_s: round(m1.serverCpu),
              leave_gen_cpu_s: round(m1.genCpu), rejoin_converged: ok2, rejoin_mismatched: bad2,
              rejoin_pushes: pushes2, rejoin_failed: res2.failed,
              rejoin_server_cpu_s: round(m2.serverCpu), rejoin_gen_cpu_s: round(m2.genCpu) },
  };
}

const SCENARIOS = {
  connect: scenarioConnect,
  relay: scenarioRelay,
  broadcast: scenarioBroadcast,
  storm: scenarioStorm,
  "rooms-storm": scenarioStorm,
  idle: scenarioIdle,
  disconnect: scenarioDisconnect,
};

if (WORKER) {
  stormWorker(JSON.parse(WORKER)).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else (async () => {
  const t0 = performance.now();
  const cpu0 = serverCpuSample();
  let out;
  try {
    const r = await SCENARIOS[SCENARIO]();
    out = { scenario: SCENARIO, params: P, ...r };
  } catch (e) {
    out = { scenario: SCENARIO, params: P, error: String(e && e.stack ? e.stack : e) };
  }
  out.total = {
    wall_s: round((performance.now() - t0) / 1000),
    server_cpu_s: round(serverCpuBetween(cpu0, serverCpuSample())),
    gen_cpu_s: round(selfCpu()),
    errors,
    error_samples: errorSamples,
  };
  console.log(JSON.stringify(out));
  // Give the closes a moment to go out, then leave whatever is still open.
  setTimeout(() => process.exit(0), 300);
})();
