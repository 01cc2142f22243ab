/*
 * easyrtc_resume.js: keeps the calls of an easyrtc.js (open-easyrtc 2.1.x) app up when its
 * signaling socket drops, with easyrtc-server's resume keys. Served by easyrtc-server at
 * /easyrtc/easyrtc_resume.js; load it after socket.io.js and easyrtc.js, then, before
 * easyrtc.connect or easyrtc.easyApp:
 *
 *     easyrtcResume.enable(easyrtc);                     // or enable(easyrtc, {socketUrl, socketOptions})
 *
 * How, in easyrtc.js terms: it hands easyrtc.js a socket of its own with
 * easyrtc.useThisSocketConnection (the public way to give it a socket), so easyrtc.js never
 * sees a drop. Under it, real socket.io sockets come and go:
 *
 * - every real socket gives the server this tab's resume key (made once per tab, kept in
 *   sessionStorage; a duplicated tab makes its own) and the server's last resume token
 *   (CONNECT auth for socket.io-client 3/4; the query for 2.x);
 * - a drop ("transport close", "ping timeout", "transport error") is not passed on: the peer
 *   connections, easyrtc.roomJoin, the app's room lists stay as they are. It reconnects with
 *   backoff (0.25 s doubling to 2 s, with jitter) until the server's grace is over, logs in
 *   again with what easyrtc.js sent at its login (rooms, presence and username as they are
 *   now), and when the token carries the same easyrtcid, hands easyrtc.js the rooms' current
 *   lists (as a roomData command, as the server sends them) and sends what easyrtc.js emitted
 *   meanwhile. A peer of an open call missing from those lists (after a server restart it may
 *   come back after us) stays listed for the grace; if it does not come back, it leaves then;
 * - it confirms every relayed message (easyrtcResumeAcks): the server numbers them and sends
 *   again, after a resume, what this tab did not confirm (it may have been lost with the old
 *   socket, or with a cluster node); a message whose number came before is acknowledged and
 *   dropped, so easyrtc.js gets each one once; one that comes after a gap waits up to 2 s for
 *   the missing one, so it gets them in order;
 * - a goodbye stays a goodbye: easyrtc.disconnect(), the server closing the socket, a failed
 *   resume (the grace was over: another easyrtcid) end it as easyrtc.js would have ended
 *   it (its 'disconnect' handlers run), and on pagehide the socket says goodbye (on
 *   long-polling also with a beacon: a closing tab only aborts a request).
 *
 * It patches nothing inside easyrtc.js: it uses useThisSocketConnection, the socket methods
 * easyrtc.js calls (on, off, emit, connected, disconnect, close), the public roomJoin,
 * username, presenceShow, presenceStatus, myEasyrtcid and getConnectStatus.
 */
