// Helpers shared by the demo pages: settings from the query string, the status line,
// connecting and moving into the page's room, and drawing the list of other people.
// Each page keeps its own EasyRTC logic; this file only removes repetition.
"use strict";

const demo = {};

// ?app=NAME      application name (each page has its own default, so demos do not mix)
// ?room=NAME     room to be in (default: the server's default room)
// ?name=TEXT     username shown to others
// ?ice=none      use no STUN/TURN servers (host candidates only: same machine or LAN)
// ?resume=1      keep calls up when the signaling connection drops (easyrtc_resume.js)
demo.settings = function (defaultApp) {
  const query = new URLSearchParams(location.search);
  return {
    app: query.get("app") || defaultApp,
    room: query.get("room") || "default",
    name: query.get("name") || "",
    ice: query.get("ice") || "",
    resume: query.get("resume") === "1",
  };
};

// Shows a state (connecting, connected, disconnected, error) in #status and on <body data-state>.
demo.status = function (state, text) {
  document.body.dataset.state = state;
  document.getElementById("status").textContent = text;
};

// Appends a line to #notes (call events, refusals, ...).
demo.note = function (text) {
  const notes = document.getElementById("notes");
  if (notes) {
    const line = document.createElement("div");
    line.textContent = text;
    notes.prepend(line);
  }
};

// EasyRTC errors go to the console (as errors) and to the notes.
demo.showError = function (errorCode, errorText) {
  console.error("EasyRTC error " + errorCode + ": " + errorText);
  demo.note(errorText);
};

// Connects with the settings, leaves the default room for settings.room if needed,
// then calls onReady(myEasyrtcid).
demo.connect = function (settings, onReady) {
  if (settings.resume && !window.easyrtcResume) { // loaded only when asked for
    const script = document.createElement("script");
    script.src = "../easyrtc/easyrtc_resume.js";
    script.onload = () => demo.connect(settings, onReady);
    script.onerror = () => demo.status("error", "Could not load easyrtc_resume.js.");
    document.head.appendChild(script);
    return;
  }
  easyrtc.setOnError(function (error) {
    demo.showError(error.errorCode, error.errorText);
  });
  easyrtc.setDisconnectListener(function () {
    demo.status("disconnected", "Disconnected from the server.");
  });
  if (settings.name) {
    easyrtc.setUsername(settings.name);
  }
  if (settings.ice === "none") {
    easyrtc.setIceUsedInCalls({ iceServers: [] });
  }
  if (settings.resume) {
    easyrtcResume.enable(easyrtc);
  }
  demo.status("connecting", "Connecting to the server\u2026");

  easyrtc.connect(settings.app, function (myId) {
    const me = document.getElementById("my-id");
    me.textContent = settings.name ? settings.name + " (" + myId + ")" : myId;
    me.dataset.easyrtcid = myId;
    demo.moveToRoom(settings.room, function () {
      demo.status("connected", "Connected to application \u201c" + settings.app +
        "\u201d, room \u201c" + settings.room + "\u201d.");
      onReady(myId);
    });
  }, function (errorCode, errorText) {
    demo.status("error", "Could not connect: " + errorText);
    demo.showError(errorCode, errorText);
  });
};

// Joins `room` (unless already in it) and leaves every other room.
demo.moveToRoom = function (room, done) {
  const leaveOthers = function () {
    for (const other of Object.keys(easyrtc.getRoomsJoined())) {
      if (other !== room) {
        easyrtc.leaveRoom(other);
      }
    }
    done();
  };
  if (easyrtc.getRoomsJoined()[room]) {
    leaveOthers();
  } else {
    easyrtc.joinRoom(room, null, leaveOthers, function (errorCode, errorText) {
      demo.status("error", "Could not join room \u201c" + room + "\u201d: " + errorText);
      demo.showError(errorCode, errorText);
    });
  }
};

// Calls onChange(occupants) whenever the people in `room` change; occupants maps
// easyrtcid -> {username, presence, ...} and never contains this client.
demo.watchRoom = function (room, onChange) {
  easyrtc.setRoomOccupantListener(function (roomName, occupants) {
    if (roomName === null) {
      onChange({}); // disconnected from the server
    } else if (roomName === room) {
      onChange(occupants);
    }
  });
};

// Redraws <ul> `list` with one <li data-easyrtcid> per occupant. `buttonsFor(id)` returns
// [{label, action, onClick, disabled, className}] for that person's buttons.
demo.renderPeers = function (list, occupants, buttonsFor) {
  list.replaceChildren();
  for (const id of Object.keys(occupants)) {
    const entry = occupants[id];
    const item = document.createElement("li");
    item.dataset.easyrtcid = id;

    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.username || id;
    name.title = id;
    item.append(name);

    for (const spec of buttonsFor ? buttonsFor(id, entry) : []) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = spec.label;
      button.dataset.action = spec.action;
      button.disabled = Boolean(spec.disabled);
      if (spec.className) {
        button.className = spec.className;
      }
      button.addEventListener("click", spec.onClick);
      item.append(button);
    }
    list.append(item);
  }
};

// Shows a media stream in a <video>; remote videos start with sound, so if the browser's
// autoplay policy blocks that, fall back to muted playback and tell the user.
demo.play = function (video, stream) {
  easyrtc.setVideoObjectSrc(video, stream);
  if (stream && !video.muted) {
    video.play().catch(function () {
      video.muted = true;
      video.play().catch(function () {});
      demo.note("Autoplay with sound was blocked: the video plays muted, click it to unmute.");
      video.addEventListener("click", function () { video.muted = false; }, { once: true });
    });
  }
};
