// The admin dashboard: polls the admin API and renders applications, rooms and occupants.
// No framework and no build step. The token is typed in by the user and kept in this tab's
// sessionStorage only; every request sends it as a bearer token.
"use strict";

(function () {
  const TOKEN_KEY = "easyrtc-admin-token";
  const POLL_MS = 1000;
  const body = document.body;
  const status = document.getElementById("status");
  const appsBox = document.getElementById("apps");
  let timer = null;

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  async function api(method, path, payload) {
    const init = { method: method, headers: { Authorization: "Bearer " + token() } };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch("api" + path, init);
    if (response.status === 401) {
      signOut("The token was refused.");
      throw new Error("unauthorized");
    }
    const data = await response.json();
    if (!response.ok) {
      throw new Error(data.error || response.statusText);
    }
    return data;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function describePresence(presence) {
    const names = { chat: "available", away: "away", dnd: "do not disturb", xa: "away for long" };
    const text = names[presence.show] || presence.show || "available";
    return presence.status ? text + " \u2014 " + presence.status : text;
  }

  function occupantItem(app, occupant) {
    const presence = occupant.presence || {};
    const since = occupant.connectedSince ? new Date(occupant.connectedSince) : null;
    const kick = el("button", { type: "button", className: "kick", text: "Kick" });
    kick.addEventListener("click", async function () {
      kick.disabled = true;
      try {
        await api("DELETE", "/connections/" + encodeURIComponent(occupant.easyrtcid));
        say("Kicked " + (occupant.username || occupant.easyrtcid) + ".");
        refresh();
      } catch (error) {
        say("Kick failed: " + error.message, true);
        kick.disabled = false;
      }
    });
    const message = el("button", { type: "button", className: "quiet message", text: "Message" });
    message.addEventListener("click", function () {
      document.getElementById("message-target-kind").value = "easyrtcid";
      document.getElementById("message-app").value = app;
      document.getElementById("message-target").value = occupant.easyrtcid;
      document.getElementById("message-data").focus();
    });
    return el(
      "li",
      {
        "data-easyrtcid": occupant.easyrtcid,
        "data-show": presence.show || "chat",
        "data-status": presence.status || "",
      },
      [
        el("span", {}, [
          el("span", { className: "who", text: occupant.username || "(no username)" }),
          " ",
          el("span", { className: "presence", text: describePresence(presence) }),
        ]),
        el("span", { className: "actions" }, [message, kick]),
        el("span", {
          className: "meta",
          text: [
            occupant.easyrtcid,
            occupant.remoteAddress || "?",
            occupant.transport || "?",
            since ? "since " + since.toLocaleTimeString() : "",
          ].join(" \u00b7 "),
        }),
      ]
    );
  }

  function roomArticle(app, room) {
    const list = el("ul", { className: "occupants" });
    for (const occupant of room.occupants || []) list.append(occupantItem(app, occupant));
    const fields = Object.keys(room.fields || {});
    return el("article", { "data-room": room.name, "data-members": String(room.members) }, [
      el("h3", {}, [room.name + " ", el("span", { className: "count", text: "(" + room.members + ")" })]),
      fields.length
        ? el("p", { className: "fields", text: "fields: " + JSON.stringify(room.fields) })
        : "",
      room.members ? list : el("p", { className: "empty", text: "nobody here" }),
    ]);
  }

  async function loadApp(app) {
    const rooms = (await api("GET", "/applications/" + encodeURIComponent(app.name) + "/rooms")).rooms;
    const detailed = await Promise.all(
      rooms.map(function (room) {
        if (!room.members) return room;
        const path = "/applications/" + encodeURIComponent(app.name) + "/rooms/" + encodeURIComponent(room.name);
        return api("GET", path).catch(function () { return room; });
      })
    );
    return el("section", { className: "panel", "data-app": app.name }, [
      el("h2", {}, [
        app.name + " ",
        el("span", { className: "count", text: app.connections + " connected, " + app.rooms + " rooms" }),
      ]),
      el("div", { className: "rooms" }, detailed.map(function (room) { return roomArticle(app.name, room); })),
    ]);
  }

  async function refresh() {
    if (!token()) return;
    try {
      const listing = await api("GET", "/applications");
      const sections = await Promise.all(listing.applications.map(loadApp));
      appsBox.replaceChildren(...sections);
      // a partitioned cluster's node that did not answer in time: its clients are not shown
      const missing = listing.missingNodes || [];
      const unheard = missing.length ? " (no answer from node " + missing.join(", ") + ")" : "";
      say("Updated " + new Date().toLocaleTimeString() + unheard, missing.length > 0);
      body.dataset.updated = String(Date.now());
    } catch (error) {
      if (error.message !== "unauthorized") say("Cannot reach the admin API: " + error.message, true);
    }
  }

  function signIn() {
    body.dataset.state = "signed-in";
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, POLL_MS);
  }

  function signOut(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearInterval(timer);
    timer = null;
    appsBox.replaceChildren();
    body.dataset.state = "signed-out";
    say(reason || "", Boolean(reason));
  }

  document.getElementById("sign-in").addEventListener("submit", function (event) {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = "";
    signIn();
  });

  document.getElementById("sign-out").addEventListener("click", function () {
    signOut();
  });

  document.getElementById("message-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const result = document.getElementById("message-result");
    const text = document.getElementById("message-data").value;
    let data = text;
    try {
      data = text === "" ? null : JSON.parse(text);
    } catch (error) {
      data = text; // plain text
    }
    const payload = { msgType: document.getElementById("message-type").value, msgData: data };
    const app = document.getElementById("message-app").value;
    if (app) payload.app = app;
    payload[document.getElementById("message-target-kind").value] = document.getElementById("message-target").value;
    try {
      const sent = await api("POST", "/messages", payload);
      result.textContent = "Sent to " + sent.recipients + " connection(s).";
      result.dataset.recipients = String(sent.recipients);
    } catch (error) {
      result.textContent = "Not sent: " + error.message;
      result.dataset.recipients = "";
    }
  });

  if (token()) signIn();
})();