(function (root) {
  "use strict";

  var KEY_ITEM = "easyrtcResumeKey";
  var LIVE_ITEM = "easyrtcResumeLive";
  var DROPS = { "transport close": 1, "ping timeout": 1, "transport error": 1 };
  var MAX_WAITING = 500; // emits kept while the socket is down
  var DEFAULT_GRACE = 30; // seconds, until the server says otherwise
  var SEEN_WINDOW = 1024; // message numbers kept above the last contiguous one, per origin
  var MAX_ORIGINS = 64; // servers (processes, nodes) whose numbers are kept
  var GAP_WAIT = 2000; // ms a numbered message waits for a missing predecessor (resent after 1 s)

  function newKey() {
    var bytes = new Uint8Array(32);
    root.crypto.getRandomValues(bytes);
    var text = "";
    for (var i = 0; i < bytes.length; i++) {
      text += String.fromCharCode(bytes[i]);
    }
    return root.btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // One key per tab. A tab duplicated while the first still runs copies sessionStorage,
  // LIVE_ITEM included: it makes a key of its own (two tabs must not share an identity).
  function tabKey() {
    try {
      var storage = root.sessionStorage;
      var key = storage.getItem(KEY_ITEM);
      if (!key || storage.getItem(LIVE_ITEM)) {
        key = newKey();
        storage.setItem(KEY_ITEM, key);
      }
      storage.setItem(LIVE_ITEM, "1");
      root.addEventListener("pagehide", function () {
        storage.removeItem(LIVE_ITEM);
      });
      root.addEventListener("pageshow", function () {
        storage.setItem(LIVE_ITEM, "1");
      });
      return key;
    } catch (e) {
      return newKey(); // no storage: a key per page
    }
  }

  function copy(obj) {
    var out = {};
    for (var name in obj || {}) {
      if (Object.prototype.hasOwnProperty.call(obj, name)) {
        out[name] = obj[name];
      }
    }
    return out;
  }

  function ResumingSocket(easyrtc, io, url, options) {
    this.easyrtc = easyrtc;
    this.ioFactory = io;
    this.url = url;
    this.options = options || {};
    this.key = tabKey();
    this.token = null;
    this.held = false; // the server holds this login on a drop (it sent easyrtcResume)
    this.grace = DEFAULT_GRACE;
    this.handlers = {}; // easyrtc.js's listeners, by event
    this.real = null;
    this.connected = false; // what easyrtc.js sees
    this.state = "idle"; // idle | connecting | up | resuming | ended
    this.auth = null; // the easyrtcAuth message easyrtc.js sent
    this.waiting = []; // emits made while resuming
    this.lists = {}; // room -> easyrtcid -> last entry seen
    this.missing = {}; // easyrtcid -> timer (kept listed after a resume)
    this.retry = null;
    this.deadline = 0;
    this.attempt = 0;
    this.resumes = 0;
    this.droppedAt = 0;
    this.resumeTimes = []; // ms from each drop to its resume (the last 20)
    this.history = []; // [time, what] of the last 50 socket events, for diagnosis
    this.seen = {}; // origin -> the relayed messages' numbers had (firstTime)
    this.early = {}; // origin -> n -> [event, msg] that came after a gap (inOrder)
    this.gapTimers = {}; // origin -> timer
    var self = this;
    root.addEventListener("pagehide", function () {
      self.goodbye();
    });
  }

  // What apps read of a socket.io socket: the current real one's manager and id.
  Object.defineProperty(ResumingSocket.prototype, "io", {
    get: function () {
      return this.real ? this.real.io : undefined;
    },
  });
  Object.defineProperty(ResumingSocket.prototype, "id", {
    get: function () {
      return this.real ? this.real.id : undefined;
    },
  });

  ResumingSocket.prototype.on = function (event, handler) {
    (this.handlers[event] = this.handlers[event] || []).push(handler);
    if (event === "connect" && (this.state === "idle" || this.state === "ended")) {
      this.start();
    }
    return this;
  };

  ResumingSocket.prototype.off = function (event, handler) {
    var list = this.handlers[event] || [];
    var at = list.indexOf(handler);
    if (at >= 0) {
      list.splice(at, 1);
    }
    return this;
  };

  ResumingSocket.prototype.note = function (what) {
    this.history = this.history.slice(-49).concat([[Date.now(), what]]);
  };

  ResumingSocket.prototype.fire = function (event) {
    var args = Array.prototype.slice.call(arguments, 1);
    var list = (this.handlers[event] || []).slice();
    for (var i = 0; i < list.length; i++) {
      list[i].apply(null, args);
    }
  };

  ResumingSocket.prototype.emit = function (event, data, ack) {
    var self = this;
    if (event === "easyrtcAuth") {
      this.auth = data; // what to log in with again
    }
    if (ack) { // follow the whole lists of a token or a roomJoin reply
      var given = ack;
      ack = function (reply) {
        var data = reply && reply.msgData;
        if (data && data.roomData && (reply.msgType === "token" || reply.msgType === "roomData")) {
          self.filterRoomData({ msgData: { roomData: data.roomData } });
        }
        given(reply);
      };
    }
    if (this.state === "up" && this.real) {
      this.real.emit(event, data, ack || function () {});
    } else if (this.state === "resuming" && this.waiting.length < MAX_WAITING) {
      this.waiting.push([event, data, ack]);
    } else if (ack) {
      ack({ msgType: "error", msgData: { errorCode: "MSG_REJECT_NO_AUTH",
        errorText: "Not connected to the server." } });
    }
    return this;
  };

  // easyrtc.disconnect() (and closing a socket easyrtc.js made) end it: a goodbye.
  ResumingSocket.prototype.disconnect = function () {
    this.goodbye();
    this.end("io client disconnect");
    return this;
  };
  ResumingSocket.prototype.close = ResumingSocket.prototype.disconnect;

  ResumingSocket.prototype.start = function () {
    this.state = "connecting";
    this.token = null;
    this.held = false;
    this.auth = null;
    this.lists = {};
    this.seen = {};
    this.early = {};
    this.open();
  };

  ResumingSocket.prototype.socketOptions = function () {
    var options = copy(this.options);
    options.reconnection = false; // reconnecting is ours
    options.forceNew = true;
    if (!options.transports) {
      options.transports = ["polling", "websocket"];
    }
    var given = { easyrtcResumeKey: this.key, easyrtcResumeAcks: "1" };
    if (this.token) {
      given.easyrtcResumeToken = this.token;
    }
    if (this.ioFactory.protocol >= 5) {
      options.auth = given; // Socket.IO 3/4: in the CONNECT packet, never in a URL
    } else {
      var query = copy(options.query);
      query.easyrtcResumeKey = given.easyrtcResumeKey;
      query.easyrtcResumeAcks = given.easyrtcResumeAcks;
      if (given.easyrtcResumeToken) {
        query.easyrtcResumeToken = given.easyrtcResumeToken;
      }
      options.query = query; // socket.io-client 2.x has no CONNECT auth
    }
    return options;
  };

  ResumingSocket.prototype.open = function () {
    var self = this;
    var make = this.ioFactory;
    var real = make(this.url || undefined, this.socketOptions()); // no URL: this page's
    this.real = real;
    this.note("open");
    real.on("connect", function () {
      if (self.real !== real) {
        return;
      }
      self.note("connect");
      if (self.state === "connecting") {
        self.state = "up";
        self.connected = true;
        self.fire("connect");
      } else if (self.state === "resuming") {
        self.login(real);
      }
    });
    real.on("disconnect", function (reason) {
      self.note("disconnect: " + reason);
      if (self.real === real) {
        self.dropped(reason);
      }
    });
    real.on("connect_error", function (error) {
      self.note("connect_error: " + (error && error.message));
      if (self.real === real && self.state === "resuming") {
        self.again();
      } else if (self.real === real && self.state === "connecting") {
        self.fire("error", "connect_error");
      }
    });
    real.on("easyrtcResume", function (data) {
      if (self.real === real && data) {
        self.held = true; // a cluster's push has no token: its holds outlive any node
        self.token = data.resumeToken || self.token;
        self.grace = data.resumeGrace || self.grace;
      }
    });
    ["easyrtcCmd", "easyrtcMsg"].forEach(function (event) {
      real.on(event, function (msg, ack) {
        if (self.real !== real) {
          return;
        }
        if (msg && msg.easyrtcSeq) { // numbered: confirmed at once, passed on once, in order
          if (ack) {
            ack({ msgType: "ack" });
          }
          if (self.firstTime(msg.easyrtcSeq)) { // else a second copy, sent again: had it
            self.inOrder(event, msg);
          }
          return;
        }
        self.handOver(event, msg, ack);
      });
    });
  };

  ResumingSocket.prototype.handOver = function (event, msg, ack) {
    if (event === "easyrtcCmd" && msg && msg.msgType === "roomData") {
      msg = this.filterRoomData(msg);
    }
    this.fire(event, msg, ack || function () {});
  };

  // A numbered message after a gap (its predecessor was sent again and is still on its way)
  // waits up to GAP_WAIT ms for the gap to fill, then goes on anyway.
  ResumingSocket.prototype.inOrder = function (event, msg) {
    var self = this;
    var origin = String(msg.easyrtcSeq[0]);
    var seen = this.seen[origin];
    var early = this.early[origin] || (this.early[origin] = {});
    early[msg.easyrtcSeq[1]] = [event, msg];
    this.passOn(origin, function (n) {
      return n <= seen.last;
    });
    if (this.early[origin] && !this.gapTimers[origin]) {
      this.gapTimers[origin] = setTimeout(function () {
        delete self.gapTimers[origin];
        self.passOn(origin, function () {
          return true;
        });
      }, GAP_WAIT);
    }
  };

  ResumingSocket.prototype.passOn = function (origin, ready) {
    var early = this.early[origin] || {};
    var numbers = Object.keys(early).map(Number).sort(function (a, b) {
      return a - b;
    });
    for (var i = 0; i < numbers.length && ready(numbers[i]); i++) {
      var item = early[numbers[i]];
      delete early[numbers[i]];
      this.handOver(item[0], item[1]);
    }
    if (!Object.keys(early).length) {
      delete this.early[origin];
      clearTimeout(this.gapTimers[origin]);
      delete this.gapTimers[origin];
    }
  };

  // A relayed message the server numbered ([origin, n]: it sends again what this tab did not
  // confirm) is new unless that number came before; a gap that never fills is skipped after
  // SEEN_WINDOW numbers.
  ResumingSocket.prototype.firstTime = function (stamp) {
    var origin = String(stamp[0]);
    var n = stamp[1];
    var seen = this.seen[origin];
    if (!seen) {
      var origins = Object.keys(this.seen);
      if (origins.length >= MAX_ORIGINS) {
        delete this.seen[origins[0]];
      }
      seen = this.seen[origin] = { last: 0, above: {}, count: 0 };
    }
    if (typeof n !== "number" || n <= seen.last || seen.above[n]) {
      return false;
    }
    seen.above[n] = true;
    seen.count += 1;
    if (seen.count > SEEN_WINDOW) {
      var lowest = Math.min.apply(null, Object.keys(seen.above).map(Number));
      seen.last = lowest - 1;
    }
    while (seen.above[seen.last + 1]) {
      seen.last += 1;
      delete seen.above[seen.last];
      seen.count -= 1;
    }
    return true;
  };

  ResumingSocket.prototype.dropped = function (reason) {
    var loggedIn = this.state === "up" && this.easyrtc.myEasyrtcid && this.held;
    if (this.state === "resuming") {
      this.again();
    } else if (loggedIn && DROPS[reason]) {
      this.state = "resuming";
      this.droppedAt = Date.now();
      this.deadline = this.droppedAt + this.grace * 1000;
      this.attempt = 0;
      this.again();
    } else {
      this.end(reason);
    }
  };

  ResumingSocket.prototype.again = function () {
    var self = this;
    if (this.real) {
      this.real.off();
      this.real.close();
    }
    this.real = null;
    if (Date.now() >= this.deadline) {
      this.end("resume timeout");
      return;
    }
    var delay = Math.min(2000, 250 * Math.pow(2, this.attempt++));
    delay = delay / 2 + Math.random() * delay / 2;
    clearTimeout(this.retry);
    this.retry = setTimeout(function () {
      if (self.state === "resuming") {
        self.open();
      }
    }, delay);
  };

  // Log in again on a new socket with what easyrtc.js logged in with, as things are now.
  ResumingSocket.prototype.login = function (real) {
    var self = this;
    var easyrtc = this.easyrtc;
    var message = copy(this.auth || { msgType: "authenticate", msgData: {} });
    var data = copy(message.msgData);
    data.roomJoin = copy(easyrtc.roomJoin);
    if (easyrtc.username) {
      data.username = easyrtc.username;
    }
    if (easyrtc.presenceShow) {
      data.setPresence = { show: easyrtc.presenceShow, status: easyrtc.presenceStatus };
    }
    message.msgData = data;
    real.emit("easyrtcAuth", message, function (reply) {
      self.note("login: " + (reply && reply.msgType));
      if (self.real !== real || self.state !== "resuming") {
        return;
      }
      if (!reply || reply.msgType !== "token") {
        self.again(); // e.g. too many sockets for a moment: try again within the grace
        return;
      }
      if (reply.msgData.easyrtcid !== easyrtc.myEasyrtcid) {
        real.disconnect(); // the grace was over: a new identity is not ours to take
        self.end("resume refused");
        return;
      }
      self.resumed(reply);
    });
  };

  ResumingSocket.prototype.resumed = function (reply) {
    this.state = "up";
    this.resumes += 1;
    this.resumeTimes = this.resumeTimes.slice(-19).concat([Date.now() - this.droppedAt]);
    var data = reply.msgData;
    var msg = { msgType: "roomData", msgData: { roomData: data.roomData }, serverTime: data.serverTime };
    this.fire("easyrtcCmd", this.filterRoomData(msg), function () {});
    var waiting = this.waiting;
    this.waiting = [];
    for (var i = 0; i < waiting.length; i++) {
      this.real.emit(waiting[i][0], waiting[i][1], waiting[i][2] || function () {});
    }
    this.fire("easyrtcResumed", data.easyrtcid);
  };

  // Keep a peer of an open call listed while it may still come back (after a restart the
  // server knows only who is back); follow every list and delta to know the last entries.
  ResumingSocket.prototype.filterRoomData = function (msg) {
    var rooms = msg.msgData && msg.msgData.roomData;
    if (!rooms) {
      return msg;
    }
    var easyrtc = this.easyrtc;
    var me = easyrtc.myEasyrtcid;
    for (var room in rooms) {
      if (!Object.prototype.hasOwnProperty.call(rooms, room)) {
        continue;
      }
      var entry = rooms[room];
      var known = this.lists[room] || {};
      if (entry.roomStatus === "leave") {
        delete this.lists[room];
        continue;
      }
      if (entry.clientList) {
        var list = copy(entry.clientList);
        for (var id in known) {
          if (!list[id] && id !== me && this.inCall(id)) {
            list[id] = known[id];
            this.keepListed(room, id);
          }
        }
        for (var present in entry.clientList) {
          this.cameBack(present);
        }
        entry.clientList = list;
        this.lists[room] = copy(list);
      } else if (entry.clientListDelta) {
        var update = entry.clientListDelta.updateClient || {};
        var remove = entry.clientListDelta.removeClient || {};
        for (var added in update) {
          known[added] = update[added];
          this.cameBack(added);
        }
        for (var gone in remove) {
          delete known[gone];
        }
        this.lists[room] = known;
      }
    }
    return msg;
  };

  ResumingSocket.prototype.inCall = function (id) {
    var easyrtc = this.easyrtc;
    return easyrtc.getConnectStatus(id) !== easyrtc.NOT_CONNECTED;
  };

  ResumingSocket.prototype.keepListed = function (room, id) {
    var self = this;
    if (this.missing[id]) {
      return;
    }
    this.missing[id] = setTimeout(function () {
      delete self.missing[id];
      var known = self.lists[room];
      if (!known || !known[id] || self.state === "ended") {
        return;
      }
      delete known[id]; // it did not come back: it left
      var removal = {};
      removal[id] = { easyrtcid: id };
      var rooms = {};
      rooms[room] = { roomName: room, roomStatus: "join", clientListDelta: { removeClient: removal } };
      self.fire("easyrtcCmd", { msgType: "roomData", msgData: { roomData: rooms } }, function () {});
    }, (this.grace + 5) * 1000);
  };

  ResumingSocket.prototype.cameBack = function (id) {
    if (this.missing[id]) {
      clearTimeout(this.missing[id]);
      delete this.missing[id];
    }
  };

  // A goodbye the server sees at once: a DISCONNECT packet (on long-polling also as a beacon,
  // since a page going away may abort its requests).
  ResumingSocket.prototype.goodbye = function () {
    var real = this.real;
    if (!real || this.state === "ended" || this.state === "idle") {
      return;
    }
    try {
      var engine = real.io && real.io.engine;
      if (engine && engine.transport && engine.transport.name === "polling" && engine.id &&
          this.ioFactory.protocol >= 5 && root.navigator.sendBeacon) {
        var base = (real.io.uri || root.location.origin).replace(/\/$/, "");
        var path = (real.io.opts && real.io.opts.path) || "/socket.io/";
        root.navigator.sendBeacon(base.replace(/^(https?:\/\/[^/]+).*$/, "$1") + path +
          "?EIO=4&transport=polling&sid=" + encodeURIComponent(engine.id), "41");
      }
    } catch (e) {
      // the DISCONNECT below is the goodbye too
    }
    this.state = "ended";
    real.disconnect();
  };

  ResumingSocket.prototype.end = function (reason) {
    clearTimeout(this.retry);
    for (var origin in this.gapTimers) {
      clearTimeout(this.gapTimers[origin]);
    }
    this.gapTimers = {};
    this.early = {};
    for (var id in this.missing) {
      clearTimeout(this.missing[id]);
    }
    this.missing = {};
    if (this.real) {
      this.real.off();
      this.real.disconnect();
      this.real = null;
    }
    var wasOpen = this.connected || this.state === "resuming" || this.state === "up";
    this.state = "ended";
    this.connected = false;
    var waiting = this.waiting;
    this.waiting = [];
    for (var i = 0; i < waiting.length; i++) {
      if (waiting[i][2]) {
        waiting[i][2]({ msgType: "error", msgData: { errorCode: "MSG_REJECT_NO_AUTH",
          errorText: "Not connected to the server." } });
      }
    }
    if (wasOpen) {
      this.fire("disconnect", reason);
    }
    this.handlers = {}; // easyrtc.js registers them again at its next connect
  };

  var easyrtcResume = {
    /** Make `easyrtc` (easyrtc.js 2.1.x) keep its calls up; call before connect/easyApp.
     *  options.socketUrl: the server (default: this page's); options.socketOptions: options for
     *  io() (as for easyrtc.setSocketUrl; reconnection and forceNew are ours). Returns the
     *  socket handed to easyrtc.js (its `resumes` counts the resumes). */
    enable: function (easyrtc, options) {
      options = options || {};
      var io = options.io || root.io;
      if (!io) {
        throw new Error("easyrtc_resume.js needs socket.io.js loaded first");
      }
      var socket = new ResumingSocket(easyrtc, io, options.socketUrl || null, options.socketOptions);
      easyrtc.useThisSocketConnection(socket);
      easyrtcResume.socket = socket;
      return socket;
    },
    socket: null,
  };
  root.easyrtcResume = easyrtcResume;
})(typeof window !== "undefined" ? window : this);
